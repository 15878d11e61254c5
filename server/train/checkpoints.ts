/**
 * A training run on disk, laid out as open_clip's logs folder so DataComp users find their way:
 *
 *   {output_dir}/{exp_name}/
 *     info.json                    train.py's info.pkl: {scale, checkpoint, scale_config, data_dir} (+ model, seed)
 *     params.txt                   the run's settings, one "name: value" per line (as open_clip's params.txt)
 *     out.log                      the logged losses, one line per log step
 *     checkpoints/epoch_{n}.safetensors (+ .optimizer.safetensors, .json)   after each epoch
 *     checkpoints/epoch_latest.*   the most recent (epoch end, or where an interrupted run stopped)
 *
 * Every file is written atomically; a checkpoint's JSON state is written last and its step must match the
 * step recorded in both safetensors files, so a save cut short is detected rather than resumed from.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { FormatError } from '../../src/core/formats/errors.ts';
import { readCheckpoint } from '../../src/core/model/checkpoint.ts';
import type { ClipConfig } from '../../src/core/model/configs.ts';
import { readSafetensors } from '../../src/core/model/safetensors.ts';
import { checkpointFiles, parseTrainState, stateBytes, type CheckpointStore, type TrainState } from '../../src/core/train/checkpoint.ts';
import type { ResumeFrom } from '../../src/core/train/loop.ts';
import type { ScaleConfig } from '../../src/core/train/scales.ts';
import { UserError } from '../cli/errors.ts';
import { writeFileAtomic } from '../io/streams.ts';

export const INFO_FILE = 'info.json';

export class FileCheckpointStore implements CheckpointStore {
  constructor(readonly dir: string) {}

  async save(name: string, files: { weights: Uint8Array; optimizer: Uint8Array; state: TrainState }): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const f = checkpointFiles(name);
    await writeFileAtomic(join(this.dir, f.weights), files.weights);
    await writeFileAtomic(join(this.dir, f.optimizer), files.optimizer);
    await writeFileAtomic(join(this.dir, f.state), stateBytes(files.state));
  }
}

/** The checkpoint to resume from for `--resume latest|PATH`, or undefined to start afresh. */
export async function findResume(checkpointsDir: string, resume: string | undefined): Promise<string | undefined> {
  if (resume === undefined || resume === 'none') return undefined;
  if (resume === 'latest') {
    // open_clip: epoch_latest when --save-most-recent wrote it, else the highest epoch_{n}; nothing → fresh start
    if (existsSync(join(checkpointsDir, 'epoch_latest.json'))) return join(checkpointsDir, 'epoch_latest.safetensors');
    let names: string[] = [];
    try {
      names = await readdir(checkpointsDir);
    } catch {
      return undefined;
    }
    const epochs = names.map((n) => /^epoch_(\d+)\.json$/.exec(n)?.[1]).filter((n): n is string => n !== undefined).map(Number);
    return epochs.length ? join(checkpointsDir, `epoch_${Math.max(...epochs)}.safetensors`) : undefined;
  }
  if (!existsSync(resume)) throw new UserError(`--resume ${resume}: no such checkpoint`);
  return resolve(resume);
}

/** Reads a checkpoint (weights, optimizer state, train state) for resuming; `path` is its .safetensors. */
export async function loadResume(path: string, cfg: ClipConfig): Promise<ResumeFrom> {
  const stem = basename(path).replace(/\.safetensors$/, '');
  const dir = dirname(path);
  const f = checkpointFiles(stem);
  const statePath = join(dir, f.state);
  const optimizerPath = join(dir, f.optimizer);
  for (const p of [statePath, optimizerPath]) if (!existsSync(p)) throw new UserError(`${path}: cannot resume training from it: ${p} is missing (only weights were saved?)`);
  const state = parseTrainState(await readFile(statePath, 'utf8'), statePath);
  const { state: weights, metadata } = readCheckpoint(new Uint8Array(await readFile(path)), cfg, path);
  const optimizer = new Uint8Array(await readFile(optimizerPath));
  const optStep = readSafetensors(optimizer, optimizerPath).metadata.step;
  if (metadata.step !== String(state.step) || optStep !== String(state.step)) {
    throw new FormatError(statePath, `says step ${state.step}, but the weights are from step ${metadata.step} and the optimizer state from step ${optStep} (a save was interrupted?)`);
  }
  return { state, weights, optimizer, file: path };
}

export interface TrainInfo {
  scale: string;
  /** The final checkpoint (epoch_latest.safetensors). */
  checkpoint: string;
  scale_config: ScaleConfig;
  data_dir: string;
  model: string;
  seed: number;
  num_checkpoints: number;
}

export async function writeInfo(dir: string, info: TrainInfo): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, INFO_FILE), new TextEncoder().encode(`${JSON.stringify(info, null, 2)}\n`));
}

export async function readInfo(dir: string): Promise<TrainInfo> {
  const path = join(dir, INFO_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new UserError(`${path}: not found: --train_output_dir must be a finished 'dcw train' run ({output_dir}/{exp_name})`);
  }
  let info: Partial<TrainInfo>;
  try {
    info = JSON.parse(text) as Partial<TrainInfo>;
  } catch {
    throw new FormatError(path, 'not valid JSON');
  }
  if (typeof info.scale !== 'string' || typeof info.checkpoint !== 'string' || typeof info.model !== 'string' || !info.scale_config) {
    throw new FormatError(path, 'expected {"scale", "checkpoint", "scale_config", "data_dir", "model"}');
  }
  return info as TrainInfo;
}
