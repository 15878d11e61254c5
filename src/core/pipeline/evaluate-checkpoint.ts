/**
 * Evaluating a checkpoint's weights on a suite held in an EvalStore, as `dcw evaluate` does on epoch_latest:
 * the weights read back from their safetensors bytes (as the file is loaded), every task of tasklist.yml in
 * order, one eval_results.jsonl line per task, tasks already in `existing` skipped (evaluate.py's cache), and
 * the suite's aggregate. The in-memory run (run-in-memory.ts) and the browser's Evaluate view both use it.
 */
import type { EvalStore } from '../eval/dataset.ts';
import { aggregateSuite, type EvalResult } from '../eval/results.ts';
import { parseTasklist, type EvalTask } from '../eval/tasklist.ts';
import { FormatError } from '../formats/errors.ts';
import type { ImageCodec } from '../formats/image.ts';
import type { Backend, BackendTensor } from '../gpu/backend.ts';
import { readCheckpoint } from '../model/checkpoint.ts';
import { ClipModel } from '../model/clip.ts';
import type { ClipConfig } from '../model/configs.ts';
import type { ClipTokenizer } from '../text/tokenizer.ts';
import { clipEncoders, evaluateSuite } from './evaluate.ts';

export const RESULTS_FILE = 'eval_results.jsonl';

export interface CheckpointEvalOptions<T extends BackendTensor> {
  backend: Backend<T>;
  model: ClipConfig;
  /** The checkpoint's weights (open_clip safetensors bytes). */
  weights: Uint8Array;
  /** Names the weights in errors. */
  weightsFile: string;
  store: EvalStore;
  codec: ImageCodec;
  tokenizer: ClipTokenizer;
  batchSize?: number;
  /** Results already written (evaluate.py skips their tasks); default none. */
  existing?: string;
  onTaskStart?: (task: EvalTask, index: number, of: number) => void;
  onTaskProgress?: (task: EvalTask, samplesDone: number) => void;
  /** After each task, the whole results text so far: keep it before the next task starts. */
  onResult?: (task: EvalTask, result: EvalResult, text: string) => Promise<void>;
}

export interface CheckpointEvalResult {
  tasks: EvalTask[];
  results: EvalResult[];
  /** The eval_results.jsonl text, one line per task. */
  resultsText: string;
  aggregates: Map<string, number>;
}

export async function evaluateCheckpoint<T extends BackendTensor>(o: CheckpointEvalOptions<T>): Promise<CheckpointEvalResult> {
  const tasklist = await o.store.readText('tasklist.yml');
  if (tasklist === undefined) throw new FormatError('tasklist.yml', 'not found: the evaluation suite needs its tasklist.yml');
  const tasks = parseTasklist(tasklist, 'tasklist.yml');
  const model = new ClipModel(o.backend, o.model, { state: readCheckpoint(o.weights, o.model, o.weightsFile).state });
  const batchSize = o.batchSize ?? 64;
  let resultsText = o.existing ?? '';
  const results = await evaluateSuite({
    tasks, store: o.store, encoders: clipEncoders(model, o.tokenizer, batchSize), codec: o.codec, batchSize, existing: resultsText, file: RESULTS_FILE,
    onTaskStart: (task, i) => o.onTaskStart?.(task, i, tasks.length),
    onProgress: o.onTaskProgress,
    onResult: async (task, result, text) => {
      resultsText = text;
      await o.onResult?.(task, result, text);
    },
  });
  return { tasks, results, resultsText, aggregates: aggregateSuite(results, tasks, RESULTS_FILE) };
}
