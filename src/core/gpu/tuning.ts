/**
 * Per-device matmul tuning: which kernels to use and how to fill the device, measured by bench/gpu.ts and kept
 * in a small JSON file keyed by the adapter (vendor / architecture / device / driver description). Core only
 * handles the data: reading and writing the file is the caller's business (server/gpu/tuning.ts in Node, any
 * storage in the browser), so nothing here touches node: or the DOM.
 *
 * File format (version 1):
 *   { "version": 1, "devices": { "<key>": { "device": "<describeGpu line>", "measuredAt": "<ISO time>",
 *                                          "tuning": MatmulTuning } } }
 */
import type { GpuInfo } from './device.ts';
import type { MatmulConfig } from './kernels/matmul.ts';

export interface MatmulTuning {
  /** Kernels the planner may use, each with its speed on large problems relative to the fastest (≤ 1). */
  kernels: { config: MatmulConfig; speed: number }[];
  /** Workgroups that fill the device; with fewer, part of it idles (about 2 per SM on NVIDIA). */
  targetWorkgroups: number;
  /** Split-K keeps at least this much of K per slice. */
  minSplitK: number;
  maxSplits: number;
  /** Relative cost of the extra split-K pass (multiplies the score of a split plan). */
  splitPenalty: number;
}

export const TUNING_VERSION = 1;

/**
 * What an untuned GPU gets: the H100 autotune's result (bench/results/h100-2026-11-27-run3/gpu-tuning.json;
 * GPU-timed at 4096³: 46.7, 44.4, 43.5, 32.6, 26.3 TFLOP/s), a reasonable order for other GPUs too.
 */
export const DEFAULT_GPU_TUNING: MatmulTuning = {
  kernels: [
    { config: { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, db: true }, speed: 1 },
    { config: { kind: 'tiled', BM: 64, BN: 128, BK: 8, TM: 8, TN: 8, db: true }, speed: 0.95 },
    { config: { kind: 'tiled', BM: 128, BN: 64, BK: 8, TM: 8, TN: 8, db: true }, speed: 0.93 },
    { config: { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, db: true }, speed: 0.7 },
    { config: { kind: 'tiled', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, db: true }, speed: 0.56 },
  ],
  targetWorkgroups: 528,
  minSplitK: 128,
  maxSplits: 16,
  splitPenalty: 0.92,
};

export interface TuningEntry {
  device: string;
  measuredAt: string;
  tuning: MatmulTuning;
  /**
   * The model whose training shapes it was measured on (`bench/gpu.ts --tune-shapes`), e.g. "ViT-B-32"; absent for
   * the general tune. Such a tuning is used for that model only: fitted to wide layers, it chose 25% wasted tiles
   * for gpu-small's width of 192 and made its step 10% slower than the built-in default (H100, bench/RESULTS.md).
   */
  shapes?: string;
}

export interface TuningFile {
  version: number;
  devices: Record<string, TuningEntry>;
}

/** The key a device's tuning is stored under: the adapter's identity including the driver. */
export function tuningKey(info: Pick<GpuInfo, 'vendor' | 'architecture' | 'device' | 'description' | 'featureLevel'>): string {
  return [info.vendor, info.architecture, info.device, info.description, info.featureLevel].map((s) => s.trim()).join('|');
}

/**
 * The tuning stored for this device in a parsed file, if any and if well-formed — and, when it was measured on one
 * model's shapes, only for that `model` (a ClipConfig name).
 */
export function findTuning(file: unknown, info: GpuInfo, model?: string): MatmulTuning | undefined {
  if (!isTuningFile(file)) return undefined;
  const entry = file.devices[tuningKey(info)];
  if (!entry || !isTuning(entry.tuning)) return undefined;
  if (entry.shapes !== undefined && entry.shapes !== model) return undefined;
  return entry.tuning;
}

/** Returns the file with this device's entry added or replaced (other devices are kept). */
export function withTuning(file: unknown, info: GpuInfo, device: string, tuning: MatmulTuning, options: { measuredAt?: string; shapes?: string } = {}): TuningFile {
  const base: TuningFile = isTuningFile(file) ? file : { version: TUNING_VERSION, devices: {} };
  const entry: TuningEntry = { device, measuredAt: options.measuredAt ?? new Date().toISOString(), tuning, ...(options.shapes ? { shapes: options.shapes } : {}) };
  return { version: TUNING_VERSION, devices: { ...base.devices, [tuningKey(info)]: entry } };
}

function isTuningFile(x: unknown): x is TuningFile {
  return typeof x === 'object' && x !== null && (x as TuningFile).version === TUNING_VERSION &&
    typeof (x as TuningFile).devices === 'object' && (x as TuningFile).devices !== null;
}

function isConfig(c: unknown): c is MatmulConfig {
  const x = c as Record<string, unknown>;
  if (typeof x !== 'object' || x === null) return false;
  const ints = (...names: string[]) => names.every((n) => Number.isInteger(x[n]) && (x[n] as number) > 0);
  if (x.kind === 'reg') return ints('wgX', 'wgY');
  return x.kind === 'tiled' && ints('BM', 'BN', 'BK', 'TM', 'TN') && (x.db === undefined || typeof x.db === 'boolean');
}

export function isTuning(t: unknown): t is MatmulTuning {
  const x = t as MatmulTuning;
  return typeof x === 'object' && x !== null && Array.isArray(x.kernels) && x.kernels.length > 0 &&
    x.kernels.every((k) => isConfig(k?.config) && typeof k.speed === 'number' && k.speed > 0) &&
    [x.targetWorkgroups, x.minSplitK, x.maxSplits, x.splitPenalty].every((n) => typeof n === 'number' && n > 0);
}
