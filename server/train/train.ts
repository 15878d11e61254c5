/**
 * `dcw train` in Node: the scale's fixed recipe on shard folders, on a WebGPU device through Dawn (a hardware
 * Vulkan adapter when there is one, else Mesa's llvmpipe through the GL ES compat adapter), written as
 * open_clip's logs folder (checkpoints.ts) with train.py's info file.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GpuBackend } from '../../src/core/gpu/backend.ts';
import { describeGpu } from '../../src/core/gpu/device.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { clipConfig } from '../../src/core/model/configs.ts';
import type { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import type { TrainState } from '../../src/core/train/checkpoint.ts';
import { ResumeError, trainClip, type TrainProgress } from '../../src/core/train/loop.ts';
import { runPlan, scaleConfig, type ScaleConfig } from '../../src/core/train/scales.ts';
import { UserError } from '../cli/errors.ts';
import { openDawn, type DawnBackend } from '../gpu/dawn.ts';
import { loadStoredTuning } from '../gpu/tuning.ts';
import { SharpImageCodec } from '../io/image-codec.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { FileCheckpointStore, findResume, loadResume, writeInfo, type TrainInfo } from './checkpoints.ts';
import { FileShardStore } from './shard-store.ts';

export interface NodeTrainOptions {
  scale: string;
  /** One folder of shards, or several joined by "::" (train.py --data_dir). */
  dataDir: string;
  dataWeights?: string;
  outputDir: string;
  /** Default `{scale}_scale` (train.py). */
  expName?: string;
  numCheckpoints?: number;
  seed: number;
  /** 'latest' (default: continue if there is a checkpoint), 'none', or a checkpoint's .safetensors path. */
  resume?: string;
  tokenizer: ClipTokenizer;
  gpu?: DawnBackend;
  logEvery?: number;
  signal?: AbortSignal;
  stopAfterSteps?: number;
  onProgress?: (p: TrainProgress) => void;
  /** Lines for the user (stderr in the CLI). */
  log?: (line: string) => void;
}

export interface NodeTrainResult {
  /** `{output_dir}/{exp_name}`: evaluate's --train_output_dir. */
  dir: string;
  info: TrainInfo;
  stopped: boolean;
  state: TrainState;
  device: string;
  seconds: number;
}

export function checkScale(name: string): ScaleConfig {
  try {
    return scaleConfig(name);
  } catch (err) {
    throw new UserError(`--scale: ${(err as Error).message}`);
  }
}

/** A Dawn device as a training backend; close() when done. */
export async function openTrainingBackend(gpu: DawnBackend = 'auto', model?: string): Promise<{ backend: GpuBackend; engine: Engine; device: string; tuning?: string; close(): void }> {
  let handle;
  try {
    handle = await openDawn({ backend: gpu });
  } catch (err) {
    throw new UserError(`no WebGPU device: ${(err as Error).message}`);
  }
  const engine = new Engine(handle);
  // The matmul tuning bench:gpu measured on this adapter (for this model, where it was fitted to one), if stored;
  // else the built-in default.
  const tuning = loadStoredTuning(engine, undefined, model);
  return { backend: new GpuBackend(engine), engine, device: `${handle.backend}: ${describeGpu(handle.info)}`, tuning, close: () => engine.destroy() };
}

export async function runTraining(o: NodeTrainOptions): Promise<NodeTrainResult> {
  const scale = checkScale(o.scale);
  const numCheckpoints = o.numCheckpoints ?? scale.numCheckpoints;
  if (!(Number.isInteger(numCheckpoints) && numCheckpoints >= 1)) throw new UserError(`--num_checkpoints must be a positive integer, got ${o.numCheckpoints}`);
  if (!(Number.isSafeInteger(o.seed) && o.seed >= 0)) throw new UserError(`--seed must be a non-negative integer, got ${o.seed}`);
  for (const d of o.dataDir.split('::')) {
    // before anything is written or a device opened: a mistyped path is the commonest error
    if (!existsSync(d)) throw new UserError(`--data_dir: ${d}: no such file or directory`);
  }
  const cfg = clipConfig(scale.model);
  const dir = resolve(o.outputDir, o.expName ?? `${scale.name}_scale`);
  const checkpointsDir = join(dir, 'checkpoints');
  const log = o.log ?? (() => {});
  const resumePath = await findResume(checkpointsDir, o.resume ?? 'latest');
  const resume = resumePath ? await loadResume(resumePath, cfg) : undefined;
  const plan = runPlan(scale, numCheckpoints);
  const info: TrainInfo = {
    scale: scale.name, checkpoint: join(checkpointsDir, 'epoch_latest.safetensors'), scale_config: scale,
    data_dir: o.dataDir, model: cfg.name, seed: o.seed, num_checkpoints: numCheckpoints,
  };
  await mkdir(dir, { recursive: true });
  const params = {
    scale: scale.name, model: cfg.name, data_dir: o.dataDir, data_weights: o.dataWeights ?? '', seed: o.seed, num_checkpoints: numCheckpoints,
    batch_size: scale.batchSize, lr: scale.learningRate, warmup: scale.warmup, beta1: scale.beta1, beta2: scale.beta2, eps: scale.eps,
    wd: scale.weightDecay, train_num_samples: plan.samplesPerEpoch, epochs: numCheckpoints, steps: plan.totalSteps, precision: 'fp32',
    context_length: cfg.text.contextLength, resume: resumePath ?? '',
  };
  await writeFileAtomic(join(dir, 'params.txt'), new TextEncoder().encode(Object.entries(params).map(([k, v]) => `${k}: ${v}\n`).join('')));

  const device = await openTrainingBackend(o.gpu, cfg.name);
  log(`train ${scale.name}: ${cfg.name}, ${plan.totalSteps} steps of ${scale.batchSize} (${plan.samplesSeen} samples seen) on ${device.device}`);
  if (device.tuning) log(`matmul tuning: ${device.tuning}`);
  if (resume) log(`resuming from ${resumePath} (step ${resume.state.step} of ${plan.totalSteps})`);
  const started = performance.now();
  try {
    const logFile = join(dir, 'out.log');
    let logged = Promise.resolve();
    let result;
    try {
      result = await trainClip({
        backend: device.backend, scale, numCheckpoints, seed: o.seed, tokenizer: o.tokenizer,
        store: new FileShardStore(o.dataDir, o.dataWeights), codec: new SharpImageCodec(),
        checkpoints: new FileCheckpointStore(checkpointsDir), resume, logEvery: o.logEvery,
        signal: o.signal, stopAfterSteps: o.stopAfterSteps,
        onProgress: (p) => {
          if (p.loss !== undefined) {
            const line = `Train Epoch: ${p.epoch} step ${p.step}/${p.totalSteps} samples ${p.samplesSeen} Loss: ${p.loss.toFixed(5)} LR: ${p.lr.toExponential(6)} ${p.samplesPerSecond.toFixed(1)} samples/s\n`;
            logged = logged.then(() => appendFile(logFile, line));
          }
          o.onProgress?.(p);
        },
        onCheckpoint: (name, state) => log(`saved ${join(checkpointsDir, name)}.safetensors (step ${state.step})`),
        onDrop: (key, shard, reason) => log(`dropped ${shard}:${key}: ${reason}`),
      });
    } catch (err) {
      if (err instanceof ResumeError) throw new UserError(err.message);
      throw err;
    }
    await logged;
    if (!result.stopped) await writeInfo(dir, info);
    return { dir, info, stopped: result.stopped, state: result.state, device: device.device, seconds: (performance.now() - started) / 1000 };
  } finally {
    device.close();
  }
}
