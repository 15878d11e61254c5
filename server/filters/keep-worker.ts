/**
 * Worker-thread side of parallel.ts: runs keep tasks over the metadata files it is given, one request at
 * a time, and answers with the result (its buffers transferred, not copied) or the error.
 */
import { parentPort } from 'node:worker_threads';
import { runKeepTask, type KeepTask } from '../../src/core/filters/keep.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { openRangedFile, type RangedFile } from '../io/ranged-file.ts';

export interface KeepRequest {
  id: number;
  task: KeepTask;
  paths: string[];
  /** The pool's first file (schema of `where` expressions). */
  schemaPath: string;
}

export type KeepReply =
  | { id: number; type: 'progress'; rows: number; file: string }
  | { id: number; type: 'done'; words: Uint32Array; rows: number; scores?: Float32Array }
  | { id: number; type: 'fail'; name: string; message: string; file?: string; problem?: string };

parentPort!.on('message', async ({ id, task, paths, schemaPath }: KeepRequest) => {
  const post = (m: KeepReply, transfer: ArrayBuffer[] = []) => parentPort!.postMessage(m, transfer);
  const opened: RangedFile[] = [];
  try {
    for (const path of paths) opened.push(await openRangedFile(path));
    const files = paths.map((name, i) => ({ name, source: opened[i]! }));
    let schemaFrom = files.find((f) => f.name === schemaPath);
    if (!schemaFrom) {
      opened.push(await openRangedFile(schemaPath));
      schemaFrom = { name: schemaPath, source: opened[opened.length - 1]! };
    }
    const r = await runKeepTask(files, task, { schemaFrom, onProgress: (rows, file) => post({ id, type: 'progress', rows, file }) });
    const transfer = [r.words.buffer as ArrayBuffer];
    if (r.scores) transfer.push(r.scores.buffer as ArrayBuffer);
    post({ id, type: 'done', words: r.words, rows: r.rows, scores: r.scores }, transfer);
  } catch (err) {
    const e = err as Error;
    post(err instanceof FormatError
      ? { id, type: 'fail', name: e.name, message: e.message, file: err.file, problem: err.problem }
      : { id, type: 'fail', name: e?.name ?? 'Error', message: e?.message ?? String(err) });
  } finally {
    await Promise.all(opened.map((f) => f.close()));
  }
});
