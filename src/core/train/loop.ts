/**
 * The training loop of a scale, as open_clip 2.16.1's `train_one_epoch` runs it for DataComp's train.py, on the
 * workbench engine (WebGPU in browsers and through Dawn in Node; the float64 reference in tests):
 *
 *   for epoch in 0 … num_checkpoints−1:                       (open_clip `--epochs num_checkpoints`)
 *     for i in 0 … stepsPerEpoch−1:  step = epoch·stepsPerEpoch + i
 *       lr = cosine_lr(step)  →  forward, backward, AdamW(t = step + 1), clamp logit_scale to [0, ln 100]
 *       the loss is read back only on logged steps (i % logEvery == 0 or the epoch's last batch, as open_clip)
 *     save epoch_{epoch+1} and epoch_latest
 *
 * Each step is recorded into the engine's queue inside one scope (intermediates freed at its end) with no
 * readback, except the logged loss. Steps overlap: while the GPU runs step n, the host loads, augments,
 * uploads (uint8 pixels) and records step n+1; before going on to step n+2 it waits for step n to finish, so at
 * most two steps are queued (bounded memory for the uploads in flight). Stopping (an AbortSignal, or `stopAfterSteps`) saves `epoch_latest` with
 * the loader's mid-epoch position; resuming from any checkpoint gives the very batches, learning rates and
 * optimizer state an uninterrupted run would have had (checkpoint.ts), hence the same losses.
 */
import type { Backend, BackendTensor } from '../gpu/backend.ts';
import type { ImageCodec } from '../formats/image.ts';
import { checkpointBytes } from '../model/checkpoint.ts';
import { ClipModel, clipBatch, type StateDict } from '../model/clip.ts';
import { clipConfig, type ClipConfig } from '../model/configs.ts';
import type { ClipTokenizer } from '../text/tokenizer.ts';
import {
  optimizerStateBytes, restoreOptimizerState, RNG_DESCRIPTION, TRAIN_STATE_FORMAT, type CheckpointStore, type LoggedLoss, type TrainState,
} from './checkpoint.ts';
import { TrainLoader, type LoaderPosition, type ShardStore } from './loader.ts';
import { runPlan, type RunPlan, type ScaleConfig } from './scales.ts';
import { cosineSchedule } from './schedule.ts';

/** open_clip's `--log-every-n-steps` default. */
export const DEFAULT_LOG_EVERY = 100;

export interface TrainProgress {
  /** Steps done (1 after the first step). */
  step: number;
  totalSteps: number;
  epoch: number;
  samplesSeen: number;
  /** The learning rate of the step just taken. */
  lr: number;
  /** The step's loss, on logged steps only. */
  loss?: number;
  /** Training throughput of this session (batches × batch size / wall time since it started). */
  samplesPerSecond: number;
  /** Seconds left at that throughput. */
  etaSeconds: number;
}

export interface ResumeFrom {
  state: TrainState;
  weights: StateDict;
  optimizer: Uint8Array;
  /** Names the checkpoint in errors. */
  file: string;
}

export interface TrainOptions<T extends BackendTensor> {
  backend: Backend<T>;
  scale: ScaleConfig;
  /** Default: the scale's (5). */
  numCheckpoints?: number;
  seed: number;
  store: ShardStore;
  codec: ImageCodec;
  tokenizer: ClipTokenizer;
  /** Where checkpoints go; none: nothing is saved. */
  checkpoints?: CheckpointStore;
  resume?: ResumeFrom;
  /** Read the loss every this many steps of an epoch (and at its last step). Default 100 (open_clip's). */
  logEvery?: number;
  onProgress?: (p: TrainProgress) => void;
  onCheckpoint?: (name: string, state: TrainState) => void;
  onDrop?: (key: string, shard: string, reason: string) => void;
  /** Stops after the current step and saves `epoch_latest`. */
  signal?: AbortSignal;
  /** Stops (saving `epoch_latest`) once this many steps are done in total: for tests and staged runs. */
  stopAfterSteps?: number;
  /** The model config; default the scale's (`clipConfig(scale.model)`). */
  model?: ClipConfig;
}

export interface TrainResult<T extends BackendTensor> {
  model: ClipModel<T>;
  state: TrainState;
  /** True when stopped before the last step. */
  stopped: boolean;
  plan: RunPlan;
  /** Samples the loader dropped (no caption, no image, undecodable). */
  dropped: number;
}

/** Checks that a checkpoint belongs to this run (same recipe and seed). */
function checkResume(state: TrainState, scale: ScaleConfig, cfg: ClipConfig, seed: number, plan: RunPlan, numCheckpoints: number, file: string): void {
  const problems: string[] = [];
  if (state.scale !== scale.name) problems.push(`scale ${state.scale}, not ${scale.name}`);
  if (state.model !== cfg.name) problems.push(`model ${state.model}, not ${cfg.name}`);
  if (state.seed !== seed) problems.push(`seed ${state.seed}, not ${seed}`);
  if (state.numCheckpoints !== numCheckpoints) problems.push(`num_checkpoints ${state.numCheckpoints}, not ${numCheckpoints}`);
  if (state.totalSteps !== plan.totalSteps || state.stepsPerEpoch !== plan.stepsPerEpoch) problems.push(`${state.totalSteps} steps, not ${plan.totalSteps}`);
  if (state.step > plan.totalSteps) problems.push(`step ${state.step} beyond the run's ${plan.totalSteps}`);
  if (problems.length) throw new ResumeError(`${file}: cannot resume this run from it: it was trained with ${problems.join(', ')}`);
}

export class ResumeError extends Error {
  override readonly name = 'ResumeError';
}

/** Trains (or continues training) the scale's CLIP on the shards; see the file comment. */
export async function trainClip<T extends BackendTensor>(o: TrainOptions<T>): Promise<TrainResult<T>> {
  const { backend: be, scale, seed, tokenizer } = o;
  const cfg = o.model ?? clipConfig(scale.model);
  const numCheckpoints = o.numCheckpoints ?? scale.numCheckpoints;
  const plan = runPlan(scale, numCheckpoints);
  const lrAt = cosineSchedule(scale.learningRate, scale.warmup, plan.totalSteps);
  const logEvery = o.logEvery ?? DEFAULT_LOG_EVERY;
  if (!(Number.isInteger(logEvery) && logEvery >= 1)) throw new RangeError(`logEvery ${logEvery} is not a positive integer`);
  if (cfg.vision.imageSize !== scale.imageSize) throw new RangeError(`model ${cfg.name} sees ${cfg.vision.imageSize} px, scale ${scale.name} ${scale.imageSize} px`);

  let state: TrainState;
  let model: ClipModel<T>;
  if (o.resume) {
    checkResume(o.resume.state, scale, cfg, seed, plan, numCheckpoints, o.resume.file);
    model = new ClipModel(be, cfg, { state: o.resume.weights });
    restoreOptimizerState(model, o.resume.optimizer, o.resume.file);
    state = structuredClone(o.resume.state);
  } else {
    model = new ClipModel(be, cfg, { seed });
    state = {
      format: TRAIN_STATE_FORMAT, scale: scale.name, model: cfg.name, seed, numCheckpoints,
      step: 0, totalSteps: plan.totalSteps, stepsPerEpoch: plan.stepsPerEpoch, completedEpochs: 0,
      loader: { epoch: 0, step: 0, emitted: 0 }, samplesSeen: 0, losses: [], rng: RNG_DESCRIPTION,
    };
  }

  let latestSavedAt = -1;
  /** Saves the current state under each name (the bytes are computed once). */
  const save = async (...names: string[]) => {
    if (names.includes('epoch_latest')) {
      if (latestSavedAt === state.step && names.length === 1) return;
      latestSavedAt = state.step;
    }
    if (!o.checkpoints) return;
    const meta = { scale: scale.name, step: String(state.step), epoch: String(state.completedEpochs) };
    const weights = checkpointBytes(await model.stateDict(), cfg, meta);
    const optimizer = await optimizerStateBytes(model, state.step);
    for (const name of names) {
      await o.checkpoints.save(name, { weights, optimizer, state });
      o.onCheckpoint?.(name, structuredClone(state));
    }
  };

  const started = performance.now();
  let sessionSamples = 0;
  let dropped = 0;
  const shouldStop = () => o.signal?.aborted === true || (o.stopAfterSteps !== undefined && state.step >= o.stopAfterSteps);
  /** The previous step's work on the backend (see the file comment). */
  let previous: Promise<void> | undefined;

  while (state.step < plan.totalSteps) {
    if (shouldStop()) {
      await save('epoch_latest');
      return { model, state, stopped: true, plan, dropped };
    }
    const epoch = state.loader.epoch;
    const start: LoaderPosition = { ...state.loader };
    const loader = new TrainLoader({
      store: o.store, codec: o.codec, batchSize: scale.batchSize, imageSize: cfg.vision.imageSize, seed,
      sampleShuffle: scale.sampleShuffle, start,
      onDrop: (key, shard, reason) => {
        dropped++;
        o.onDrop?.(key, shard, reason);
      },
    });
    let stopped = false;
    try {
      for await (const batch of loader.batches(plan.stepsPerEpoch - start.step)) {
        const i = state.step - epoch * plan.stepsPerEpoch;
        const lr = lrAt(state.step);
        const ids = tokenizer.tokenize(batch.texts, { contextLength: cfg.text.contextLength });
        const logged = i % logEvery === 0 || i + 1 === plan.stepsPerEpoch;
        be.beginScope();
        let loss: number | undefined;
        try {
          const lossTensor = model.step(clipBatch(be, cfg, batch.pixels, ids), {
            lr, beta1: scale.beta1, beta2: scale.beta2, eps: scale.eps, weightDecay: scale.weightDecay,
          }, state.step + 1);
          if (logged) loss = (await be.read(lossTensor))[0]!;
        } finally {
          be.endScope();
        }
        const queued = be.settled();
        queued.catch(() => {}); // reported by the await below (or by the next read), not as unhandled
        await previous;
        previous = queued;
        if (loss !== undefined) state.losses.push({ step: state.step, loss, lr });
        state.step++;
        state.samplesSeen += scale.batchSize;
        state.loader = batch.position;
        sessionSamples += scale.batchSize;
        const seconds = (performance.now() - started) / 1000;
        const rate = seconds > 0 ? sessionSamples / seconds : 0;
        o.onProgress?.({
          step: state.step, totalSteps: plan.totalSteps, epoch, samplesSeen: state.samplesSeen, lr, loss,
          samplesPerSecond: rate, etaSeconds: rate > 0 ? ((plan.totalSteps - state.step) * scale.batchSize) / rate : Infinity,
        });
        if (state.loader.step === plan.stepsPerEpoch) break;
        if (shouldStop()) {
          stopped = true;
          break;
        }
      }
    } finally {
      await loader.close();
    }
    if (state.loader.step === plan.stepsPerEpoch) {
      state.completedEpochs = epoch + 1;
      state.loader = { epoch: epoch + 1, step: 0, emitted: 0 };
      await save(`epoch_${epoch + 1}`, 'epoch_latest');
    } else if (stopped) {
      await save('epoch_latest');
      return { model, state, stopped: true, plan, dropped };
    }
  }
  return { model, state, stopped: false, plan, dropped };
}

/** The logged losses of a state, as [step, loss] pairs (for comparisons and plots). */
export function lossCurve(losses: readonly LoggedLoss[]): [number, number][] {
  return losses.map((l) => [l.step, l.loss]);
}
