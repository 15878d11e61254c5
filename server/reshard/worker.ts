/**
 * Worker-thread entry of the resharder: runs one task (task.ts) and reports its log lines and result to
 * the parent. The subset arrives in a SharedArrayBuffer, so every worker reads the same copy.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SubsetIndex } from '../../src/core/reshard/plan.ts';
import { runTask, type TaskParams } from './task.ts';

export interface WorkerInput {
  params: TaskParams;
  subset: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'log'; level: 'info' | 'warn' | 'error' | 'debug'; message: string }
  | { type: 'done'; result: Awaited<ReturnType<typeof runTask>> }
  | { type: 'fail'; message: string };

const { params, subset } = workerData as WorkerInput;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
try {
  const result = await runTask(params, new SubsetIndex(new Uint32Array(subset)), (level, message) => post({ type: 'log', level, message }));
  post({ type: 'done', result });
} catch (err) {
  post({ type: 'fail', message: err instanceof Error ? err.message : String(err) });
}
