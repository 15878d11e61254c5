/**
 * Training throughput of one CLIP step (forward, backward, AdamW, logit-scale clamp; the loss read back) per
 * scale, in Node on a Dawn adapter: the workbench scales at their batch size, and ViT-B/32 (the small/medium
 * model: 224 px, 77 tokens) at a micro-batch when it fits. Synthetic pixels and captions of real token lengths
 * (random ids framed sot … eot): the data loader is not timed here (see `dcw run`'s per-step timings).
 *
 *   npm run bench:train [-- --gpu opengles|vulkan|swiftshader|auto] [--steps 3] [--only cpu-tiny,gpu-small,ViT-B-32]
 *                          [--vit-batch 16] [--batch N (overrides every batch)]
 * On a CPU adapter gpu-small and ViT-B/32 are measured at micro-batches (32 and 4) unless --batch is given.
 *
 * Prints a table and writes bench/out/train-<adapter>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDawn, type DawnBackend } from '../server/gpu/dawn.ts';
import { GpuBackend } from '../src/core/gpu/backend.ts';
import { describeGpu } from '../src/core/gpu/device.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { ClipModel, clipBatch } from '../src/core/model/clip.ts';
import { clipConfig, type ClipConfig } from '../src/core/model/configs.ts';
import { SCALES } from '../src/core/train/scales.ts';
import { Rng } from '../src/core/util/random.ts';

const { values } = parseArgs({
  options: {
    gpu: { type: 'string', default: 'auto' },
    steps: { type: 'string', default: '3' },
    only: { type: 'string' },
    'vit-batch': { type: 'string', default: '16' },
    batch: { type: 'string' },
  },
});

interface Case { name: string; cfg: ClipConfig; batch: number; note: string }
const cases: Case[] = [
  { name: 'cpu-tiny', cfg: clipConfig(SCALES['cpu-tiny'].model), batch: SCALES['cpu-tiny'].batchSize, note: 'recipe batch' },
  { name: 'gpu-small', cfg: clipConfig(SCALES['gpu-small'].model), batch: SCALES['gpu-small'].batchSize, note: 'recipe batch' },
  { name: 'ViT-B-32', cfg: clipConfig('ViT-B-32'), batch: Number(values['vit-batch']), note: `micro-batch (recipe: ${SCALES.small.batchSize})` },
].filter((c) => !values.only || values.only.split(',').includes(c.name));

function syntheticBatch(cfg: ClipConfig, B: number, rng: Rng): { images: Float32Array; ids: Int32Array } {
  const S = cfg.vision.imageSize;
  const ctx = cfg.text.contextLength;
  const images = Float32Array.from({ length: B * 3 * S * S }, () => rng.normal());
  const ids = new Int32Array(B * ctx);
  for (let b = 0; b < B; b++) {
    const len = Math.min(ctx - 1, 3 + rng.int(12)); // the embedded pool's captions: median 7 tokens
    ids[b * ctx] = 49406;
    for (let t = 1; t < len; t++) ids[b * ctx + t] = 1 + rng.int(49400);
    ids[b * ctx + len] = 49407;
  }
  return { images, ids };
}

const gpu = await openDawn({ backend: values.gpu as DawnBackend });
const engine = new Engine(gpu);
const be = new GpuBackend(engine);
const device = `${gpu.backend}: ${describeGpu(gpu.info)}`;
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
if (values.batch) for (const c of cases) c.batch = Number(values.batch);
console.log(`device: ${device}`);
const steps = Number(values.steps);
const rows: { scale: string; model: string; batch: number; note: string; msPerStep: number; samplesPerSecond: number; error?: string }[] = [];
for (const c of cases) {
  const rng = new Rng(1);
  let model: ClipModel<ReturnType<typeof be.zeros>> | undefined;
  try {
    model = new ClipModel(be, c.cfg, { seed: 0 });
    const data = syntheticBatch(c.cfg, c.batch, rng);
    const opt = { lr: 1e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2 };
    const times: number[] = [];
    for (let s = 0; s <= steps; s++) {
      const t0 = performance.now();
      be.beginScope();
      const loss = model.step(clipBatch(be, c.cfg, data.images, data.ids), opt, s + 1);
      await be.read(loss);
      be.endScope();
      if (s > 0) times.push(performance.now() - t0); // step 0 compiles pipelines
    }
    const ms = times.reduce((a, b) => a + b, 0) / times.length;
    rows.push({ scale: c.name, model: c.cfg.name, batch: c.batch, note: c.note, msPerStep: ms, samplesPerSecond: (1000 * c.batch) / ms });
  } catch (err) {
    rows.push({ scale: c.name, model: c.cfg.name, batch: c.batch, note: c.note, msPerStep: NaN, samplesPerSecond: NaN, error: (err as Error).message.split('\n')[0] });
  } finally {
    if (model) for (const p of model.params) [p.value, p.m, p.v].forEach((t) => t.dispose());
  }
  const r = rows.at(-1)!;
  console.log(`${r.scale.padEnd(10)} ${r.model.padEnd(9)} batch ${String(r.batch).padStart(4)}  ${r.error ? `failed: ${r.error}` : `${r.msPerStep.toFixed(0).padStart(7)} ms/step  ${r.samplesPerSecond.toFixed(1).padStart(8)} samples/s`}  (${r.note})`);
}
engine.destroy();
mkdirSync(join(import.meta.dirname, 'out'), { recursive: true });
const file = join(import.meta.dirname, 'out', `train-${gpu.backend}.json`);
writeFileSync(file, `${JSON.stringify({ device, steps, rows }, null, 2)}\n`);
console.log(`wrote ${file}`);
