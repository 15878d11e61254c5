// The engine's matmul kernels against the float64 reference in Node (Dawn), on both CPU adapters.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDawn, type DawnGpu } from '../../server/gpu/dawn.ts';
import { checkMatmul } from '../../src/core/gpu/checks.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { choosePlan, matmul, type MatmulConfig } from '../../src/core/gpu/kernels/matmul.ts';
import { DEFAULT_GPU_TUNING, findTuning, tuningKey, withTuning } from '../../src/core/gpu/tuning.ts';
import { Rng } from '../../src/core/util/random.ts';

let gpu: DawnGpu;
let engine: Engine;
before(async () => {
  gpu = await openDawn({ backend: 'opengles' });
  engine = new Engine(gpu);
});
after(() => engine.destroy());

// The CPU default, the GPU default (double-buffered 128×128, here with the CPU's rolled inner loop and once
// unrolled as GPUs compile it), single-buffered and odd tile shapes, and split-K with a short last slice.
const CASES: { config?: MatmulConfig; splits?: number; unroll?: boolean }[] = [
  {},
  { config: { kind: 'reg', wgX: 16, wgY: 4 } },
  { config: { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, db: true } },
  { config: { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, db: true }, unroll: true },
  { config: { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 } },
  { config: { kind: 'tiled', BM: 32, BN: 64, BK: 8, TM: 4, TN: 8 } },
  { config: { kind: 'tiled', BM: 32, BN: 32, BK: 4, TM: 4, TN: 4, db: true }, splits: 3 },
];

for (const c of CASES) {
  test(`matmul ${c.config ? JSON.stringify(c) : 'default'} matches the float64 reference (compat adapter)`, async () => {
    const results = await checkMatmul(engine, c.config, 1, c.splits, c.unroll);
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed, []);
    assert.ok(results.length >= 90);
  });
}

test('planner: big outputs take the big tile, few tiles with long K split K, small outputs take small tiles', () => {
  const t = DEFAULT_GPU_TUNING;
  assert.deepEqual(choosePlan(t, 4096, 4096, 4096, 1), { config: t.kernels[0]!.config, splits: 1 });
  const dW = choosePlan(t, 512, 1536, 19712, 1);
  assert.equal(dW.config, t.kernels[0]!.config);
  assert.ok(dW.splits > 1 && dW.splits * 48 >= t.targetWorkgroups, JSON.stringify(dW));
  // Many batched tiles fill the device already: no split.
  assert.equal(choosePlan(t, 77, 77, 64, 2048).splits, 1);
  const logits = choosePlan(t, 256, 256, 512, 1);
  assert.ok(logits.config.kind === 'tiled' && logits.config.BM < 128, JSON.stringify(logits));
});

test('split-K is deterministic and close to the unsplit product', async () => {
  const rng = new Rng(8);
  const [M, N, K] = [40, 36, 300];
  const a = engine.tensor(Float32Array.from({ length: M * K }, () => rng.normal()), [M, K]);
  const b = engine.tensor(Float32Array.from({ length: K * N }, () => rng.normal()), [K, N]);
  const config: MatmulConfig = { kind: 'tiled', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, db: true };
  const bits = async (splits: number) => new Uint32Array((await engine.readF32(matmul(engine, a, b, M, N, K, { config, splits }))).buffer);
  const s5 = await bits(5);
  assert.deepEqual(await bits(5), s5);
  const one = new Float32Array((await bits(1)).buffer);
  const five = new Float32Array(s5.buffer);
  for (let i = 0; i < one.length; i++) assert.ok(Math.abs(one[i]! - five[i]!) < 1e-3, `${i}: ${one[i]} vs ${five[i]}`);
});

test('tuning file: keyed by adapter, validated, other devices kept', () => {
  const info = engine.info;
  const file = withTuning(undefined, info, 'this device', DEFAULT_GPU_TUNING, { measuredAt: '2026-01-01T00:00:00Z' });
  assert.deepEqual(findTuning(JSON.parse(JSON.stringify(file)), info), DEFAULT_GPU_TUNING);
  const other = { ...info, device: 'another card' };
  const both = withTuning(file, other, 'another', { ...DEFAULT_GPU_TUNING, targetWorkgroups: 99 });
  assert.equal(findTuning(both, info)?.targetWorkgroups, DEFAULT_GPU_TUNING.targetWorkgroups);
  assert.equal(findTuning(both, other)?.targetWorkgroups, 99);
  assert.equal(tuningKey(info).split('|').length, 5);
  assert.equal(findTuning({ version: 1, devices: { [tuningKey(info)]: { tuning: { kernels: [] } } } }, info), undefined);
  assert.equal(findTuning('garbage', info), undefined);
  // a tuning measured on one model's training shapes serves that model only; the general one serves every model
  const fitted = JSON.parse(JSON.stringify(withTuning(undefined, info, 'this device', { ...DEFAULT_GPU_TUNING, targetWorkgroups: 77 }, { shapes: 'ViT-B-32' })));
  assert.equal(findTuning(fitted, info, 'ViT-B-32')?.targetWorkgroups, 77);
  assert.equal(findTuning(fitted, info, 'wb-small'), undefined);
  assert.equal(findTuning(fitted, info), undefined);
  assert.equal(findTuning(file, info, 'wb-small'), DEFAULT_GPU_TUNING);
});

test('same seed, same device: bit-identical results', async () => {
  const rng = new Rng(7);
  const a = Float32Array.from({ length: 70 * 90 }, () => rng.normal());
  const b = Float32Array.from({ length: 90 * 50 }, () => rng.normal());
  const run = async () => {
    const c = matmul(engine, engine.tensor(a, [70, 90]), engine.tensor(b, [90, 50]), 70, 50, 90);
    return new Uint32Array((await engine.readF32(c)).buffer);
  };
  assert.deepEqual(await run(), await run());
});

test('the SwiftShader core adapter (subgroups) gives the same answers', async () => {
  const core = await openDawn({ backend: 'swiftshader' });
  const coreEngine = new Engine(core);
  try {
    assert.equal(core.info.featureLevel, 'core');
    assert.ok(core.info.subgroups);
    const results = await checkMatmul(coreEngine, undefined, 3);
    assert.deepEqual(results.filter((r) => !r.ok), []);
  } finally {
    coreEngine.destroy();
  }
});

test('a bad backend name and a lost device are reported', async () => {
  await assert.rejects(openDawn({ backend: 'metal' as never }), /unknown GPU backend 'metal'/);
  const lost: string[] = [];
  const g = await openDawn({ backend: 'opengles', onLost: (info) => lost.push(info.reason) });
  const e = new Engine(g);
  // destroy() is ours, so onLost stays quiet, but the engine refuses further work with the reason.
  g.device.destroy();
  await g.lost;
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(lost, []);
  assert.throws(() => e.tensor([1, 2, 3]), /GPU device lost/);
});
