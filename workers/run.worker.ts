/**
 * `dcw run` in a web worker (comlink): filter → reshard → train → evaluate (src/core/pipeline/run-in-memory.ts)
 * on navigator.gpu, the pool and the evaluation suite read over HTTP from `dcw serve --pool … --eval …`
 * (/api/pool, /pool/, /eval/), images decoded by the browser. Returns the run's eval_results.jsonl text.
 */
import * as Comlink from 'comlink';
import { HttpEvalStore } from '../src/core/eval/http-store.ts';
import type { BaselineSpec } from '../src/core/filters/baselines.ts';
import { GpuBackend } from '../src/core/gpu/backend.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { openHttpPool } from '../src/core/pipeline/http-pool.ts';
import { runInMemory } from '../src/core/pipeline/run-in-memory.ts';
import { ClipTokenizer } from '../src/core/text/tokenizer.ts';
import type { TrainState } from '../src/core/train/checkpoint.ts';
import type { TrainProgress } from '../src/core/train/loop.ts';
import { scaleConfig, type ScaleConfig } from '../src/core/train/scales.ts';
import { BrowserImageCodec } from './image-codec.ts';
import { openWorkerGpu } from './worker-gpu.ts';

export interface RunRequest {
  /** A scale name, or a scale's full recipe. */
  scale: string | ScaleConfig;
  /** Default no_filter. */
  filter?: BaselineSpec;
  seed: number;
  /** A `dcw serve` started with --pool and --eval. */
  origin: string;
  /** open_clip's bpe_simple_vocab_16e6.txt.gz bytes. */
  bpe: Uint8Array;
  logEvery?: number;
  /** WebGPU feature level to ask for; default core, falling back to compatibility. */
  featureLevel?: 'core' | 'compatibility';
}

export interface RunReply {
  subset: Uint8Array;
  subsetSize: number;
  trainSamples: number;
  reshardErrors: string[];
  state: TrainState;
  /** eval_results.jsonl, one line per task. */
  resultsText: string;
  aggregates: [string, number][];
  seconds: Record<'filter' | 'reshard' | 'train' | 'evaluate' | 'total', number>;
  adapter: string;
}

const api = {
  async run(req: RunRequest, onLog?: (line: string) => void, onTrainProgress?: (p: TrainProgress) => void): Promise<RunReply> {
    const scale = typeof req.scale === 'string' ? scaleConfig(req.scale) : req.scale;
    const pool = await openHttpPool(req.origin);
    const evalStore = new HttpEvalStore(new URL('/eval/', req.origin).href);
    const tokenizer = ClipTokenizer.fromBytes(req.bpe, 'bpe vocabulary');
    const engine = new Engine(await openWorkerGpu(req.featureLevel));
    try {
      const out = await runInMemory({
        backend: new GpuBackend(engine), scale, filter: req.filter ?? { name: 'no_filter' }, seed: req.seed, metadata: pool.metadata,
        poolShards: pool.shards, evalStore, codec: new BrowserImageCodec(), tokenizer, logEvery: req.logEvery,
        log: onLog ? (line) => void onLog(line) : undefined, onTrainProgress: onTrainProgress ? (p) => void onTrainProgress(p) : undefined,
      });
      return {
        subset: out.subset, subsetSize: out.subsetSize, trainSamples: out.trainSamples,
        reshardErrors: out.reshardErrors, state: out.state, resultsText: out.resultsText, aggregates: [...out.aggregates], seconds: out.seconds,
        adapter: engine.info.description || engine.info.vendor,
      };
    } finally {
      engine.destroy();
    }
  },
};

export type RunWorkerApi = typeof api;
Comlink.expose(api);
