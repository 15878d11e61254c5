/**
 * `npm run bench:gpu`: the engine vs @tensorflow/tfjs-backend-webgpu on one Dawn device in Node.
 *   node --import tsx bench/gpu.ts [--backend auto|vulkan|swiftshader|opengles] [--out DIR] [--max-seconds S]
 *                                  [--no-tfjs] [--quick] [--only block|matmul] [--row-modes default|all] [--cache DIR] [--reuse-tuning] [--browser [--adapter compat|core]]
 * Prints the side-by-side table and writes DIR/gpu-<device>.json (default DIR bench/out). On a GPU the matmul
 * autotune's result is stored per device in CACHE/gpu-tuning.json (default bench/out; server/gpu/tuning.ts);
 * --reuse-tuning runs with the stored one instead of tuning again; --smoke runs the GPU code path at tiny sizes
 * on any adapter (a local check of the autotune, e.g. on --backend swiftshader). --browser runs the same suite in headless
 * Chromium instead (bench/gpu-browser.ts).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openDawn, type DawnBackend } from '../server/gpu/dawn.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { loadTuning, saveTuning } from '../server/gpu/tuning.ts';
import { formatTable, runGpuSuite, type Tfjs } from './gpu-suite.ts';

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
  },
});

if (args.browser) {
  const { runBrowserBench } = await import('./gpu-browser.ts');
  await runBrowserBench({ adapter: args.adapter === 'core' ? 'core' : 'compat', out: args.out!, maxSeconds: Number(args['max-seconds']), quick: args.quick!, tfjs: !args['no-tfjs'] });
  process.exit(0);
}

const gpu = await openDawn({ backend: args.backend as DawnBackend });
const engine = new Engine(gpu);
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
