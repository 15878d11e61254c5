// The training loop in a web worker of headless Chromium (compat adapter: Dawn GL ES over llvmpipe), reading a
// small embedded pool over HTTP from the workbench's own server (/api/pool + /pool/, as `dcw serve` serves it),
// against the same run in Node (Dawn GL ES, sharp decoding): the same batches, so the same losses up to the
// differences of the two JPEG decoders and GPU stacks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { build } from 'esbuild';
import { openDawn } from '../../server/gpu/dawn.ts';
import { startAppServer } from '../../server/http/app-server.ts';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import { FileShardStore } from '../../server/train/shard-store.ts';
import { GpuBackend } from '../../src/core/gpu/backend.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import { trainClip } from '../../src/core/train/loop.ts';
import { SCALES, type ScaleConfig } from '../../src/core/train/scales.ts';
import type { TrainReply, TrainRequest } from '../../workers/train.worker.ts';
import { openBrowser } from '../helpers/browser.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';

const ROOT = join(import.meta.dirname, '../..');
// cpu-tiny's model and optimizer, batch 64: 4 steps
const SCALE: ScaleConfig = { ...SCALES['cpu-tiny'], batchSize: 64, trainNumSamples: 640, numCheckpoints: 2 };
const STEPS = 4;
/** Loss difference allowed between Chromium and Node: different JPEG decoders (±1 levels) and GPU stacks. */
const TOLERANCE = 2e-3;
let dir: string;
let server: Server;
let origin: string;

before(async () => {
  if (BPE_SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'dcw-train-browser-'));
  const pool = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.equal(pool.status, 0, pool.stderr);
  // the worker and comlink, bundled as `vite build` would, served by the app server beside the pool
  const app = join(dir, 'app');
  mkdirSync(app);
  await build({ entryPoints: { 'train.worker': join(ROOT, 'workers/train.worker.ts') }, bundle: true, format: 'esm', outdir: app, logLevel: 'error', target: 'es2022' });
  await build({ stdin: { contents: "import * as Comlink from 'comlink'; globalThis.Comlink = Comlink;", resolveDir: ROOT }, bundle: true, format: 'esm', outfile: join(app, 'comlink.js'), logLevel: 'error' });
  writeFileSync(join(app, 'index.html'), '<!doctype html><meta charset="utf-8"><title>train</title><script type="module" src="/comlink.js"></script>');
  server = await startAppServer({ appDir: app, poolDir: join(dir, 'pool'), host: '127.0.0.1', port: 0 });
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  origin = `http://127.0.0.1:${address.port}`;
});

after(async () => {
  if (server) await new Promise((r) => server.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('cpu-tiny trains in a web worker over HTTP shards: finite, decreasing, the Node run\'s losses', { skip: BPE_SKIP }, async (t) => {
  const bpe = readFileSync(BPE_PATH);
  const browser = await openBrowser({ adapter: 'compat', baseUrl: origin, path: '/index.html' });
  let reply: TrainReply;
  try {
    await browser.page.waitForFunction(() => 'Comlink' in globalThis);
    reply = await browser.page.evaluate(async ({ bpe64, scale, steps }) => {
      const Comlink = (globalThis as unknown as { Comlink: typeof import('comlink') }).Comlink;
      const bpe = Uint8Array.from(atob(bpe64), (c) => c.charCodeAt(0));
      const worker = Comlink.wrap<import('../../workers/train.worker.ts').TrainWorkerApi>(new Worker('/train.worker.js', { type: 'module' }));
      const req: TrainRequest = { scale, seed: 3, data: { origin: location.origin }, bpe, logEvery: 1, stopAfterSteps: steps, featureLevel: 'compatibility' };
      const out = await worker.train(req);
      // bytes do not survive page.evaluate's JSON: keep their sizes
      return { ...out, latest: undefined, weightsBytes: out.latest?.weights.length ?? 0 } as TrainReply & { weightsBytes: number };
    }, { bpe64: bpe.toString('base64'), scale: SCALE, steps: STEPS });
  } finally {
    await browser.close();
  }
  const browserLosses = reply.losses.map((l) => l.loss);
  assert.equal(browserLosses.length, STEPS);
  assert.ok(browserLosses.every((l) => Number.isFinite(l)), `losses ${browserLosses}`);
  assert.ok(browserLosses.at(-1)! < browserLosses[0]!, `loss does not decrease: ${browserLosses}`);
  assert.equal(reply.stopped, true);
  assert.ok((reply as unknown as { weightsBytes: number }).weightsBytes > 1_000_000);

  // the same run in Node
  const engine = new Engine(await openDawn({ backend: 'opengles' }));
  try {
    const node = await trainClip({
      backend: new GpuBackend(engine), scale: SCALE, seed: 3, store: new FileShardStore(join(dir, 'pool/shards')), codec: new SharpImageCodec(),
      tokenizer: ClipTokenizer.fromBytes(new Uint8Array(bpe), BPE_PATH), logEvery: 1, stopAfterSteps: STEPS,
    });
    const nodeLosses = node.state.losses.map((l) => l.loss);
    assert.deepEqual(reply.losses.map((l) => [l.step, l.lr]), node.state.losses.map((l) => [l.step, l.lr]));
    assert.deepEqual(reply.state.loader, node.state.loader);
    t.diagnostic(`Chromium ${browserLosses.map((l) => l.toFixed(6)).join(' ')}; Node ${nodeLosses.map((l) => l.toFixed(6)).join(' ')}; largest difference ${Math.max(...nodeLosses.map((l, i) => Math.abs(l - browserLosses[i]!))).toExponential(2)}`);
    nodeLosses.forEach((l, i) => assert.ok(Math.abs(l - browserLosses[i]!) < TOLERANCE, `step ${i}: Chromium ${browserLosses[i]} vs Node ${l}`));
  } finally {
    engine.destroy();
  }
});
