/**
 * CLIP checkpoints on disk: safetensors files with open_clip's names (src/core/model/checkpoint.ts), written
 * atomically so an interrupted save never leaves a half-written checkpoint in place of a good one.
 */
import { readFile } from 'node:fs/promises';
import type { BackendTensor } from '../../src/core/gpu/backend.ts';
import { checkpointBytes, readCheckpoint } from '../../src/core/model/checkpoint.ts';
import type { ClipModel, StateDict } from '../../src/core/model/clip.ts';
import type { ClipConfig } from '../../src/core/model/configs.ts';
import { writeFileAtomic } from '../io/streams.ts';

export async function saveCheckpoint<T extends BackendTensor>(path: string, model: ClipModel<T>, metadata: Record<string, string> = {}): Promise<number> {
  return writeFileAtomic(path, checkpointBytes(await model.stateDict(), model.cfg, metadata));
}

export async function loadCheckpoint(path: string, cfg: ClipConfig): Promise<{ state: StateDict; metadata: Record<string, string> }> {
  return readCheckpoint(new Uint8Array(await readFile(path)), cfg, path);
}
