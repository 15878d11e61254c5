// The fused paths of a training step (issue #5): matmul epilogues (bias + GELU, residual accumulate, GELU
// backward) for every kernel family on the compat adapter, a residual block with and without fusion (float64:
// the same numbers; GPU: within f32 rounding of each other and of float64), uint8 pixel upload (bit-identical to
// host normalisation), and submitting in chunks while recording.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { GpuBackend, RefBackend, type Backend, type BackendTensor } from '../../src/core/gpu/backend.ts';
import { checkMatmulEpilogues } from '../../src/core/gpu/checks.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import type { MatmulConfig } from '../../src/core/gpu/kernels/matmul.ts';
import { Param, Tape, Var } from '../../src/core/gpu/nn.ts';
import { blockParamList, blockParams, transformerBlock } from '../../src/core/gpu/transformer.ts';
import { normalizeChw, normalizeInto, PIXEL_TABLE, type Pixels } from '../../src/core/train/augment.ts';
import { Rng } from '../../src/core/util/random.ts';

let engine: Engine;
before(async () => {
  engine = new Engine(await openDawn({ backend: 'opengles' }));
});
after(() => engine.destroy());

const CASES: { config?: MatmulConfig; splits?: number; unroll?: boolean }[] = [
  {},
  { config: { kind: 'reg', wgX: 16, wgY: 4 } },
  { config: { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, db: true }, unroll: true },
  { config: { kind: 'tiled', BM: 32, BN: 64, BK: 8, TM: 4, TN: 8 } },
  { config: { kind: 'tiled', BM: 32, BN: 32, BK: 4, TM: 4, TN: 4, db: true }, splits: 3 },
];
for (const c of CASES) {
  test(`fused matmul epilogues ${c.config ? JSON.stringify(c) : '(default kernel)'} match the float64 reference`, async () => {
    const results = await checkMatmulEpilogues(engine, c.config, 2, c.splits, c.unroll);
    assert.deepEqual(results.filter((r) => !r.ok), []);
    assert.equal(results.length, 4 * 5);
  });
}

/** Loss-like scalar of one block step: Σ out·w, and the gradients of x and of every parameter. */
async function blockGradients<T extends BackendTensor>(be: Backend<T>, fuse: boolean) {
  const rng = new Rng(4);
  const [B, Tn, C] = [2, 5, 16];
  const params = blockParams(be, rng, C, 'b');
  // non-zero biases and gains, so every fused term matters
  for (const p of blockParamList(params)) if (p.value.shape.length === 1) p.value.dispose();
  for (const p of blockParamList(params)) {
    if (p.value.shape.length === 1) (p as { value: T }).value = be.tensor(Float32Array.from({ length: p.value.size }, () => rng.normal() * 0.5 + (p.name.includes('ln') && p.name.endsWith('weight') ? 1 : 0)), p.value.shape);
  }
  const xData = Float32Array.from({ length: B * Tn * C }, () => rng.normal());
  const dOut = Float32Array.from({ length: B * Tn * C }, () => rng.normal());
  be.beginScope();
  const tape = new Tape(be, { fuse });
  const x = new Var(be.tensor(xData, [B * Tn, C]));
  // x feeds the block twice (LayerNorm and residual) and once more outside: gradients must add up
  const y = transformerBlock(tape, x, params, { batch: B, seq: Tn, width: C, heads: 2, causal: true });
  const z = tape.add(y, x);
  tape.backward(z, be.tensor(dOut, [B * Tn, C]));
  const out = { y: await be.read(y.value), dx: await be.read(x.grad!), grads: [] as Float32Array[] | Float64Array[] };
  for (const p of blockParamList(params) as Param<T>[]) (out.grads as (Float32Array | Float64Array)[]).push(await be.read(p.grad!));
  be.endScope();
  return out;
}

test('a residual block: fused and unfused ops give the same values and gradients (float64 and WebGPU)', async () => {
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
    assert.equal(a.length, b.length, what);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1e-4 + 1e-4 * Math.abs(b[i]!)));
    assert.ok(worst <= tol, `${what}: worst error ${worst} of the bound`);
  };
  const ref = new RefBackend();
  const refFused = await blockGradients(ref, true);
  const refPlain = await blockGradients(ref, false);
  close(refFused.y, refPlain.y, 1e-6, 'float64 forward');
  close(refFused.dx, refPlain.dx, 1e-6, 'float64 dx');
  refFused.grads.forEach((g, i) => close(g, refPlain.grads[i]!, 1e-6, `float64 grad ${i}`));
  const gpu = new GpuBackend(engine);
  const gpuFused = await blockGradients(gpu, true);
  const gpuPlain = await blockGradients(gpu, false);
  for (const [name, got] of [['fused', gpuFused], ['unfused', gpuPlain]] as const) {
    close(got.y, refFused.y, 1, `${name} forward`);
    close(got.dx, refFused.dx, 1, `${name} dx`);
    got.grads.forEach((g, i) => close(g, refFused.grads[i]!, 1, `${name} grad ${i}`));
  }
});

test('uint8 pixels uploaded and normalised on the GPU are bit-identical to normalising on the host', async () => {
  const rng = new Rng(9);
  const [B, S] = [3, 7];
  const plane = S * S;
  const bytes = Uint8Array.from({ length: B * 3 * plane }, () => rng.int(256));
  bytes[0] = 0;
  bytes[1] = 255;
  // the host path: per image, HWC pixels through normalizeInto
  const host = new Float32Array(bytes.length);
  for (let b = 0; b < B; b++) {
    const hwc = new Uint8Array(plane * 3);
    for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) hwc[i * 3 + c] = bytes[b * 3 * plane + c * plane + i]!;
    const p: Pixels = { width: S, height: S, channels: 3, data: hwc };
    normalizeInto(p, host, b * 3 * plane);
  }
  assert.deepEqual(normalizeChw(bytes, plane), host);
  // torchvision's arithmetic in float32: (v/255 − mean)/std
  assert.equal(PIXEL_TABLE[255], Math.fround(Math.fround(Math.fround(255 / 255) - Math.fround(0.48145466)) / Math.fround(0.26862954)));
  const be = new GpuBackend(engine);
  be.beginScope();
  const t = be.pixels(bytes, [B, 3, S, S], PIXEL_TABLE);
  const got = await be.read(t);
  be.endScope();
  assert.deepEqual(new Uint32Array(got.buffer, got.byteOffset, got.length), new Uint32Array(host.buffer));
  const ref = await new RefBackend().read(new RefBackend().pixels(bytes, [B, 3, S, S], PIXEL_TABLE));
  assert.deepEqual(Float32Array.from(ref), host);
});

test('a step recorded in chunks (submit every N dispatches) equals one submission, bit for bit', async () => {
  const run = async (every: number) => {
    const before = engine.maxDispatchesPerSubmit;
    engine.maxDispatchesPerSubmit = every;
    const s0 = engine.stats.submits;
    try {
      const out = await blockGradients(new GpuBackend(engine), true);
      return { out, submits: engine.stats.submits - s0 };
    } finally {
      engine.maxDispatchesPerSubmit = before;
    }
  };
  const one = await run(100000);
  const chunked = await run(3);
  assert.ok(chunked.submits > one.submits, `${chunked.submits} vs ${one.submits} submits`);
  assert.deepEqual(chunked.out.dx, one.out.dx);
  assert.deepEqual(chunked.out.grads, one.out.grads);
  await engine.settled();
});
