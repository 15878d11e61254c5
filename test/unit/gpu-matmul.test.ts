// The engine's matmul kernels against the float64 reference in Node (Dawn), on both CPU adapters.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDawn, type DawnGpu } from '../../server/gpu/dawn.ts';
import { checkMatmul } from '../../src/core/gpu/checks.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { matmul, type MatmulConfig } from '../../src/core/gpu/kernels/matmul.ts';
import { Rng } from '../../src/core/util/random.ts';

let gpu: DawnGpu;
let engine: Engine;
before(async () => {
  gpu = await openDawn({ backend: 'opengles' });
  engine = new Engine(gpu);
});
after(() => engine.destroy());

const CONFIGS: (MatmulConfig | undefined)[] = [
  undefined,
  { kind: 'reg', wgX: 16, wgY: 4 },
  { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 },
  { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 },
  { kind: 'tiled', BM: 32, BN: 64, BK: 8, TM: 4, TN: 8 },
];

for (const config of CONFIGS) {
  test(`matmul ${config ? JSON.stringify(config) : 'default'} matches the float64 reference (compat adapter)`, async () => {
    const results = await checkMatmul(engine, config);
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed, []);
    assert.ok(results.length >= 90);
  });
}

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
