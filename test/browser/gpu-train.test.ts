// The toy training run of test/unit/gpu-train.test.ts inside headless Chromium's WebGPU, against the float64
// reference run here in Node (same model code, same seeds).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RefBackend } from '../../src/core/gpu/backend.ts';
import { trainTinyLm } from '../../src/core/gpu/transformer.ts';
import { openBrowser } from '../helpers/browser.ts';

type DeviceModule = typeof import('../../src/core/gpu/device.ts');
type EngineModule = typeof import('../../src/core/gpu/engine.ts');
type BackendModule = typeof import('../../src/core/gpu/backend.ts');
type TransformerModule = typeof import('../../src/core/gpu/transformer.ts');

const TOY = { vocab: 10, seq: 8, width: 32, heads: 4, layers: 2, batch: 16, seed: 3 };
const TOY_OPTIMIZER = { lr: 3e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1, maxNorm: 1 };

test('2-layer transformer: 200 steps in Chromium follow the float64 loss curve', async () => {
  const browser = await openBrowser({ adapter: 'compat' });
  try {
    const gpu = await browser.page.evaluate(async ({ cfg, opt }) => {
      const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
      const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
      const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
      const { GpuBackend } = (await import(root + '/src/core/gpu/backend.ts')) as BackendModule;
      const { trainTinyLm } = (await import(root + '/src/core/gpu/transformer.ts')) as TransformerModule;
      const engine = new Engine(await requestGpu(navigator.gpu, { featureLevel: 'compatibility' }));
      const losses = await trainTinyLm(new GpuBackend(engine), cfg, 200, opt);
      engine.destroy();
      return losses;
    }, { cfg: TOY, opt: TOY_OPTIMIZER });
    const ref = await trainTinyLm(new RefBackend(), TOY, 200, TOY_OPTIMIZER);
    const worst = Math.max(...gpu.map((l, i) => Math.abs(l - ref[i]!)));
    assert.equal(gpu.length, 200);
    assert.ok(worst < 0.01, `loss curves differ by up to ${worst}`);
    assert.ok(gpu[199]! < 1.0);
  } finally {
    await browser.close();
  }
});
