/**
 * Training throughput of one CLIP step (forward, backward, AdamW, logit-scale clamp; the loss read back) per
 * scale, in Node on a Dawn adapter: the workbench scales at their batch size, and ViT-B/32 (the small/medium
 * model: 224 px, 77 tokens) at a micro-batch when it fits. Synthetic pixels and captions of real token lengths
 * (random ids framed sot … eot): the data loader is not timed here (see `dcw run`'s per-step timings).
 *
 *   npm run bench:train [-- --gpu opengles|vulkan|swiftshader|auto] [--steps 3] [--only cpu-tiny,gpu-small,ViT-B-32]
 *                          [--vit-batch 16] [--batch N (overrides every batch)] [--out DIR] [--tag NAME]
 *                          [--tuning DIR|none] [--attention auto|head|tiled|rows] [--attention-backward head|tiled|rows]
 *                          [--embedding-grad segments|direct] [--column-sums v4|scalar]
 *                          [--profile [--profile-method auto|timestamps|replay]]
 *                          [--compare-attention] [--compare-kernels] [--compare-step] [--quick-init] [--row-kernels thread|workgroup|subgroup] [--tiny]
 *                          [--upload u8|f32] [--no-fuse] [--submit-every N] [--serial]
 * On a CPU adapter gpu-small and ViT-B/32 are measured at micro-batches (32 and 4) unless --batch is given.
 * Steps run as `dcw train` runs them (loop.ts): uint8 pixels uploaded and normalised on the GPU, the residual
 * blocks' fused ops, the step submitted in chunks of --submit-every dispatches (the engine's default) while it is
 * recorded, and steps pipelined: the host uploads and records step n+1 while the GPU runs step n, waiting only for
 * step n−1 (the loss is read after the last step). Each step is split into upload (the batch to the GPU), record
 * (the host recording every dispatch) and wait (blocked on the GPU); ms/step is the wall time over the steps, so
 * with pipelining it is less than their sum when host and GPU overlap. --serial reads the loss after every step
 * instead (nothing overlaps across steps; ms/step = upload + record + wait); --upload f32 uploads normalised
 * float32 pixels; --no-fuse records the unfused ops; --submit-every 100000 submits each step once.
 * --compare-step times the same model and batch again with each of those options switched back, and all of
 * them together (the path before issue #5's round 2), in the same process.
 *
 * --profile adds one more step with per-kernel GPU times, grouped by kernel: with timestamp queries where the
 * adapter has them (each dispatch in its own compute pass), else ('replay') by running each kernel's dispatches of
 * that step again on their own, timed by the wall clock around a wait for the GPU. The matmul tuning is the one
 * `dcw train` would use (server/gpu/tuning.ts tuningDirs), or DIR/gpu-tuning.json with --tuning DIR, or the
 * built-in one with --tuning none. --attention picks the first attention kernels to try in both passes (ops.ts
 * setAttentionKernels: 'auto', the default: per pass, 'head' (one workgroup per (batch, head)) forward and
 * backward but 'tiled' for a causal backward; 'head'; 'tiled'; 'rows', per query row), --attention-backward
 * overrides the backward pass's, --embedding-grad the token-embedding gradient's kernels ('segments', the
 * default, or 'direct', the one-pass kernel before) and --column-sums the bias/LayerNorm-gain gradients' ('v4',
 * the default, or 'scalar', before round 4). --compare-kernels times the same steps again with the kernels
 * before issue #5's round 4 (head attention in both passes, scalar column sums) and, with --profile, profiles one
 * of those steps too, then prints the GPU time of attention, column sums and LayerNorm backward old vs new from
 * the two profiles (same process). --tiny shrinks every model to one layer of width
 * 64 (ViT-B/32 keeps its 50 and 77 tokens and heads of 64; gpu-small its width 192) and batches to 2–4: a CPU test
 * of the device script, not a measurement. --compare-attention times the same steps again with the per-row
 * attention kernels; --quick-init skips open_clip's initialisation (see quickState).
 *
 * Prints a table (and the profiles) and writes DIR/train-<adapter>[-TAG].json (DIR: bench/out).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openDawn, type DawnBackend } from '../server/gpu/dawn.ts';
import { loadStoredTuning } from '../server/gpu/tuning.ts';
import { GpuBackend } from '../src/core/gpu/backend.ts';
import { describeGpu } from '../src/core/gpu/device.ts';
import { Engine, Tensor, type Kernel } from '../src/core/gpu/engine.ts';
import { getMatmulTuning, setMatmulTuning } from '../src/core/gpu/kernels/matmul.ts';
import {
  attentionKernels, embeddingBackwardKernels, rowKernelMode, setAttentionBackwardKernels, setAttentionKernels, setColumnSumKernels,
  setEmbeddingBackwardKernels, setRowKernelMode, type ColumnSumKernels, type EmbeddingBackwardKernels, type RowKernelMode,
} from '../src/core/gpu/kernels/ops.ts';
import { ClipModel, clipBatch, clipParamSpecs, type StateDict } from '../src/core/model/clip.ts';
import { clipConfig, gridTokens, type ClipConfig } from '../src/core/model/configs.ts';
import { normalizeChw } from '../src/core/train/augment.ts';
import { SCALES } from '../src/core/train/scales.ts';
import { Rng } from '../src/core/util/random.ts';

const { values } = parseArgs({
  options: {
    gpu: { type: 'string', default: 'auto' },
    steps: { type: 'string', default: '3' },
    only: { type: 'string' },
    'vit-batch': { type: 'string', default: '16' },
    batch: { type: 'string' },
    out: { type: 'string', default: resolve(import.meta.dirname, 'out') },
    tag: { type: 'string' },
    tuning: { type: 'string' },
    attention: { type: 'string', default: 'auto' },
    'attention-backward': { type: 'string' },
    'column-sums': { type: 'string', default: 'v4' },
    'embedding-grad': { type: 'string', default: 'segments' },
    'compare-kernels': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'profile-method': { type: 'string', default: 'auto' },
    tiny: { type: 'boolean', default: false },
    'compare-attention': { type: 'boolean', default: false },
    'quick-init': { type: 'boolean', default: false },
    'row-kernels': { type: 'string' },
    'compare-step': { type: 'boolean', default: false },
    upload: { type: 'string', default: 'u8' },
    'no-fuse': { type: 'boolean', default: false },
    'submit-every': { type: 'string' },
    serial: { type: 'boolean', default: false },
  },
});
if (!['u8', 'f32'].includes(values.upload!)) throw new Error(`--upload: u8 or f32 (got ${values.upload})`);
const method = values['profile-method']!;
if (!['auto', 'timestamps', 'replay'].includes(method)) throw new Error(`--profile-method: one of auto, timestamps, replay (got ${method})`);
if (!['auto', 'head', 'tiled', 'rows'].includes(values.attention!)) throw new Error(`--attention: auto, head, tiled or rows (got ${values.attention})`);
if (values['attention-backward'] && !['head', 'tiled', 'rows'].includes(values['attention-backward'])) {
  throw new Error(`--attention-backward: head, tiled or rows (got ${values['attention-backward']})`);
}
if (!['v4', 'scalar'].includes(values['column-sums']!)) throw new Error(`--column-sums: v4 or scalar (got ${values['column-sums']})`);
if (!['segments', 'direct'].includes(values['embedding-grad']!)) throw new Error(`--embedding-grad: segments or direct (got ${values['embedding-grad']})`);
const ATTENTION = values.attention === 'auto' ? undefined : (values.attention as 'head' | 'tiled' | 'rows');
const ATTENTION_BACKWARD = values['attention-backward'] as 'head' | 'tiled' | 'rows' | undefined;
const COLUMN_SUMS = values['column-sums'] as ColumnSumKernels;
/** The kernel switches as given on the command line (and after a comparison with other kernels). */
function setKernels(): void {
  setAttentionKernels(engine, ATTENTION);
  setAttentionBackwardKernels(engine, ATTENTION_BACKWARD);
  setEmbeddingBackwardKernels(engine, EMBEDDING_GRAD);
  setColumnSumKernels(engine, COLUMN_SUMS);
}
const EMBEDDING_GRAD = values['embedding-grad'] as EmbeddingBackwardKernels;

/** One layer of width 64 (heads of 64), same image and context sizes: the shapes' structure at a CPU's cost. */
function tinyConfig(cfg: ClipConfig): ClipConfig {
  const v = cfg.vision;
  const t = cfg.text;
  const width = (w: number) => Math.min(w, v.width === 192 ? 192 : 64);
  return {
    name: `${cfg.name} (tiny)`,
    embedDim: Math.min(cfg.embedDim, 64),
    vision: { ...v, width: width(v.width), layers: 1, heads: width(v.width) / 64 },
    text: { ...t, width: width(t.width), layers: 1, heads: width(t.width) / 64 },
  };
}

interface Case { name: string; cfg: ClipConfig; batch: number; note: string }
const cases: Case[] = [
  { name: 'cpu-tiny', cfg: clipConfig(SCALES['cpu-tiny'].model), batch: SCALES['cpu-tiny'].batchSize, note: 'recipe batch' },
  { name: 'gpu-small', cfg: clipConfig(SCALES['gpu-small'].model), batch: SCALES['gpu-small'].batchSize, note: 'recipe batch' },
  { name: 'ViT-B-32', cfg: clipConfig('ViT-B-32'), batch: Number(values['vit-batch']), note: `micro-batch (recipe: ${SCALES.small.batchSize})` },
].filter((c) => !values.only || values.only.split(',').includes(c.name));

/** A batch as the loader makes it: uint8 CHW pixels (and their normalised float32 values for --upload f32). */
interface Data { pixels: Uint8Array; images: Float32Array; ids: Int32Array }

function syntheticBatch(cfg: ClipConfig, B: number, rng: Rng): Data {
  const S = cfg.vision.imageSize;
  const ctx = cfg.text.contextLength;
  const pixels = new Uint8Array(B * 3 * S * S);
  for (let i = 0; i < pixels.length; i += 4) {
    const r = rng.int(2 ** 32);
    pixels[i] = r & 255;
    pixels[i + 1] = (r >>> 8) & 255;
    pixels[i + 2] = (r >>> 16) & 255;
    pixels[i + 3] = r >>> 24;
  }
  const images = normalizeChw(pixels, S * S);
  const ids = new Int32Array(B * ctx);
  for (let b = 0; b < B; b++) {
    const len = Math.min(ctx - 1, 3 + rng.int(12)); // the embedded pool's captions: median 7 tokens
    ids[b * ctx] = 49406;
    for (let t = 1; t < len; t++) ids[b * ctx + t] = 1 + rng.int(49400);
    ids[b * ctx + len] = 49407;
  }
  return { pixels, images, ids };
}

const gpu = await openDawn({ backend: values.gpu as DawnBackend });
const engine = new Engine(gpu);
if (values['submit-every']) engine.maxDispatchesPerSubmit = Number(values['submit-every']);
const be = new GpuBackend(engine);
const device = `${gpu.backend}: ${describeGpu(gpu.info)}`;
// As `dcw train`: the matmul tuning stored for this adapter where training looks for it (per model, where it was
// measured on one model's shapes), unless told otherwise.
const tuningFor = (model: string): string => {
  setMatmulTuning(engine, undefined);
  if (values.tuning === 'none') return 'built-in';
  return loadStoredTuning(engine, values.tuning ? [values.tuning] : undefined, model) ?? 'built-in (none stored for this adapter and model)';
};
const tuning = Object.fromEntries(cases.map((c) => [c.cfg.name, tuningFor(c.cfg.name)]));
setKernels();
if (values['row-kernels']) setRowKernelMode(engine, values['row-kernels'] as RowKernelMode);
// A CPU adapter (llvmpipe, SwiftShader) takes minutes per step at gpu-small's batch of 512: measure a micro-batch
// there (samples/s of a step barely depends on the batch once it fills the cores).
if (gpu.info.isCpu && !values.batch) {
  for (const c of cases) {
    const micro = c.name === 'gpu-small' ? 32 : c.name === 'ViT-B-32' ? 4 : c.batch;
    if (micro !== c.batch) {
      c.note = `micro-batch on a CPU adapter (recipe: ${c.name === 'gpu-small' ? SCALES['gpu-small'].batchSize : SCALES.small.batchSize})`;
      c.batch = micro;
    }
  }
}
if (values.tiny) {
  for (const c of cases) {
    c.cfg = tinyConfig(c.cfg);
    c.batch = values.batch ? Number(values.batch) : c.name === 'cpu-tiny' ? 4 : 2;
    c.note = 'tiny shapes: a test of the bench, not a measurement';
  }
} else if (values.batch) for (const c of cases) c.batch = Number(values.batch);
console.log(`device: ${device}; rows: ${rowKernelMode(engine)}; matmul tuning: ${Object.entries(tuning).map(([m, t]) => `${m}: ${t}`).join(', ')}; attention: ${values.attention}${ATTENTION_BACKWARD ? `, backward ${ATTENTION_BACKWARD}` : ''}; embedding gradient: ${embeddingBackwardKernels(engine)}; column sums: ${COLUMN_SUMS}`);

interface KernelTime { kernel: string; calls: number; ms: number }
interface Profile {
  method: 'timestamps' | 'replay';
  /** Sum of the kernels' GPU times (timestamps: each dispatch alone in a pass; replay: wall time per kernel). */
  kernelMs: number;
  dispatches: number;
  kernels: KernelTime[];
  /** The same, summed by kind (matmul, attention, layernorm, …). */
  families: KernelTime[];
}
interface Timing { msPerStep: number; uploadMs: number; recordMs: number; waitMs: number; dispatchesPerStep: number; submitsPerStep: number }
interface Variant extends Timing { name: string; samplesPerSecond: number }
interface Row {
  scale: string; model: string; batch: number; note: string; msPerStep: number; samplesPerSecond: number;
  uploadMs?: number; recordMs?: number; waitMs?: number; dispatchesPerStep?: number; submitsPerStep?: number;
  attention?: string; profile?: Profile; error?: string;
  /** How the steps ran (upload, fused ops, dispatches per submit, pipelined or serial). */
  mode?: string;
  /** --compare-attention: the same steps with the per-row attention kernels. */
  rowAttention?: { msPerStep: number; samplesPerSecond: number; uploadMs: number; recordMs: number; waitMs: number };
  /** --compare-kernels: the same steps with the kernels before round 4 (and their profile, with --profile). */
  previousKernels?: Timing & { kernels: string; samplesPerSecond: number; profile?: Profile };
  /** --compare-step: the same steps with options switched back (the last: all of them, the old path). */
  variants?: Variant[];
}

const steps = Number(values.steps);
let stepNumber = 0;

/** How steps are run (see the file comment). */
interface StepMode { upload: 'u8' | 'f32'; fuse: boolean; submitEvery: number; pipelined: boolean; /** the built-in matmul tuning instead of the stored one */ builtinTuning?: boolean }
const MODE: StepMode = { upload: values.upload as 'u8' | 'f32', fuse: !values['no-fuse'], submitEvery: engine.maxDispatchesPerSubmit, pipelined: !values.serial };
const modeName = (m: StepMode) => `${m.upload} upload, ${m.fuse ? 'fused' : 'unfused'}, submit every ${m.submitEvery}, ${m.pipelined ? 'pipelined' : 'serial'}`;

/**
 * Mean phases of `steps` training steps after one warm-up step (which compiles the pipelines). Pipelined as the
 * training loop: after recording step n, wait for step n−1's work; the loss is read after the last step.
 */
async function timeSteps(model: ClipModel<Tensor>, cfg: ClipConfig, data: Data, steps: number, mode: StepMode = MODE): Promise<Timing> {
  const saved = { fuse: model.fuse, every: engine.maxDispatchesPerSubmit, tuning: getMatmulTuning(engine) };
  model.fuse = mode.fuse;
  engine.maxDispatchesPerSubmit = mode.submitEvery;
  if (mode.builtinTuning) setMatmulTuning(engine, undefined);
  try {
    const phases: { upload: number; record: number; wait: number; dispatches: number; submits: number }[] = [];
    let started = 0;
    let previous: Promise<void> | undefined;
    for (let s = 0; s <= steps; s++) {
      const d0 = engine.stats.dispatches;
      const s0 = engine.stats.submits;
      const t0 = performance.now();
      if (s === 1) started = t0;
      be.beginScope();
      const batch = clipBatch(be, cfg, mode.upload === 'u8' ? data.pixels : data.images, data.ids);
      const t1 = performance.now();
      const loss = model.step(batch, opt, ++stepNumber);
      const t2 = performance.now();
      if (!mode.pipelined || s === 0 || s === steps) {
        await be.read(loss);
        previous = undefined;
      } else {
        const queued = be.settled();
        await previous;
        previous = queued;
      }
      const t3 = performance.now();
      be.endScope();
      if (s > 0) phases.push({ upload: t1 - t0, record: t2 - t1, wait: t3 - t2, dispatches: engine.stats.dispatches - d0, submits: engine.stats.submits - s0 });
    }
    const wall = (performance.now() - started) / steps;
    const uploadMs = mean(phases.map((p) => p.upload));
    const recordMs = mean(phases.map((p) => p.record));
    const waitMs = mean(phases.map((p) => p.wait));
    return { msPerStep: mode.pipelined ? wall : uploadMs + recordMs + waitMs, uploadMs, recordMs, waitMs, dispatchesPerStep: phases[0]!.dispatches, submitsPerStep: phases[0]!.submits };
  } finally {
    model.fuse = saved.fuse;
    engine.maxDispatchesPerSubmit = saved.every;
    setMatmulTuning(engine, saved.tuning);
  }
}

/** --compare-step: each option switched back alone, then all together (the step before issue #5's round 2). */
const COMPARE: [string, Partial<StepMode>][] = [
  ['f32 upload', { upload: 'f32' }],
  ['unfused ops', { fuse: false }],
  ['one submit per step', { submitEvery: 100000 }],
  ['serial (loss read every step)', { pipelined: false }],
  ['all of these (the old path)', { upload: 'f32', fuse: false, submitEvery: 100000, pipelined: false }],
];
const rows: Row[] = [];
const opt = { lr: 1e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2 };
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const c of cases) {
  const rng = new Rng(1);
  stepNumber = 0;
  let model: ClipModel<Tensor> | undefined;
  const row: Row = { scale: c.name, model: c.cfg.name, batch: c.batch, note: c.note, msPerStep: NaN, samplesPerSecond: NaN };
  tuningFor(c.cfg.name);
  try {
    model = values['quick-init'] ? new ClipModel(be, c.cfg, { state: quickState(c.cfg) }) : new ClipModel(be, c.cfg, { seed: 0 });
    const data = syntheticBatch(c.cfg, c.batch, rng);
    const vT = gridTokens(c.cfg.vision) + 1;
    row.attention = ['vision', 'text'].map((tower) => {
      const t = tower === 'vision' ? { T: vT, w: c.cfg.vision } : { T: c.cfg.text.contextLength, w: c.cfg.text };
      const shape = { B: c.batch, T: t.T, H: t.w.heads, D: t.w.width / t.w.heads, causal: tower === 'text' };
      const forward = attentionKernels(engine, shape);
      const backward = attentionKernels(engine, shape, 'backward');
      return `${tower} T${t.T}: ${forward}${backward === forward ? '' : ` (backward ${backward})`}`;
    }).join(', ');
    row.mode = modeName(MODE);
    Object.assign(row, await timeSteps(model, c.cfg, data, steps));
    row.samplesPerSecond = (1000 * c.batch) / row.msPerStep;
    if (values['compare-step']) {
      row.variants = [];
      const compare = [...COMPARE];
      if (getMatmulTuning(engine) && !engine.info.isCpu) compare.splice(4, 0, ['the built-in matmul tuning', { builtinTuning: true }]);
      for (const [name, change] of compare) {
        const t = await timeSteps(model, c.cfg, data, steps, { ...MODE, ...change });
        row.variants.push({ name, ...t, samplesPerSecond: (1000 * c.batch) / t.msPerStep });
      }
    }
    if (values['compare-attention'] && /head|tiled/.test(row.attention)) {
      // The same model and batch with the per-row attention kernels: the tiled kernels' gain, same process.
      setAttentionKernels(engine, 'rows');
      try {
        const before = await timeSteps(model, c.cfg, data, steps);
        row.rowAttention = { ...before, samplesPerSecond: (1000 * c.batch) / before.msPerStep };
      } finally {
        setKernels();
      }
    }
    if (values.profile) row.profile = await profileStep(model, c.cfg, data, ++stepNumber);
    if (values['compare-kernels']) {
      // The kernels before round 4 of issue #5, same model, batch and process: what the new ones gained.
      setAttentionKernels(engine, 'head');
      setAttentionBackwardKernels(engine, undefined);
      setColumnSumKernels(engine, 'scalar');
      try {
        const t = await timeSteps(model, c.cfg, data, steps);
        row.previousKernels = { ...t, kernels: 'head attention in both passes, scalar column sums', samplesPerSecond: (1000 * c.batch) / t.msPerStep };
        if (values.profile) row.previousKernels.profile = await profileStep(model, c.cfg, data, ++stepNumber);
      } finally {
        setKernels();
      }
    }
  } catch (err) {
    row.error = (err as Error).message.split('\n')[0];
  } finally {
    if (model) for (const p of model.params) [p.value, p.m, p.v].forEach((t) => t.dispose());
  }
  rows.push(row);
  const ms = (v: number | undefined) => (v ?? NaN).toFixed(1);
  console.log(`${row.scale.padEnd(10)} ${row.model.padEnd(9)} batch ${String(row.batch).padStart(4)}  ${row.error ? `failed: ${row.error}` : `${row.msPerStep.toFixed(0).padStart(7)} ms/step  ${row.samplesPerSecond.toFixed(1).padStart(8)} samples/s  (upload ${ms(row.uploadMs)} + record ${ms(row.recordMs)} + wait ${ms(row.waitMs)} ms; ${row.dispatchesPerStep} dispatches, ${row.submitsPerStep} submits)`}  (${row.note})`);
  if (row.attention) console.log(`  attention: ${row.attention}`);
  if (row.mode) console.log(`  steps: ${row.mode}`);
  for (const v of row.variants ?? []) {
    console.log(`  with ${v.name}: ${v.msPerStep.toFixed(1)} ms/step, ${v.samplesPerSecond.toFixed(1)} samples/s (upload ${v.uploadMs.toFixed(1)} + record ${v.recordMs.toFixed(1)} + wait ${v.waitMs.toFixed(1)} ms; ${v.submitsPerStep} submits)`);
  }
  if (row.rowAttention) console.log(`  with per-row attention kernels instead: ${row.rowAttention.msPerStep.toFixed(1)} ms/step, ${row.rowAttention.samplesPerSecond.toFixed(1)} samples/s (upload ${row.rowAttention.uploadMs.toFixed(1)} + record ${row.rowAttention.recordMs.toFixed(1)} + wait ${row.rowAttention.waitMs.toFixed(1)} ms)`);
  if (row.profile) printProfile(row, row.profile);
  if (row.previousKernels) printPrevious(row, row.previousKernels);
}
const rowKernels = rowKernelMode(engine);
engine.destroy();
mkdirSync(values.out!, { recursive: true });
const file = join(values.out!, `train-${gpu.backend}${values.tag ? `-${values.tag}` : ''}.json`);
writeFileSync(file, `${JSON.stringify({ device, steps, rowKernels, tuning, attention: values.attention, attentionBackward: ATTENTION_BACKWARD, columnSums: COLUMN_SUMS, embeddingGrad: EMBEDDING_GRAD, mode: modeName(MODE), tiny: values.tiny, rows }, null, 2)}\n`);
console.log(`wrote ${file}`);
process.exit(rows.some((r) => r.error) ? 1 : 0);

/**
 * Weights that cost nothing to make (--quick-init): N(0, 0.02) values from one 1M-entry table, gains 1, biases 0,
 * logit scale ln(1/0.07). Drawing ViT-B/32's 151M open_clip-initialised values in JS takes half a minute; a step's
 * speed does not depend on them.
 */
function quickState(cfg: ClipConfig): StateDict {
  const rng = new Rng(7);
  const table = Float32Array.from({ length: 1 << 20 }, () => rng.normal() * 0.02);
  const state: StateDict = new Map();
  for (const spec of clipParamSpecs(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (spec.name === 'logit_scale') data.fill(Math.log(1 / 0.07));
    else if (/(^|\.)ln_[^.]*\.weight$/.test(spec.name)) data.fill(1);
    else if (!spec.name.endsWith('bias')) for (let i = 0; i < n; i += table.length) data.set(table.subarray(0, Math.min(table.length, n - i)), i);
    state.set(spec.name, { data, shape: spec.shape });
  }
  return state;
}

// ---------------------------------------------------------------- profile

/** Kernel keys → a kind, for the summary. */
function family(key: string): string {
  if (key.startsWith('matmul-splitk')) return 'matmul split-K reduce';
  if (key.startsWith('matmul')) return 'matmul';
  if (key.startsWith('attentionBackward')) return 'attention backward';
  if (key.startsWith('attention')) return 'attention';
  if (key.startsWith('layernormBackward') || key.startsWith('colsum-layernorm')) return 'layernorm backward';
  if (key.startsWith('layernorm')) return 'layernorm';
  if (key.startsWith('gelu')) return key.startsWith('geluBackward') ? 'gelu backward' : 'gelu';
  if (key.startsWith('adamw')) return 'adamw';
  if (key.startsWith('colsum') || key.startsWith('sumRows')) return 'bias gradients (column sums)';
  if (key === 'add' || key.startsWith('addInto') || key === 'scale' || key === 'fill') return 'elementwise add/scale';
  return key.replace(/-.*$/, '');
}

function group(entries: { kernel: string; ms: number; calls?: number }[], by: (k: string) => string): KernelTime[] {
  const m = new Map<string, KernelTime>();
  for (const e of entries) {
    const k = by(e.kernel);
    const g = m.get(k) ?? { kernel: k, calls: 0, ms: 0 };
    g.calls += e.calls ?? 1;
    g.ms += e.ms;
    m.set(k, g);
  }
  return [...m.values()].sort((a, b) => b.ms - a.ms);
}

async function profileStep(model: ClipModel<Tensor>, cfg: ClipConfig, data: Data, stepNumber: number): Promise<Profile> {
  const useTimestamps = method === 'timestamps' || (method === 'auto' && engine.info.timestampQuery);
  if (useTimestamps && !engine.info.timestampQuery) throw new Error('--profile-method timestamps: this adapter has no timestamp-query');
  be.beginScope();
  try {
    // The batch is made inside the profile: the uint8 upload's normalising kernel is part of the step.
    const makeBatch = () => clipBatch(be, cfg, MODE.upload === 'u8' ? data.pixels : data.images, data.ids);
    model.fuse = MODE.fuse;
    if (useTimestamps) {
      engine.startProfile();
      await be.read(model.step(makeBatch(), opt, stepNumber));
      const times = (await engine.stopProfile())!;
      const kernels = group(times, (k) => k);
      return { method: 'timestamps', kernelMs: times.reduce((a, t) => a + t.ms, 0), dispatches: times.length, kernels, families: group(kernels, family) };
    }
    // Replay: capture the step's dispatches (their buffers stay allocated: pooled, and the step's scope is still
    // open, so index tensors keep their contents), then time each kernel's dispatches on their own.
    const captured: { kernel: Kernel; buffers: Tensor[]; params: number[]; workgroups: [number, number?, number?] }[] = [];
    engine.onDispatch = (kernel, buffers, params, workgroups) => {
      captured.push({ kernel, buffers: buffers.map((t) => new Tensor(engine, t.buffer, t.shape, t.dtype)), params: [...params], workgroups: [...workgroups] as [number, number?, number?] });
    };
    try {
      await be.read(model.step(makeBatch(), opt, stepNumber));
    } finally {
      engine.onDispatch = undefined;
    }
    const byKernel = new Map<string, typeof captured>();
    for (const d of captured) byKernel.set(d.kernel.key, [...(byKernel.get(d.kernel.key) ?? []), d]);
    const wall = async (f: () => void) => {
      await engine.sync();
      const t0 = performance.now();
      f();
      await engine.sync();
      return performance.now() - t0;
    };
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
    const idle = median([await wall(() => {}), await wall(() => {}), await wall(() => {})]);
    const kernels: KernelTime[] = [];
    for (const [kernel, list] of byKernel) {
      const runs: number[] = [];
      for (let r = 0; r < 3; r++) runs.push(await wall(() => list.forEach((d) => engine.dispatch(d.kernel, d.buffers, d.params, d.workgroups))));
      kernels.push({ kernel, calls: list.length, ms: Math.max(0, median(runs) - idle) });
    }
    kernels.sort((a, b) => b.ms - a.ms);
    return { method: 'replay', kernelMs: kernels.reduce((a, k) => a + k.ms, 0), dispatches: captured.length, kernels, families: group(kernels, family) };
  } finally {
    be.endScope();
  }
}

function printProfile(row: Row, p: Profile): void {
  const line = (k: KernelTime) => `  ${k.kernel.slice(0, 64).padEnd(64)} ${String(k.calls).padStart(6)} ${k.ms.toFixed(3).padStart(10)} ${((100 * k.ms) / p.kernelMs).toFixed(1).padStart(6)}% ${((100 * k.ms) / row.msPerStep).toFixed(1).padStart(6)}%`;
  console.log(`  profile (${p.method}): ${p.dispatches} dispatches, kernels ${p.kernelMs.toFixed(1)} ms of a ${row.msPerStep.toFixed(1)} ms step`);
  console.log(`  ${'kind'.padEnd(64)} ${'calls'.padStart(6)} ${'ms'.padStart(10)} ${'kern'.padStart(7)} ${'step'.padStart(7)}`);
  for (const f of p.families) console.log(line(f));
  console.log(`  ${'kernel (top 25)'.padEnd(64)}`);
  for (const k of p.kernels.slice(0, 25)) console.log(line(k));
}

/** --compare-kernels: the step with the previous kernels, and the kernel kinds they differ in, old → new (GPU ms). */
function printPrevious(row: Row, prev: NonNullable<Row['previousKernels']>): void {
  console.log(`  with the previous kernels (${prev.kernels}): ${prev.msPerStep.toFixed(1)} ms/step, ${prev.samplesPerSecond.toFixed(1)} samples/s (upload ${prev.uploadMs.toFixed(1)} + record ${prev.recordMs.toFixed(1)} + wait ${prev.waitMs.toFixed(1)} ms); now ${row.msPerStep.toFixed(1)} ms/step`);
  if (!row.profile || !prev.profile) return;
  const ms = (p: Profile, kind: string) => p.families.find((f) => f.kernel === kind)?.ms ?? 0;
  console.log(`  GPU ms per step, previous kernels → now (${prev.profile.method}):`);
  for (const kind of ['attention', 'attention backward', 'bias gradients (column sums)', 'layernorm backward', 'embeddingBackward']) {
    console.log(`    ${kind.padEnd(24)} ${ms(prev.profile, kind).toFixed(3).padStart(9)} → ${ms(row.profile, kind).toFixed(3).padStart(9)}`);
  }
  console.log(`    ${'all kernels'.padEnd(24)} ${prev.profile.kernelMs.toFixed(3).padStart(9)} → ${row.profile.kernelMs.toFixed(3).padStart(9)}`);
  const mine = (k: string) => /^(attention|colsum|layernormBackward)/.test(k);
  for (const k of [...prev.profile.kernels, ...row.profile.kernels].filter((x) => mine(x.kernel))) {
    console.log(`    ${k.kernel.slice(0, 60).padEnd(60)} ${String(k.calls).padStart(4)} ${k.ms.toFixed(3).padStart(9)}`);
  }
}
