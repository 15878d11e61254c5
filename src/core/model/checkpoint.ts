/**
 * CLIP checkpoints as safetensors with open_clip's state-dict names and shapes, so that in PyTorch
 * `model.load_state_dict(safetensors.torch.load_file(path))` loads them into open_clip's model of the same
 * config, and open_clip weights exported to safetensors load here. Metadata records the config.
 */
import { FormatError } from '../formats/errors.ts';
import { clipParamSpecs, type StateDict } from './clip.ts';
import type { ClipConfig } from './configs.ts';
import { f32Tensor, readSafetensors, toFloat32, writeSafetensors } from './safetensors.ts';

export function checkpointBytes(state: StateDict, cfg: ClipConfig, metadata: Record<string, string> = {}): Uint8Array {
  const entries = [...state].map(([name, t]) => [name, f32Tensor(t.data, t.shape)] as const);
  return writeSafetensors(entries, { format: 'pt', model: cfg.name, config: JSON.stringify(cfg), ...metadata });
}

/** Reads a checkpoint for `cfg`: every parameter present with its shape (float32, float16, bfloat16 or float64). */
export function readCheckpoint(bytes: Uint8Array, cfg: ClipConfig, file = 'checkpoint'): { state: StateDict; metadata: Record<string, string> } {
  const { tensors, metadata } = readSafetensors(bytes, file);
  const state: StateDict = new Map();
  for (const spec of clipParamSpecs(cfg)) {
    const t = tensors.get(spec.name);
    if (!t) throw new FormatError(file, `has no tensor ${spec.name} (is it a ${cfg.name} checkpoint?)`);
    if (t.shape.join() !== spec.shape.join()) throw new FormatError(file, `${spec.name} has shape ${JSON.stringify(t.shape)}, ${cfg.name} expects ${JSON.stringify(spec.shape)}`);
    state.set(spec.name, { data: toFloat32(t, file, spec.name), shape: spec.shape });
  }
  return { state, metadata };
}
