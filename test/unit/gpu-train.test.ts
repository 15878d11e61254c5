// A 2-layer transformer trained for 200 steps on the copy task: WebGPU (Dawn, compat adapter) vs the float64
// reference running the very same model code. Tolerance: f32 rounding drifts through 200 AdamW steps, so the
// curves must agree to 0.01 nats at every step (measured: ~0.002) and both must actually learn.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { GpuBackend, RefBackend } from '../../src/core/gpu/backend.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { trainTinyLm } from '../../src/core/gpu/transformer.ts';

export const TOY = { vocab: 10, seq: 8, width: 32, heads: 4, layers: 2, batch: 16, seed: 3 };
export const TOY_OPTIMIZER = { lr: 3e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1, maxNorm: 1 };
export const TOY_TOLERANCE = 0.01;

test('2-layer transformer: 200 steps on WebGPU follow the float64 loss curve', async () => {
  const engine = new Engine(await openDawn({ backend: 'opengles' }));
  try {
    const gpu = await trainTinyLm(new GpuBackend(engine), TOY, 200, TOY_OPTIMIZER);
    const ref = await trainTinyLm(new RefBackend(), TOY, 200, TOY_OPTIMIZER);
    const worst = Math.max(...gpu.map((l, i) => Math.abs(l - ref[i]!)));
    assert.ok(worst < TOY_TOLERANCE, `loss curves differ by up to ${worst}`);
    assert.ok(ref[0]! > 2.2 && ref[199]! < 1.0, `the reference did not learn: ${ref[0]} → ${ref[199]}`);
    // Same seed, same device: a second run is bit-identical.
    const again = await trainTinyLm(new GpuBackend(engine), TOY, 20, TOY_OPTIMIZER);
    assert.deepEqual(again, gpu.slice(0, 20));
  } finally {
    engine.destroy();
  }
});
