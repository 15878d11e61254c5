/**
 * Evaluating a trained CLIP on a task list, as DataComp's evaluate.py does: the model's two encoders on the
 * engine, every task of tasklist.yml in order, one `eval_results.jsonl` line appended per task, and tasks
 * whose dataset name already has a line skipped (results.ts has the file's exact rules).
 */
import type { BackendTensor } from '../gpu/backend.ts';
import { Tape } from '../gpu/nn.ts';
import type { EvalStore } from '../eval/dataset.ts';
import { completedResults, parseResults, appendResult, type EvalResult } from '../eval/results.ts';
import type { PyJson } from '../eval/pyjson.ts';
import type { EvalTask } from '../eval/tasklist.ts';
import { evaluateTask, type Encoders } from '../eval/zeroshot.ts';
import type { ImageCodec } from '../formats/image.ts';
import type { ClipModel } from '../model/clip.ts';
import { eotPositions, type ClipTokenizer } from '../text/tokenizer.ts';

/** The evaluation's view of a model: features before normalisation, as open_clip's encode_image/encode_text. */
export function clipEncoders<T extends BackendTensor>(model: ClipModel<T>, tokenizer: ClipTokenizer, batchSize = 64): Encoders {
  const be = model.be;
  const cfg = model.cfg;
  const ctx = cfg.text.contextLength;
  const E = cfg.embedDim;
  return {
    imageSize: cfg.vision.imageSize,
    async encodeImages(images, count) {
      const S = cfg.vision.imageSize;
      be.beginScope();
      try {
        const x = be.tensor(images.subarray(0, count * 3 * S * S), [count, 3, S, S]);
        const features = model.encodeImage(new Tape(be), x, count);
        return Float32Array.from(await be.read(features.value));
      } finally {
        be.endScope();
      }
    },
    async encodeTexts(texts) {
      const out = new Float32Array(texts.length * E);
      for (let at = 0; at < texts.length; at += batchSize) {
        const chunk = texts.slice(at, at + batchSize);
        const ids = tokenizer.tokenize(chunk, { contextLength: ctx });
        be.beginScope();
        try {
          const tokens = be.tokens(ids, [chunk.length, ctx]);
          const eot = model.ops.indices(eotPositions(ids, chunk.length, ctx));
          const features = model.encodeText(new Tape(be), tokens, eot, chunk.length);
          out.set(await be.read(features.value), at * E);
        } finally {
          be.endScope();
        }
      }
      return out;
    },
  };
}

export interface SuiteOptions {
  tasks: readonly EvalTask[];
  store: EvalStore;
  encoders: Encoders;
  codec: ImageCodec;
  batchSize?: number;
  /** The results file as it is now ('' when there is none). */
  existing: string;
  /** Names the results file in errors. */
  file: string;
  /** Called after each task with the whole new file text: write it (atomically) before the next task starts. */
  onResult: (task: EvalTask, result: EvalResult, fileText: string) => Promise<void>;
  onSkip?: (task: EvalTask) => void;
  onTaskStart?: (task: EvalTask, index: number) => void;
  onProgress?: (task: EvalTask, samplesDone: number) => void;
}

/** Evaluates the tasks not yet in the results file; returns every listed task's result (old and new) in task order. */
export async function evaluateSuite(o: SuiteOptions): Promise<EvalResult[]> {
  let text = o.existing;
  const done = completedResults(parseResults(text, o.file), o.tasks);
  for (const [index, task] of o.tasks.entries()) {
    if (done.has(task.name)) {
      o.onSkip?.(task);
      continue;
    }
    o.onTaskStart?.(task, index);
    const metrics = await evaluateTask(task, o.store, o.encoders, {
      codec: o.codec, batchSize: o.batchSize, onProgress: (n) => o.onProgress?.(task, n),
    });
    const result: EvalResult = { key: task.key, dataset: task.name, metrics: metrics as Map<string, PyJson> };
    text = appendResult(text, result);
    await o.onResult(task, result, text);
    done.set(task.name, result);
  }
  return o.tasks.map((t) => done.get(t.name)!);
}
