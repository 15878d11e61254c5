/**
 * The per-device matmul tuning on disk (Node): `<dir>/gpu-tuning.json`, one entry per adapter (vendor /
 * architecture / device / driver description / feature level), written by bench/gpu.ts after its autotune and
 * read by anything that opens an Engine on the same machine. The format is src/core/gpu/tuning.ts's TuningFile.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { describeGpu } from '../../src/core/gpu/device.ts';
import type { Engine } from '../../src/core/gpu/engine.ts';
import { setMatmulTuning } from '../../src/core/gpu/kernels/matmul.ts';
import { findTuning, withTuning, type MatmulTuning } from '../../src/core/gpu/tuning.ts';

export const TUNING_FILE = 'gpu-tuning.json';

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    // Missing or damaged: the engine falls back to its built-in default.
    return undefined;
  }
}

/** Applies the stored tuning for this engine's adapter (for `model`, where it was measured on one model's shapes), if `dir` holds one; returns it. */
export function loadTuning(engine: Engine, dir: string, model?: string): MatmulTuning | undefined {
  const tuning = findTuning(readJson(join(dir, TUNING_FILE)), engine.info, model);
  if (tuning) setMatmulTuning(engine, tuning);
  return tuning;
}

/**
 * Stores a tuning for this engine's adapter (keeping other devices' entries); `shapes` names the model whose
 * training shapes it was measured on. Returns the file's path.
 */
export function saveTuning(engine: Engine, dir: string, tuning: MatmulTuning, shapes?: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, TUNING_FILE);
  const next = withTuning(readJson(path), engine.info, describeGpu(engine.info), tuning, { shapes });
  // Write-then-rename: a reader never sees half a file.
  writeFileSync(`${path}.tmp`, JSON.stringify(next, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
  return path;
}

/**
 * Where training looks for a stored tuning, first match wins: $DCW_GPU_TUNING_DIR, the user cache
 * ($XDG_CACHE_HOME/dcw or ~/.cache/dcw), and this checkout's bench/out (where `npm run bench:gpu` stores it).
 */
export function tuningDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  if (env.DCW_GPU_TUNING_DIR) dirs.push(resolve(env.DCW_GPU_TUNING_DIR));
  dirs.push(join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'dcw'));
  dirs.push(resolve(import.meta.dirname, '../../bench/out'));
  return dirs;
}

/**
 * Applies the first stored tuning for this engine's adapter (and for `model`, see findTuning) found in `dirs`;
 * returns the file it came from. None found: the engine keeps the built-in default.
 */
export function loadStoredTuning(engine: Engine, dirs: readonly string[] = tuningDirs(), model?: string): string | undefined {
  for (const dir of dirs) if (loadTuning(engine, dir, model)) return join(dir, TUNING_FILE);
  return undefined;
}
