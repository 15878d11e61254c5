/**
 * Training and evaluation in a web worker (comlink), on navigator.gpu with the browser's image decoders:
 * - `train`: the same loop as `dcw train` (src/core/train/loop.ts) over shards read over HTTP from `dcw serve`
 *   (or any server, given the shard list); checkpoints kept in memory and handed back as bytes.
 * - `trainRun`: a run of the Train view: its subset resharded in memory from the pool's shards in IndexedDB
 *   (as `dcw run` reshards), trained with epoch_latest kept in IndexedDB (workers/run-store.ts) so that it
 *   resumes exactly after a pause or a reload; `stop` pauses it after the current step.
 * - `evaluateRun`: a run's latest checkpoint on the task suite served under /eval/, results written to the run
 *   after each task.
 */
import * as Comlink from 'comlink';
import { GpuBackend } from '../src/core/gpu/backend.ts';
import { readCheckpoint } from '../src/core/model/checkpoint.ts';
import { clipConfig } from '../src/core/model/configs.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { ClipTokenizer } from '../src/core/text/tokenizer.ts';
import { MemoryCheckpointStore, type LoggedLoss, type TrainState } from '../src/core/train/checkpoint.ts';
import { HttpShardStore } from '../src/core/train/http-store.ts';
import type { ShardInfo } from '../src/core/train/loader.ts';
import { trainClip, type TrainProgress } from '../src/core/train/loop.ts';
import { scaleConfig, type ScaleConfig } from '../src/core/train/scales.ts';
import { HttpEvalStore } from '../src/core/eval/http-store.ts';
import { decodeSubsetWords, isSortedWords, sortUidWords, uidCount } from '../src/core/formats/uid.ts';
import { evaluateCheckpoint } from '../src/core/pipeline/evaluate-checkpoint.ts';
import { reshardInMemory } from '../src/core/pipeline/run-in-memory.ts';
import { SubsetIndex } from '../src/core/reshard/plan.ts';
import { BrowserImageCodec } from './image-codec.ts';
import { IdbShardStore } from './idb-shard-store.ts';
import { getRun, IdbCheckpointStore, readCheckpointRecord, readSubset, updateRun } from './run-store.ts';
import { openWorkerGpu } from './worker-gpu.ts';

export interface TrainRequest {
  /** A scale name, or a scale's full recipe (tests shorten one). */
  scale: string | ScaleConfig;
  seed: number;
  /** `origin`: a dcw serve (shards from its /api/pool); or `baseUrl` + `shards` for any server. */
  data: { origin: string } | { baseUrl: string; shards: ShardInfo[] };
  /** open_clip's bpe_simple_vocab_16e6.txt.gz bytes. */
  bpe: Uint8Array;
  numCheckpoints?: number;
  logEvery?: number;
  stopAfterSteps?: number;
  /** WebGPU feature level to ask for; default core, falling back to compatibility. */
  featureLevel?: 'core' | 'compatibility';
  /** Resume from a checkpoint this worker returned earlier. */
  resume?: { state: TrainState; weights: Uint8Array; optimizer: Uint8Array };
}

export interface TrainReply {
  losses: LoggedLoss[];
  state: TrainState;
  stopped: boolean;
  /** epoch_latest: weights (open_clip safetensors), AdamW state, train state. */
  latest?: { state: TrainState; weights: Uint8Array; optimizer: Uint8Array };
  adapter: string;
}

export interface RunTrainRequest {
  runId: string;
  /** open_clip's bpe_simple_vocab_16e6.txt.gz bytes. */
  bpe: Uint8Array;
  /** Loss read back every this many steps (and at each epoch's end). */
  logEvery?: number;
  featureLevel?: 'core' | 'compatibility';
}

/** What a run's training is doing, for the page. */
export type RunTrainEvent =
  | { kind: 'stage'; stage: 'reshard' | 'resume' | 'train'; detail: string }
  | { kind: 'step'; progress: TrainProgress }
  | { kind: 'checkpoint'; state: TrainState };

export interface RunTrainReply {
  state: TrainState;
  stopped: boolean;
  adapter: string;
  trainSamples: number;
  /** Session throughput at the end (samples/s). */
  samplesPerSecond: number;
}

export interface RunEvalRequest {
  runId: string;
  bpe: Uint8Array;
  /** The suite's base URL (dcw serve's /eval/). */
  evalUrl: string;
  featureLevel?: 'core' | 'compatibility';
}

export type RunEvalEvent =
  | { kind: 'task'; name: string; index: number; of: number }
  | { kind: 'progress'; name: string; samplesDone: number; size: number }
  | { kind: 'result'; name: string; text: string };

export interface RunEvalReply {
  resultsText: string;
  aggregates: [string, number][];
  adapter: string;
}

let controller: AbortController | undefined;

function adapterName(engine: Engine): string {
  const i = engine.info;
  return i.description || [i.vendor, i.architecture].filter(Boolean).join(' / ') || 'WebGPU adapter';
}

const api = {
  async train(req: TrainRequest, onProgress?: (p: TrainProgress) => void): Promise<TrainReply> {
    const scale = typeof req.scale === 'string' ? scaleConfig(req.scale) : req.scale;
    const store = 'origin' in req.data ? await HttpShardStore.fromPoolListing(req.data.origin) : new HttpShardStore(req.data.baseUrl, req.data.shards);
    const tokenizer = ClipTokenizer.fromBytes(req.bpe, 'bpe vocabulary');
    const engine = new Engine(await openWorkerGpu(req.featureLevel));
    controller = new AbortController();
    const checkpoints = new MemoryCheckpointStore();
    try {
      const resume = req.resume
        ? { state: req.resume.state, weights: readCheckpoint(req.resume.weights, clipConfig(scale.model), 'resume').state, optimizer: req.resume.optimizer, file: 'resume' }
        : undefined;
      const result = await trainClip({
        backend: new GpuBackend(engine), scale, seed: req.seed, numCheckpoints: req.numCheckpoints, store, codec: new BrowserImageCodec(),
        tokenizer, checkpoints, resume, logEvery: req.logEvery, stopAfterSteps: req.stopAfterSteps, signal: controller.signal,
        onProgress: onProgress ? (p) => void onProgress(p) : undefined,
      });
      const latest = checkpoints.saved.get('epoch_latest');
      return {
        losses: result.state.losses, state: result.state, stopped: result.stopped, adapter: engine.info.description || engine.info.vendor,
        latest: latest ? Comlink.transfer(latest, [latest.weights.buffer as ArrayBuffer, latest.optimizer.buffer as ArrayBuffer]) : undefined,
      };
    } finally {
      controller = undefined;
      engine.destroy();
    }
  },
  /** Trains (or resumes) a stored run; see the file comment. Errors leave the stored checkpoint as it was. */
  async trainRun(req: RunTrainRequest, onEvent?: (e: RunTrainEvent) => void): Promise<RunTrainReply> {
    const emit = (e: RunTrainEvent) => void onEvent?.(e);
    const run = await getRun(req.runId);
    if (!run || run.origin !== 'own' || !run.poolId || run.seed === undefined) throw new Error(`run ${req.runId} is not a training run stored in this browser`);
    const scale = scaleConfig(run.scale);
    const subsetBytes = await readSubset(run.id);
    if (!subsetBytes) throw new Error(`run ${run.name} has no subset stored`);
    let words = decodeSubsetWords(subsetBytes, `${run.name} subset.npy`);
    if (!isSortedWords(words)) words = sortUidWords(words);
    const tokenizer = ClipTokenizer.fromBytes(req.bpe, 'bpe vocabulary');
    controller = new AbortController();
    const signal = controller.signal;

    emit({ kind: 'stage', stage: 'reshard', detail: `resharding ${uidCount(words)} uids from the pool's shards in this browser` });
    const pool = await IdbShardStore.open(run.poolId);
    let reshard;
    try {
      reshard = await reshardInMemory(pool, new SubsetIndex(words));
    } finally {
      pool.close();
    }
    if (!reshard.outputCount) throw new Error(`the subset of ${run.name} matched no sample of pool ${run.poolName ?? run.poolId}: pick another filter or pool`);

    const stored = await readCheckpointRecord(run.id);
    const cfg = clipConfig(scale.model);
    let resume;
    if (stored) {
      emit({ kind: 'stage', stage: 'resume', detail: `resuming from step ${stored.state.step} of ${stored.state.totalSteps}` });
      const weights = new Uint8Array(await stored.weights.arrayBuffer());
      resume = { state: stored.state, weights: readCheckpoint(weights, cfg, `${run.name} epoch_latest.safetensors`).state, optimizer: new Uint8Array(await stored.optimizer.arrayBuffer()), file: `${run.name} epoch_latest` };
    }
    const engine = new Engine(await openWorkerGpu(req.featureLevel));
    const adapter = adapterName(engine);
    let rate = 0;
    try {
      await updateRun(run.id, { status: 'training', trainSamples: reshard.outputCount, adapter, error: undefined });
      emit({ kind: 'stage', stage: 'train', detail: `training ${scale.name} on ${reshard.outputCount} samples (${adapter})` });
      const result = await trainClip({
        backend: new GpuBackend(engine), scale, seed: run.seed, store: reshard.store, codec: new BrowserImageCodec(), tokenizer,
        checkpoints: new IdbCheckpointStore(run.id, (state) => emit({ kind: 'checkpoint', state })), resume, logEvery: req.logEvery, signal,
        onProgress: (p) => {
          rate = p.samplesPerSecond;
          emit({ kind: 'step', progress: p });
        },
      });
      await updateRun(run.id, { status: result.stopped ? 'paused' : 'done', samplesPerSecond: rate || run.samplesPerSecond });
      return { state: result.state, stopped: result.stopped, adapter, trainSamples: reshard.outputCount, samplesPerSecond: rate };
    } catch (err) {
      // the stored checkpoint is the last good one: the run can be resumed from it
      await updateRun(run.id, { status: 'failed', error: (err as Error).message }).catch(() => {});
      throw err;
    } finally {
      controller = undefined;
      engine.destroy();
    }
  },

  /** Evaluates a run's stored checkpoint on the suite at `evalUrl`; tasks already in its results are kept. */
  async evaluateRun(req: RunEvalRequest, onEvent?: (e: RunEvalEvent) => void): Promise<RunEvalReply> {
    const emit = (e: RunEvalEvent) => void onEvent?.(e);
    const run = await getRun(req.runId);
    if (!run) throw new Error(`run ${req.runId} is not stored in this browser`);
    const stored = await readCheckpointRecord(run.id);
    if (!stored) throw new Error(`run ${run.name} has no checkpoint yet: train it first`);
    const scale = scaleConfig(run.scale);
    const tokenizer = ClipTokenizer.fromBytes(req.bpe, 'bpe vocabulary');
    // results of an older checkpoint of this run are not this one's
    const existing = run.results && run.resultsStep === stored.state.step ? run.results : '';
    const engine = new Engine(await openWorkerGpu(req.featureLevel));
    const adapter = adapterName(engine);
    try {
      const sizes = new Map<string, number>();
      const out = await evaluateCheckpoint({
        backend: new GpuBackend(engine), model: clipConfig(scale.model), weights: new Uint8Array(await stored.weights.arrayBuffer()),
        weightsFile: `${run.name} epoch_latest.safetensors`, store: new HttpEvalStore(req.evalUrl), codec: new BrowserImageCodec(), tokenizer, existing,
        onTaskStart: (task, index, of) => {
          sizes.set(task.name, task.size ?? 0);
          emit({ kind: 'task', name: task.name, index, of });
        },
        onTaskProgress: (task, samplesDone) => emit({ kind: 'progress', name: task.name, samplesDone, size: sizes.get(task.name) ?? 0 }),
        onResult: async (task, _result, text) => {
          await updateRun(run.id, { results: text, resultsStep: stored.state.step });
          emit({ kind: 'result', name: task.name, text });
        },
      });
      await updateRun(run.id, { results: out.resultsText, resultsStep: stored.state.step, evaluatedAt: Date.now() });
      return { resultsText: out.resultsText, aggregates: [...out.aggregates], adapter };
    } finally {
      engine.destroy();
    }
  },

  /** Checks that bytes are a CLIP BPE vocabulary (before the page keeps them). */
  checkBpe(bytes: Uint8Array, name: string): { tokens: number[] } {
    const t = ClipTokenizer.fromBytes(bytes, name);
    return { tokens: Array.from(t.tokenize(['a photo of a dog'], { contextLength: 8 })) };
  },

  /** Stops the running training after its current step (epoch_latest is saved and returned). */
  stop(): void {
    controller?.abort();
  },
};

export type TrainWorkerApi = typeof api;
Comlink.expose(api);
