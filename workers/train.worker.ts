/**
 * Training in a web worker (comlink): the same loop as `dcw train` (src/core/train/loop.ts) on navigator.gpu,
 * reading shards over HTTP from `dcw serve` (or any server, given the shard list), decoding with the
 * browser's image decoders. Checkpoints are kept in memory and handed back as bytes (open_clip safetensors).
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
import { BrowserImageCodec } from './image-codec.ts';
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

let controller: AbortController | undefined;

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
  /** Stops the running training after its current step (epoch_latest is saved and returned). */
  stop(): void {
    controller?.abort();
  },
};

export type TrainWorkerApi = typeof api;
Comlink.expose(api);
