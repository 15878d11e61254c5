// The row kernels in every form (one thread per row; one workgroup per row with a workgroup-memory tree; with
// subgroup butterflies) against the float64 reference, on both local adapters: Dawn's GL ES compatibility
// adapter (no subgroups) and the SwiftShader core adapter (subgroups of 4). Each form must also be bit-identical
// from run to run, and a small transformer trained with the GPU forms must follow the float64 loss curve.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuBackend, RefBackend } from '../../src/core/gpu/backend.ts';
import { checkOps } from '../../src/core/gpu/checks.ts';
import { Engine, type Tensor } from '../../src/core/gpu/engine.ts';
import * as ops from '../../src/core/gpu/kernels/ops.ts';
import { trainTinyLm } from '../../src/core/gpu/transformer.ts';
import { Rng } from '../../src/core/util/random.ts';
import { cpuEngines } from '../helpers/engines.ts';

// The toy model of gpu-train.test.ts (importing that file would register its 200-step test here too).
const TOY = { vocab: 10, seq: 8, width: 32, heads: 4, layers: 2, batch: 16, seed: 3 };
const TOY_OPTIMIZER = { lr: 3e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1, maxNorm: 1 };
const TOY_TOLERANCE = 0.01;

const engines = cpuEngines();

test('forms on offer: CPU adapters default to one thread per row; subgroups only where the device has them', () => {
  assert.deepEqual(ops.rowKernelModes(engines.gl), ['thread', 'workgroup']);
  assert.deepEqual(ops.rowKernelModes(engines.swiftshader), ['thread', 'workgroup', 'subgroup']);
  assert.equal(ops.rowKernelMode(engines.gl), 'thread');
  assert.equal(ops.rowKernelMode(engines.swiftshader), 'thread');
  assert.throws(() => ops.setRowKernelMode(engines.gl, 'subgroup'), /not available/);
});

for (const [name, get] of [['GL compatibility', () => engines.gl], ['SwiftShader core', () => engines.swiftshader]] as const) {
  test(`every row-kernel form matches the reference (${name} adapter)`, async () => {
    const engine = get();
    for (const mode of ops.rowKernelModes(engine)) {
      // the full set of CLIP attention shapes runs on real GPUs (bench/gpu-check.ts); here one of each kind
      const results = await checkOps(engine, 21, mode, { attentionShapes: 'quick' });
      assert.deepEqual(results.filter((r) => !r.ok), [], mode);
      assert.ok(results.length > 100);
      assert.ok(results.every((r) => r.name.endsWith(`[${mode}]`)));
    }
    assert.equal(ops.rowKernelMode(engine), 'thread', 'checkOps restores the engine default');
  });

  test(`every row-kernel form is bit-identical from run to run (${name} adapter)`, async () => {
    const engine = get();
    for (const mode of ops.rowKernelModes(engine)) {
      ops.setRowKernelMode(engine, mode);
      try {
        const first = await rowOutputs(engine);
        const second = await rowOutputs(engine);
        assert.deepEqual(second, first, mode);
      } finally {
        ops.setRowKernelMode(engine, undefined);
      }
    }
  });
}

test('a transformer trained with workgroup-per-row kernels follows the float64 loss curve', async () => {
  ops.setRowKernelMode(engines.gl, 'workgroup');
  try {
    const steps = 40;
    const gpu = await trainTinyLm(new GpuBackend(engines.gl), TOY, steps, TOY_OPTIMIZER);
    const ref = await trainTinyLm(new RefBackend(), TOY, steps, TOY_OPTIMIZER);
    const worst = Math.max(...gpu.map((l, i) => Math.abs(l - ref[i]!)));
    assert.ok(worst < TOY_TOLERANCE, `loss curves differ by up to ${worst}`);
    assert.ok(gpu[steps - 1]! < gpu[0]! - 0.3, `no learning: ${gpu[0]} → ${gpu[steps - 1]}`);
  } finally {
    ops.setRowKernelMode(engines.gl, undefined);
  }
});

/** Bits of every row kernel's outputs on fixed random inputs (sizes beyond one workgroup's threads). */
async function rowOutputs(engine: Engine): Promise<number[]> {
  const rng = new Rng(9);
  const rand = (n: number) => engine.tensor(Float32Array.from({ length: n }, () => rng.normal()));
  const bits: number[] = [];
  const take = async (t: Tensor) => bits.push(...new Uint32Array((await engine.readF32(t)).buffer));
  engine.beginScope();
  try {
    const [rows, C] = [37, 300];
    const x = rand(rows * C);
    const g = rand(C);
    const b = rand(C);
    const ln = ops.layernorm(engine, x, g, b, rows, C);
    const lb = ops.layernormBackward(engine, rand(rows * C), x, g, ln.stats, rows, C);
    for (const t of [ln.y, ln.stats, lb.dx, lb.dgamma, lb.dbeta]) await take(t);
    await take(ops.sumRows(engine, rand(900 * 41), 900, 41));
    const s = { B: 2, T: 77, H: 2, D: 12, causal: true };
    const qkv = rand(s.B * s.T * 3 * s.H * s.D);
    const att = ops.attention(engine, qkv, s);
    await take(att.out);
    await take(ops.attentionBackward(engine, rand(s.B * s.T * s.H * s.D), qkv, att.probs, s));
    const l2 = ops.l2normalize(engine, x, rows, C);
    await take(l2.y);
    await take(ops.l2normalizeBackward(engine, rand(rows * C), l2.y, l2.norms, rows, C));
    const clip = ops.clipLoss(engine, rand(300 * 300), 300);
    await take(clip.loss);
    await take(clip.dlogits);
    const ce = ops.crossEntropy(engine, rand(5 * 1031), engine.tensor([0, 5, 1030, 77, 3], [5], 'u32'), 5, 1031);
    await take(ce.loss);
    await take(ce.dlogits);
  } finally {
    engine.endScope();
  }
  return bits;
}
