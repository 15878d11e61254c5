/**
 * `npm run bench:gpu`: the engine vs @tensorflow/tfjs-backend-webgpu on one Dawn device in Node.
 *   node --import tsx bench/gpu.ts [--backend auto|vulkan|swiftshader|opengles] [--out DIR] [--max-seconds S]
 *                                  [--no-tfjs] [--quick] [--only block|matmul] [--row-modes default|all] [--cache DIR] [--reuse-tuning] [--browser [--adapter compat|core]]
 * Prints the side-by-side table and writes DIR/gpu-<device>.json (default DIR bench/out). On a GPU the matmul
 * autotune's result is stored per device in CACHE/gpu-tuning.json (default bench/out; server/gpu/tuning.ts);
 * --reuse-tuning runs with the stored one instead of tuning again; --smoke runs the GPU code path at tiny sizes
 * on any adapter (a local check of the autotune, e.g. on --backend swiftshader). --browser runs the same suite in headless
 * Chromium instead (bench/gpu-browser.ts).
 *
 *   node --import tsx bench/gpu.ts --tune-shapes vit-b-32 [--batch 256] [--if-missing] [--cache DIR] [--max-seconds 60]
 * tunes the matmul on the training step's big shapes instead (ViT-B/32's MLP at a micro-batch: forward x·Wᵀ, input
 * gradients dy·W, weight gradients dyᵀ·x, vision and text towers): each candidate kernel, planned as the engine
 * would plan it alone (split-K included), timed on every shape; its speed is the best total over its total. Stores
 * the result like the full autotune; --if-missing does nothing when CACHE already holds a tuning for the adapter.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openDawn, type DawnBackend } from '../server/gpu/dawn.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { loadTuning, saveTuning, TUNING_FILE } from '../server/gpu/tuning.ts';
import { choosePlan, configName, matmul, planName, tiledConfigError, type MatmulConfig, type TiledConfig } from '../src/core/gpu/kernels/matmul.ts';
import { DEFAULT_GPU_TUNING, type MatmulTuning } from '../src/core/gpu/tuning.ts';
import { fastestPerTile, formatTable, runGpuSuite, type Tfjs } from './gpu-suite.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    out: { type: 'string', default: join(ROOT, 'bench/out') },
    'max-seconds': { type: 'string', default: '20' },
    'no-tfjs': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    browser: { type: 'boolean', default: false },
    adapter: { type: 'string', default: 'compat' },
    'rebuild-tfjs': { type: 'boolean', default: false },
    cache: { type: 'string', default: join(ROOT, 'bench/out') },
    'reuse-tuning': { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    'row-modes': { type: 'string', default: 'default' },
    'tune-shapes': { type: 'string' },
    batch: { type: 'string', default: '256' },
    'if-missing': { type: 'boolean', default: false },
  },
});

if (args.browser) {
  const { runBrowserBench } = await import('./gpu-browser.ts');
  await runBrowserBench({ adapter: args.adapter === 'core' ? 'core' : 'compat', out: args.out!, maxSeconds: Number(args['max-seconds']), quick: args.quick!, tfjs: !args['no-tfjs'] });
  process.exit(0);
}

const gpu = await openDawn({ backend: args.backend as DawnBackend });
const engine = new Engine(gpu);
if (args['tune-shapes']) {
  if (args['tune-shapes'] !== 'vit-b-32') throw new Error(`--tune-shapes: vit-b-32 (got ${args['tune-shapes']})`);
  // stored for ViT-B/32 training only (findTuning): other models keep their own or the built-in one
  if (args['if-missing'] && loadTuning(engine, args.cache!, 'ViT-B-32')) {
    console.log(`a matmul tuning for this adapter is stored in ${join(args.cache!, TUNING_FILE)}: not tuning again`);
  } else {
    const tuning = await tuneTrainingShapes(engine, Number(args.batch), Number(args['max-seconds']), (l) => console.log(l));
    console.log(`matmul tuning stored in ${saveTuning(engine, args.cache!, tuning, 'ViT-B-32')}`);
  }
  engine.destroy();
  process.exit(0);
}
let tfjs: Tfjs | undefined;
if (!args['no-tfjs']) {
  try {
    tfjs = await loadTfjsForNode(gpu.gpu, args['rebuild-tfjs']!);
  } catch (err) {
    // The engine's side still runs; the table then says tfjs was not loaded.
    console.error(`tfjs could not be loaded (${(err as Error).message}); benchmarking the engine alone`);
  }
}
const stored = args['reuse-tuning'] ? loadTuning(engine, args.cache!) : undefined;
const result = await runGpuSuite({ engine, tfjs, maxSeconds: Number(args['max-seconds']), quick: args.quick, tuning: stored, smoke: args.smoke, only: args.only === 'block' || args.only === 'matmul' ? args.only : undefined, rowModes: args['row-modes'] === 'all' ? 'all' : 'default', log: (l) => console.error(l) });
if (result.tuning && !stored) console.error(`matmul tuning stored in ${saveTuning(engine, args.cache!, result.tuning)}`);
const slug = `node-${gpu.backend}-${slugify(engine.info.device || engine.info.description || engine.info.vendor)}`;
console.log(`\nNode + Dawn (${gpu.backend})`);
console.log(formatTable(result));
mkdirSync(args.out!, { recursive: true });
const file = join(args.out!, `gpu-${slug}.json`);
writeFileSync(file, JSON.stringify({ environment: `node ${process.version}, dawn backend ${gpu.backend}`, ...result }, null, 2));
console.log(`\nwrote ${file} (${result.seconds.toFixed(0)} s)`);
engine.destroy();
process.exit(0);

export function slugify(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'unknown';
}

/**
 * tfjs's Node entry points are CommonJS bundles without gradients, so the ESM sources are bundled once with
 * Vite (bench/tfjs-entry.ts → bench/out/tfjs/) and imported; navigator.gpu must exist for the WebGPU backend.
 */
async function loadTfjsForNode(gpuObject: GPU, rebuild: boolean): Promise<Tfjs> {
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  Object.defineProperty(g.navigator, 'gpu', { value: gpuObject, configurable: true });
  const outDir = join(ROOT, 'bench/out/tfjs');
  const bundle = join(outDir, 'tfjs-bundle.js');
  // A bundle carried to a GPU machine is reused as is (no Vite needed there).
  if (!rebuild && existsSync(bundle)) return (await import(bundle)) as Tfjs;
  const { build } = await import('vite');
  await build({
    configFile: false, logLevel: 'warn', root: ROOT,
    ssr: { noExternal: true, target: 'node' },
    resolve: { mainFields: ['module', 'main'] },
    build: { ssr: join(ROOT, 'bench/tfjs-entry.ts'), outDir, emptyOutDir: true, minify: false, rollupOptions: { output: { format: 'es', entryFileNames: 'tfjs-bundle.js' } } },
  });
  return (await import(bundle)) as Tfjs;
}

/** The matmul shapes of a ViT-B/32 training step at `batch` (M, N, K; A/B transposes as the tape records them). */
export function trainingShapes(batch: number): { name: string; M: number; N: number; K: number; transA?: boolean; transB?: boolean }[] {
  const out: ReturnType<typeof trainingShapes> = [];
  for (const [tower, rows, C] of [['vision', batch * 50, 768], ['text', batch * 77, 512]] as const) {
    for (const [layer, inp, outC] of [['fc1', C, 4 * C], ['fc2', 4 * C, C], ['qkv', C, 3 * C]] as const) {
      out.push({ name: `${tower} ${layer} forward x·Wᵀ`, M: rows, N: outC, K: inp, transB: true });
      out.push({ name: `${tower} ${layer} dx = dy·W`, M: rows, N: inp, K: outC });
      out.push({ name: `${tower} ${layer} dW = dyᵀ·x`, M: outC, N: inp, K: rows, transA: true });
    }
  }
  return out;
}

/**
 * --tune-shapes: every candidate kernel on the training step's shapes (see the file comment); the fill settings
 * stay the built-in ones. Time: GPU timestamps where the adapter has them, else the wall clock around a wait.
 */
async function tuneTrainingShapes(engine: Engine, batch: number, maxSeconds: number, log: (l: string) => void): Promise<MatmulTuning> {
  const started = performance.now();
  const candidates = ([
    { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 },
    { kind: 'tiled', BM: 64, BN: 128, BK: 8, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 64, BK: 8, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 64, BN: 128, BK: 16, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 64, BK: 16, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, db: true },
    { kind: 'tiled', BM: 64, BN: 64, BK: 8, TM: 4, TN: 4, db: true },
    { kind: 'tiled', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, db: true },
  ] as TiledConfig[]).filter((c) => !tiledConfigError(c, engine));
  const shapes = trainingShapes(batch);
  const biggest = Math.max(...shapes.flatMap((s) => [s.M * s.K, s.K * s.N, s.M * s.N]));
  const fillA = new Float32Array(biggest);
  for (let i = 0; i < biggest; i++) fillA[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  const a = engine.tensor(fillA);
  const b = engine.tensor(fillA);
  const c = engine.empty([biggest]);
  const timeOf = async (run: () => void, reps: number): Promise<number> => {
    await engine.sync();
    if (engine.startTimer()) {
      for (let r = 0; r < reps; r++) run();
      const ms = await engine.stopTimer();
      if (ms !== undefined) return ms / reps;
    }
    await engine.sync();
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) run();
    await engine.sync();
    return (performance.now() - t0) / reps;
  };
  const totals: { config: MatmulConfig; ms: number }[] = [];
  for (const config of candidates) {
    if ((performance.now() - started) / 1000 > maxSeconds) {
      log(`tune: time is up (${maxSeconds} s), ${configName(config)} and later not measured`);
      break;
    }
    const alone: MatmulTuning = { ...DEFAULT_GPU_TUNING, kernels: [{ config, speed: 1 }] };
    let total = 0;
    try {
      for (const s of shapes) {
        const plan = choosePlan(alone, s.M, s.N, s.K, 1, engine);
        const run = () => void matmul(engine, a, b, s.M, s.N, s.K, { transA: s.transA, transB: s.transB, out: c, config: plan.config, splits: plan.splits });
        run(); // compiles
        const ms = await timeOf(run, 3);
        total += ms;
        log(`tune ${s.name} ${s.M}×${s.N}×${s.K}: ${planName(plan)} ${ms.toFixed(3)} ms (${((2 * s.M * s.N * s.K) / ms / 1e9).toFixed(1)} TFLOP/s)`);
      }
    } catch (err) {
      log(`tune ${configName(config)}: failed (${(err as Error).message.slice(0, 100)})`);
      continue;
    }
    log(`tune ${configName(config)}: ${total.toFixed(2)} ms over ${shapes.length} shapes`);
    totals.push({ config, ms: total });
  }
  a.dispose();
  b.dispose();
  c.dispose();
  if (!totals.length) return DEFAULT_GPU_TUNING;
  const best = Math.min(...totals.map((t) => t.ms));
  // as the full autotune picks them; the speeds stored to three decimals
  const kernels = fastestPerTile(totals.map((t) => ({ config: t.config, speed: best / t.ms })))
    .map((k) => ({ config: k.config, speed: Math.round(k.speed * 1000) / 1000 }));
  log(`tune: ${kernels.map((k) => `${configName(k.config)} ×${k.speed}`).join(', ')} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return { ...DEFAULT_GPU_TUNING, kernels };
}
