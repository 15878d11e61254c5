// The engine's host side: explicit bind-group layouts read off the WGSL, bind groups cached per buffer set with
// the uniform block at a dynamic offset, uniforms spanning several chunks within one submission.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { GpuBackend } from '../../src/core/gpu/backend.ts';
import { bindingKinds, Engine } from '../../src/core/gpu/engine.ts';
import { matmul } from '../../src/core/gpu/kernels/matmul.ts';
import * as ops from '../../src/core/gpu/kernels/ops.ts';
import { adamwStep, Tape, Var } from '../../src/core/gpu/nn.ts';
import { blockParamList, blockParams, transformerBlock } from '../../src/core/gpu/transformer.ts';
import { Rng } from '../../src/core/util/random.ts';

let engine: Engine;
before(async () => {
  engine = new Engine(await openDawn({ backend: 'opengles' }));
});
after(() => engine.destroy());

test('binding kinds are read off the WGSL; anything unconventional falls back to an auto layout', () => {
  const code = `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;`;
  assert.deepEqual(bindingKinds(code), ['read', 'read_write', 'uniform']);
  assert.deepEqual(bindingKinds('@compute @workgroup_size(1) fn main() {}'), []);
  assert.equal(bindingKinds(code.replace('@binding(1)', '@binding(3)')), undefined, 'a gap in the bindings');
  assert.equal(bindingKinds(code.replace('@group(0) @binding(2)', '@group(1) @binding(0)')), undefined, 'a second group');
  assert.equal(bindingKinds(`${code}\n@group(0) @binding(3) var t: texture_2d<f32>;`), undefined, 'a texture');
});

test('many calls on the same buffers in one submission each see their own uniforms (several uniform chunks)', async () => {
  const n = 37;
  const rng = new Rng(4);
  // Small integers and eighths: every product and partial sum is exact in f32, whatever the GPU fuses.
  const x = Float32Array.from({ length: n }, () => rng.int(11) - 5);
  const acc = engine.zeros([n]);
  const xt = engine.tensor(x);
  const alphas = Array.from({ length: 5000 }, (_, k) => ((k % 7) - 2) / 8);
  const before = engine.stats.bindGroupsCreated;
  for (const a of alphas) ops.addInto(engine, acc, xt, a);
  const got = await engine.readF32(acc);
  const total = alphas.reduce((s, a) => s + a, 0);
  assert.ok(total !== 0);
  assert.deepEqual(Array.from(got), Array.from(x, (v) => v * total));
  // One bind group per uniform chunk the 5000 calls spread over, not one per call.
  assert.ok(engine.stats.bindGroupsCreated - before < 10, `${engine.stats.bindGroupsCreated - before} bind groups for 5000 calls`);
  acc.dispose();
  xt.dispose();
});

test('a repeated training step reuses its bind groups and gives the same result as a fresh engine', async () => {
  const shape = { batch: 2, seq: 9, width: 16, heads: 2, causal: true };
  const runSteps = async (e: Engine, steps: number) => {
    const be = new GpuBackend(e);
    const rng = new Rng(7);
    const params = blockParams(be, rng, shape.width, 'b');
    const rows = shape.batch * shape.seq;
    const x = e.tensor(Float32Array.from({ length: rows * shape.width }, () => rng.normal()), [rows, shape.width]);
    const created: number[] = [];
    for (let s = 1; s <= steps; s++) {
      const start = e.stats.bindGroupsCreated;
      be.beginScope();
      const tape = new Tape(be);
      const y = transformerBlock(tape, new Var(x), params, shape);
      tape.backward(y, be.copy(x));
      adamwStep(be, blockParamList(params), { lr: 1e-2, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1, maxNorm: 1 }, s);
      be.endScope();
      await e.sync();
      created.push(e.stats.bindGroupsCreated - start);
    }
    const out = await e.readF32(params.fc1W.value);
    for (const p of blockParamList(params)) {
      p.value.dispose();
      p.m.dispose();
      p.v.dispose();
    }
    x.dispose();
    return { created, out };
  };
  const a = await runSteps(engine, 4);
  assert.ok(a.created[0]! > 20);
  assert.deepEqual(a.created.slice(2), [0, 0], `bind groups per step: ${a.created.join(', ')}`);
  const fresh = new Engine(await openDawn({ backend: 'opengles' }));
  try {
    const b = await runSteps(fresh, 4);
    assert.deepEqual(Array.from(b.out), Array.from(a.out));
  } finally {
    fresh.destroy();
  }
  // matmul kernels follow the same convention (explicit layouts).
  const m = engine.tensor([1, 2, 3, 4], [2, 2]);
  assert.deepEqual(Array.from(await engine.readF32(matmul(engine, m, m, 2, 2, 2))), [7, 10, 15, 22]);
});
