/**
 * Training checkpoints: what it takes to continue a run exactly where it stopped.
 *
 * A checkpoint `epoch_{n}` (open_clip's name; `epoch_latest` for the most recent, as `--save-most-recent`) is
 * three files, so that the weights stay a plain open_clip state dict:
 *   epoch_{n}.safetensors            the weights, open_clip's names and shapes (src/core/model/checkpoint.ts)
 *   epoch_{n}.optimizer.safetensors  AdamW's moments as torch.optim.AdamW names them: `exp_avg.{param}`,
 *                                    `exp_avg_sq.{param}` (float32, open_clip's shapes)
 *   epoch_{n}.json                   `TrainState`: steps done, loader position, seed, the logged losses
 * The run's randomness is stateless: model init from the seed, and every loader stream (shard draws, shuffle,
 * augmentation) is seeded by (seed, epoch, stream, index) (loader.ts `streamSeed`), so the seed and the
 * loader position are the whole RNG state.
 */
import type { BackendTensor } from '../gpu/backend.ts';
import { FormatError } from '../formats/errors.ts';
import type { ClipModel } from '../model/clip.ts';
import { f32Tensor, readSafetensors, toFloat32, writeSafetensors } from '../model/safetensors.ts';
import type { LoaderPosition } from './loader.ts';

export const TRAIN_STATE_FORMAT = 'dcw-train-state-v1';

export interface LoggedLoss {
  /** Global step (0-based, open_clip's `step`) whose batch gave this loss. */
  step: number;
  loss: number;
  lr: number;
}

export interface TrainState {
  format: typeof TRAIN_STATE_FORMAT;
  scale: string;
  model: string;
  seed: number;
  numCheckpoints: number;
  /** Optimizer steps done (the next step's 0-based index). */
  step: number;
  totalSteps: number;
  stepsPerEpoch: number;
  /** Completed epochs (= saved `epoch_{n}` checkpoints). */
  completedEpochs: number;
  /** Where the loader continues (epoch start when an epoch just ended). */
  loader: LoaderPosition;
  /** Samples trained on so far (steps × batch size). */
  samplesSeen: number;
  /** Every loss logged so far, so that a resumed run's log is the whole run's. */
  losses: LoggedLoss[];
  /** How the run's random streams are derived (informational; nothing else is needed to resume). */
  rng: string;
}

export const RNG_DESCRIPTION = 'stateless: model init Rng(seed); loader streams Rng(streamSeed(seed, epoch, stream, index))';

/** Names of a checkpoint's files. */
export function checkpointFiles(name: string): { weights: string; optimizer: string; state: string } {
  return { weights: `${name}.safetensors`, optimizer: `${name}.optimizer.safetensors`, state: `${name}.json` };
}

/** AdamW's moments of every parameter, under torch's state names (`exp_avg`, `exp_avg_sq`). */
export async function optimizerStateBytes<T extends BackendTensor>(model: ClipModel<T>, step: number): Promise<Uint8Array> {
  const entries: [string, ReturnType<typeof f32Tensor>][] = [];
  for (const spec of model.specs) {
    const p = model.param(spec.name);
    entries.push([`exp_avg.${spec.name}`, f32Tensor(await model.be.read(p.m), spec.shape)]);
    entries.push([`exp_avg_sq.${spec.name}`, f32Tensor(await model.be.read(p.v), spec.shape)]);
  }
  return writeSafetensors(entries, { format: 'dcw-adamw', model: model.cfg.name, step: String(step) });
}

/** Loads AdamW's moments into the model's parameters (every parameter must be there with its shape). */
export function restoreOptimizerState<T extends BackendTensor>(model: ClipModel<T>, bytes: Uint8Array, file: string): void {
  const { tensors } = readSafetensors(bytes, file);
  for (const spec of model.specs) {
    const p = model.param(spec.name);
    for (const [key, slot] of [['exp_avg', 'm'], ['exp_avg_sq', 'v']] as const) {
      const t = tensors.get(`${key}.${spec.name}`);
      if (!t) throw new FormatError(file, `has no ${key}.${spec.name}`);
      if (t.shape.join() !== spec.shape.join()) throw new FormatError(file, `${key}.${spec.name} has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(spec.shape)}`);
      const fresh = model.be.tensor(toFloat32(t, file, `${key}.${spec.name}`), p[slot].shape);
      p[slot].dispose();
      p[slot] = fresh;
    }
  }
}

export function stateBytes(state: TrainState): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(state, null, 2)}\n`);
}

/** Parses and checks a train state file. */
export function parseTrainState(text: string, file: string): TrainState {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new FormatError(file, 'not valid JSON');
  }
  const s = v as Partial<TrainState>;
  if (!s || typeof s !== 'object' || s.format !== TRAIN_STATE_FORMAT) throw new FormatError(file, `not a training state (format is not "${TRAIN_STATE_FORMAT}")`);
  const int = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
  for (const k of ['seed', 'numCheckpoints', 'step', 'totalSteps', 'stepsPerEpoch', 'completedEpochs', 'samplesSeen'] as const) {
    if (!int(s[k])) throw new FormatError(file, `"${k}" is not a non-negative integer`);
  }
  const l = s.loader;
  if (!l || !int(l.epoch) || !int(l.step) || !int(l.emitted)) throw new FormatError(file, '"loader" is not {epoch, step, emitted}');
  if (typeof s.scale !== 'string' || typeof s.model !== 'string') throw new FormatError(file, '"scale" and "model" must be strings');
  if (!Array.isArray(s.losses) || !s.losses.every((x) => x && int(x.step) && typeof x.loss === 'number' && typeof x.lr === 'number')) {
    throw new FormatError(file, '"losses" is not a list of {step, loss, lr}');
  }
  return s as TrainState;
}

/** Where checkpoints are kept: files in Node (server/train/), memory or IndexedDB in a browser. */
export interface CheckpointStore {
  /** Writes a checkpoint's three files; each write must be atomic (old or new, never half). */
  save(name: string, files: { weights: Uint8Array; optimizer: Uint8Array; state: TrainState }): Promise<void>;
}

/** Checkpoints held in memory (browser runs and tests). */
export class MemoryCheckpointStore implements CheckpointStore {
  readonly saved = new Map<string, { weights: Uint8Array; optimizer: Uint8Array; state: TrainState }>();
  async save(name: string, files: { weights: Uint8Array; optimizer: Uint8Array; state: TrainState }): Promise<void> {
    this.saved.set(name, { ...files, state: structuredClone(files.state) });
  }
}
