/**
 * Evaluation data over HTTP (or anywhere `fetch` exists): the clip_benchmark layout under one base URL, as
 * `dcw serve --eval DIR` serves it under `/eval/`. A 404 is a missing file (readText → undefined), as
 * FileEvalStore's ENOENT; any other failure is an error naming the URL.
 */
import { FormatError } from '../formats/errors.ts';
import type { EvalStore } from './dataset.ts';

export class HttpEvalStore implements EvalStore {
  /** `baseUrl`: the suite's root, e.g. `http://host/eval/` (a trailing "/" is added when missing). */
  readonly baseUrl: string;
  constructor(baseUrl: string, private readonly fetchFn: typeof fetch = (input, init) => fetch(input, init)) {
    this.baseUrl = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  }

  private url(path: string): string {
    return new URL(path.split('/').map(encodeURIComponent).join('/'), this.baseUrl).href;
  }

  async readText(path: string): Promise<string | undefined> {
    const url = this.url(path);
    const res = await this.fetchFn(url);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new FormatError(url, `HTTP ${res.status} ${res.statusText}`.trim());
    return new TextDecoder().decode(await res.arrayBuffer());
  }

  async openStream(path: string): Promise<ReadableStream<Uint8Array>> {
    const url = this.url(path);
    const res = await this.fetchFn(url);
    if (!res.ok || !res.body) throw new FormatError(url, `HTTP ${res.status} ${res.statusText}`.trim());
    return res.body;
  }
}
