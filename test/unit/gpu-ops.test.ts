// Every non-matmul kernel (forward and backward) against the float64 reference in Node (Dawn, compat adapter).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { checkOps } from '../../src/core/gpu/checks.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import * as ops from '../../src/core/gpu/kernels/ops.ts';
import { Rng } from '../../src/core/util/random.ts';

let engine: Engine;
before(async () => {
  engine = new Engine(await openDawn({ backend: 'opengles' }));
});
after(() => engine.destroy());

test('all ops match the reference (two seeds)', async () => {
  for (const seed of [11, 12]) {
    const results = await checkOps(engine, seed);
    assert.deepEqual(results.filter((r) => !r.ok), []);
    assert.ok(results.length > 80);
  }
});

test('attention forward and backward are bit-identical across runs', async () => {
  const rng = new Rng(5);
  const s = { B: 2, T: 11, H: 2, D: 6, causal: true };
  const qkv = Float32Array.from({ length: s.B * s.T * 3 * s.H * s.D }, () => rng.normal());
  const dout = Float32Array.from({ length: s.B * s.T * s.H * s.D }, () => rng.normal());
  const runOnce = async () => {
    const q = engine.tensor(qkv);
    const f = ops.attention(engine, q, s);
    const d = ops.attentionBackward(engine, engine.tensor(dout), q, f.probs, s);
    return [...new Uint32Array((await engine.readF32(f.out)).buffer), ...new Uint32Array((await engine.readF32(d)).buffer)];
  };
  assert.deepEqual(await runOnce(), await runOnce());
});

test('a shader error surfaces as a GpuError on the next call', async () => {
  const bad = { key: 'broken-on-purpose', code: () => '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }' };
  engine.dispatch(bad, [], [], [1]);
  await assert.rejects(engine.sync(), /WebGPU error/);
});
