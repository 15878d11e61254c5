/**
 * `/api/fetch?url=…`: dcw serve fetches a picture for the page when the picture's own server refuses to let
 * other sites read it (no CORS headers) — the Bring-your-own-data import of a URL table, as img2dataset would
 * download it. Only for the workbench page itself:
 *  - the request must carry `X-DCW-Fetch: 1` (a cross-origin page cannot send it without a preflight, which
 *    this server never grants) and name this server by a loopback or its own host (no DNS rebinding);
 *  - only http(s) URLs; at most MAX_BYTES, counted as the body arrives (a Content-Length is not trusted), and
 *    nothing is sent until the whole body is in, so a failed fetch never looks like a short picture;
 *  - a timeout, and the upstream's failure given back as one line of JSON ({ error }) with status 502.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export const FETCH_HEADER = 'x-dcw-fetch';
export const MAX_BYTES = 32 * 1024 * 1024;
const TIMEOUT_MS = 30_000;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

type Send = (status: number, body: string | Uint8Array, headers?: Record<string, string>) => void;

function hostnameOf(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  try {
    return new URL(`http://${hostHeader}`).hostname;
  } catch {
    return undefined;
  }
}

/** Answers one `/api/fetch` request. `serverHost` is the address dcw serve listens on. */
export async function proxyFetch(req: IncomingMessage, requestUrl: URL, serverHost: string, send: Send): Promise<void> {
  const fail = (status: number, error: string) => send(status, JSON.stringify({ error }), { 'Content-Type': 'application/json' });
  if (req.method !== 'GET') return fail(405, 'only GET');
  if (req.headers[FETCH_HEADER] !== '1') return fail(403, `this route is for the workbench page (header X-DCW-Fetch: 1 missing)`);
  const host = hostnameOf(req.headers.host);
  if (!host || !(LOOPBACK.has(host) || host === serverHost)) return fail(403, `this route answers requests to ${serverHost} only, not to ${req.headers.host ?? 'no host'}`);
  const target = requestUrl.searchParams.get('url');
  let url: URL;
  try {
    url = new URL(target ?? '');
  } catch {
    return fail(400, `${JSON.stringify((target ?? '').slice(0, 200))} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(400, `${url.href.slice(0, 200)}: only http(s) URLs are fetched`);

  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
  try {
    const res = await fetch(url, { signal: abort.signal, redirect: 'follow', headers: { 'User-Agent': 'dcw-serve (DataComp Workbench)' } });
    if (!res.ok) return fail(502, `HTTP ${res.status} ${res.statusText}`.trim());
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > MAX_BYTES) {
      abort.abort();
      return fail(413, `the picture is ${declared} bytes, over the ${MAX_BYTES}-byte limit`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = res.body?.getReader();
    for (let part = await reader?.read(); part && !part.done; part = await reader!.read()) {
      size += part.value.byteLength;
      if (size > MAX_BYTES) {
        abort.abort();
        return fail(413, `the picture is over the ${MAX_BYTES}-byte limit (it sent more than it declared)`);
      }
      chunks.push(part.value);
    }
    const body = Buffer.concat(chunks);
    return send(200, body, { 'Content-Type': res.headers.get('content-type') ?? 'application/octet-stream', 'Cache-Control': 'no-store' });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason.message : (e.cause?.message ?? e.message);
    return fail(502, `could not fetch it: ${why}`);
  } finally {
    clearTimeout(timer);
  }
}
