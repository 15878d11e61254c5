/** Evaluation data in files (clip_benchmark layout under one root folder), for src/core/eval/dataset.ts. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EvalStore } from '../../src/core/eval/dataset.ts';
import { fileReadStream } from '../io/streams.ts';

export class FileEvalStore implements EvalStore {
  constructor(readonly root: string) {}

  async readText(path: string): Promise<string | undefined> {
    try {
      return await readFile(join(this.root, path), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async openStream(path: string): Promise<ReadableStream<Uint8Array>> {
    return fileReadStream(join(this.root, path));
  }
}
