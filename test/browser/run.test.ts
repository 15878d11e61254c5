// The whole `dcw run` loop (filter → reshard → train → evaluate) for cpu-tiny in a web worker of headless Chromium
// (compat adapter: Dawn GL ES over llvmpipe), the pool and the embedded suite read over HTTP from the workbench's
// server (/api/pool, /pool/, /eval/), against the Node `dcw run` of the same scale, filter and seed on the same
// pool, run at the same time. Filter and reshard are exact (same subset.npy bytes, same samples). Training and
// evaluation may differ by the two JPEG decoders and GPU stacks, hence the tolerances below; on the CI machine
// (llvmpipe on both sides) the two runs agree exactly: the same losses and a byte-identical eval_results.jsonl.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { build } from 'esbuild';
import { startAppServer } from '../../server/http/app-server.ts';
import { parseResults } from '../../src/core/eval/results.ts';
import { parseTasklist } from '../../src/core/eval/tasklist.ts';
import { parseTrainState } from '../../src/core/train/checkpoint.ts';
import { runPlan, SCALES } from '../../src/core/train/scales.ts';
import type { RunReply, RunRequest } from '../../workers/run.worker.ts';
import { openBrowser } from '../helpers/browser.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';

const ROOT = join(import.meta.dirname, '../..');
const SCALE = SCALES['cpu-tiny'];
const SEED = 0;
/** Logged losses: Chromium vs Node after up to 40 steps (decoders differ by ±1 levels; GPU stacks by rounding). */
const LOSS_TOLERANCE = 1e-2;
/** Metrics (accuracies, recalls, means of them): a few borderline predictions may flip between the two runs. */
const METRIC_TOLERANCE = 0.02;
let dir: string;
let server: Server;
let origin: string;
let nodeRun: Promise<{ status: number | null; stderr: string }>;

before(async () => {
  if (BPE_SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'dcw-run-browser-'));
  const pool = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.equal(pool.status, 0, pool.stderr);
  // the Node run, in the background while the browser runs
  nodeRun = new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/dcw.js'), 'run', '--scale', 'cpu-tiny', '--filter', 'no_filter', '--seed', String(SEED),
      '--pool', join(dir, 'pool'), '--eval', join(dir, 'eval'), '--output_dir', join(dir, 'runs'), '--bpe', BPE_PATH, '--gpu', 'opengles'],
    { cwd: ROOT, env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr }));
  });
  // the worker and comlink, bundled as `vite build` would, served by the app server beside the pool and the suite
  const app = join(dir, 'app');
  mkdirSync(app);
  await build({ entryPoints: { 'run.worker': join(ROOT, 'workers/run.worker.ts') }, bundle: true, format: 'esm', outdir: app, logLevel: 'error', target: 'es2022' });
  await build({ stdin: { contents: "import * as Comlink from 'comlink'; globalThis.Comlink = Comlink;", resolveDir: ROOT }, bundle: true, format: 'esm', outfile: join(app, 'comlink.js'), logLevel: 'error' });
  writeFileSync(join(app, 'index.html'), '<!doctype html><meta charset="utf-8"><title>run</title><script type="module" src="/comlink.js"></script>');
  server = await startAppServer({ appDir: app, poolDir: join(dir, 'pool'), evalDir: join(dir, 'eval'), host: '127.0.0.1', port: 0 });
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  origin = `http://127.0.0.1:${address.port}`;
});

after(async () => {
  await nodeRun?.catch(() => {});
  if (server) await new Promise((r) => server.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('dcw run for cpu-tiny in a web worker over HTTP: subset, 40 steps, one result per task, the Node run\'s metrics', { skip: BPE_SKIP }, async (t) => {
  const bpe = readFileSync(BPE_PATH);
  const browser = await openBrowser({ adapter: 'compat', baseUrl: origin, path: '/index.html' });
  let reply: RunReply & { subsetBytes: number[] };
  try {
    await browser.page.waitForFunction(() => 'Comlink' in globalThis);
    reply = await browser.page.evaluate(async ({ bpe64, seed }) => {
      const Comlink = (globalThis as unknown as { Comlink: typeof import('comlink') }).Comlink;
      const bpe = Uint8Array.from(atob(bpe64), (c) => c.charCodeAt(0));
      const worker = Comlink.wrap<import('../../workers/run.worker.ts').RunWorkerApi>(new Worker('/run.worker.js', { type: 'module' }));
      const req: RunRequest = { scale: 'cpu-tiny', seed, origin: location.origin, bpe, featureLevel: 'compatibility' };
      const out = await worker.run(req);
      // bytes do not survive page.evaluate's JSON: send them as numbers
      return { ...out, subset: new Uint8Array(), subsetBytes: [...out.subset] };
    }, { bpe64: bpe.toString('base64'), seed: SEED });
  } finally {
    await browser.close();
  }
  t.diagnostic(`Chromium (${reply.adapter}) seconds: ${JSON.stringify(reply.seconds)}`);

  // 1–2. no_filter keeps every sample of the pool; each is resharded once
  const poolSamples = readdirSync(join(dir, 'pool/shards')).filter((n) => n.endsWith('_stats.json'))
    .reduce((n, f) => n + (JSON.parse(readFileSync(join(dir, 'pool/shards', f), 'utf8')) as { successes: number }).successes, 0);
  assert.ok(poolSamples > 100, `pool of ${poolSamples} samples`);
  assert.equal(reply.subsetSize, poolSamples);
  assert.equal(reply.trainSamples, poolSamples);
  assert.deepEqual(reply.reshardErrors, []);
  // 3. the whole recipe: 40 steps, 5,120 samples, finite losses going down
  const totalSteps = runPlan(SCALE).totalSteps;
  assert.equal(reply.state.step, totalSteps);
  assert.equal(reply.state.samplesSeen, SCALE.trainNumSamples);
  const losses = reply.state.losses.map((l) => l.loss);
  assert.ok(losses.length >= 5 && losses.every((l) => Number.isFinite(l)), `losses ${losses}`);
  assert.ok(losses.at(-1)! < losses[0]! - 0.3, `loss does not decrease: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  // 4. evaluate.py's file: one line per task of the suite, in order, main_metric last
  const tasks = parseTasklist(readFileSync(join(dir, 'eval/tasklist.yml'), 'utf8'), 'tasklist.yml');
  const results = parseResults(reply.resultsText, 'browser eval_results.jsonl');
  assert.deepEqual(results.map((r) => r.dataset), tasks.map((task) => task.name));
  for (const r of results) assert.equal([...r.metrics.keys()].at(-1), 'main_metric');

  // the Node `dcw run` on the same pool
  const node = await nodeRun;
  assert.equal(node.status, 0, node.stderr);
  const runDir = join(dir, 'runs/cpu-tiny-no_filter-seed0');
  assert.deepEqual(reply.subsetBytes, [...readFileSync(join(runDir, 'subset.npy'))], 'the subset.npy bytes');
  const nodeState = parseTrainState(readFileSync(join(runDir, 'cpu-tiny_scale/checkpoints/epoch_latest.json'), 'utf8'), 'epoch_latest.json');
  assert.deepEqual(reply.state.losses.map((l) => [l.step, l.lr]), nodeState.losses.map((l) => [l.step, l.lr]));
  assert.deepEqual(reply.state.loader, nodeState.loader);
  const lossDiff = Math.max(...nodeState.losses.map((l, i) => Math.abs(l.loss - losses[i]!)));
  const nodeText = readFileSync(join(runDir, 'cpu-tiny_scale/eval_results.jsonl'), 'utf8');
  const nodeResults = parseResults(nodeText, 'node eval_results.jsonl');
  assert.deepEqual(results.map((r) => [r.key, r.dataset, [...r.metrics.keys()]]), nodeResults.map((r) => [r.key, r.dataset, [...r.metrics.keys()]]));
  let metricDiff = 0;
  const differing: string[] = [];
  for (const [i, r] of results.entries()) {
    for (const [name, value] of r.metrics) {
      const other = nodeResults[i]!.metrics.get(name);
      if (typeof value !== 'number' || typeof other !== 'number') {
        assert.deepEqual(value, other, `${r.dataset} ${name}`);
        continue;
      }
      const d = Math.abs(value - other);
      metricDiff = Math.max(metricDiff, d);
      if (d > 0) differing.push(`${r.dataset}/${name} ${value} vs ${other}`);
      assert.ok(d <= METRIC_TOLERANCE, `${r.dataset} ${name}: Chromium ${value} vs Node ${other}`);
    }
  }
  t.diagnostic(`largest loss difference ${lossDiff.toExponential(2)}; largest metric difference ${metricDiff}; ${reply.resultsText === nodeText ? 'results files identical' : `differing: ${differing.join('; ')}`}`);
  assert.ok(lossDiff < LOSS_TOLERANCE, `losses: Chromium ${losses} vs Node ${nodeState.losses.map((l) => l.loss)}`);
});
