/**
 * A KeepRunner (src/core/filters/keep.ts) that splits each task over worker threads: the metadata files
 * are cut into consecutive ranges of about equal bytes, one per worker, and the ranges' results are
 * joined in file order, so the result is the one a single pass gives (and the caller sorts the uids).
 * When ranges fail, the error of the first failing range is raised: the first error in file order, as in
 * one pass. Workers stay up between tasks (a recipe runs several); close() ends them.
 */
import { stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { joinKeepResults, type KeepOptions, type KeepResult, type KeepRunner, type KeepTask } from '../../src/core/filters/keep.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import type { KeepReply, KeepRequest } from './keep-worker.ts';

export interface ParallelRunner {
  run: KeepRunner;
  close(): Promise<void>;
}

/** Consecutive ranges of items with about equal total weight, at most `parts` of them, none empty. */
export function splitRanges(weights: readonly number[], parts: number): [number, number][] {
  const total = weights.reduce((a, b) => a + b, 0);
  const ranges: [number, number][] = [];
  let start = 0;
  let acc = 0;
  for (let i = 0; i < weights.length; i++) {
    acc += weights[i]!;
    const left = weights.length - i - 1;
    const want = ranges.length + 1;
    if ((acc >= (total * want) / parts && left > 0 && want < parts) || left === 0) {
      ranges.push([start, i + 1]);
      start = i + 1;
    }
  }
  return ranges;
}

/** A runner over these metadata files (paths) with up to `workers` threads, one per range of files. */
export async function parallelRunner(paths: readonly string[], workers: number): Promise<ParallelRunner> {
  const sizes = await Promise.all(paths.map(async (p) => (await stat(p)).size));
  const ranges = splitRanges(sizes, Math.max(1, Math.min(workers, paths.length)));
  const entry = new URL('./keep-worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  const threads = ranges.map(() => new Worker(boot, { eval: true }));
  let nextId = 0;

  const runRange = (worker: Worker, range: [number, number], task: KeepTask, onRows: (rows: number, file: string) => void) =>
    new Promise<KeepResult>((resolve, reject) => {
      const id = nextId++;
      const onMessage = (m: KeepReply) => {
        if (m.id !== id) return;
        if (m.type === 'progress') return onRows(m.rows, m.file);
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (m.type === 'done') resolve(m.scores ? { words: m.words, rows: m.rows, scores: m.scores } : { words: m.words, rows: m.rows });
        else if (m.name === 'FormatError' && m.file !== undefined && m.problem !== undefined) reject(new FormatError(m.file, m.problem));
        else if (m.name === 'RangeError') reject(new RangeError(m.message));
        else reject(Object.assign(new Error(m.message), { name: m.name }));
      };
      const onError = (err: Error) => {
        worker.off('message', onMessage);
        reject(err);
      };
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.postMessage({ id, task, paths: paths.slice(range[0], range[1]), schemaPath: paths[0]! } satisfies KeepRequest);
    });

  const run: KeepRunner = async (task: KeepTask, options: KeepOptions = {}) => {
    const done = ranges.map(() => 0);
    let last = '';
    const settled = await Promise.allSettled(ranges.map((range, k) => runRange(threads[k]!, range, task, (rows, file) => {
      done[k] = rows;
      last = file;
      options.onProgress?.(done.reduce((a, b) => a + b, 0), last);
    })));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return joinKeepResults(settled.map((s) => (s as PromiseFulfilledResult<KeepResult>).value));
  };
  return {
    run,
    close: async () => {
      await Promise.all(threads.map((t) => t.terminate()));
    },
  };
}
