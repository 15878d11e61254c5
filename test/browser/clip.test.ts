// The wb-tiny CLIP (2+2 layers) forward and backward in headless Chromium's WebGPU, against the same model on
// the float64 reference here in Node (same code, same seed, same batch).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RefBackend } from '../../src/core/gpu/backend.ts';
import { ClipModel, clipBatch } from '../../src/core/model/clip.ts';
import { clipConfig } from '../../src/core/model/configs.ts';
import { Rng } from '../../src/core/util/random.ts';
import { openBrowser } from '../helpers/browser.ts';

type DeviceModule = typeof import('../../src/core/gpu/device.ts');
type EngineModule = typeof import('../../src/core/gpu/engine.ts');
type BackendModule = typeof import('../../src/core/gpu/backend.ts');
type ClipModule = typeof import('../../src/core/model/clip.ts');
type ConfigsModule = typeof import('../../src/core/model/configs.ts');

const TOKEN_TABLE = 'token_embedding.weight';

test('CLIP wb-tiny in Chromium: loss, logits and gradients match the float64 reference', async () => {
  const cfg = clipConfig('wb-tiny');
  const rng = new Rng(21);
  const B = 4;
  const ctx = cfg.text.contextLength;
  const images = Array.from({ length: B * 3 * cfg.vision.imageSize ** 2 }, () => rng.normal());
  const ids: number[] = [];
  for (let b = 0; b < B; b++) {
    const len = 3 + 7 * b;
    for (let t = 0; t < ctx; t++) ids.push(t === 0 ? 49406 : t < len ? 1 + rng.int(49400) : t === len ? 49407 : 0);
  }
  const used = [...new Set(ids)];
  const browser = await openBrowser({ adapter: 'compat' });
  try {
    const gpu = await browser.page.evaluate(async ({ images, ids, used, table }) => {
      const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
      const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
      const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
      const { GpuBackend } = (await import(root + '/src/core/gpu/backend.ts')) as BackendModule;
      const { ClipModel, clipBatch } = (await import(root + '/src/core/model/clip.ts')) as ClipModule;
      const { clipConfig } = (await import(root + '/src/core/model/configs.ts')) as ConfigsModule;
      const engine = new Engine(await requestGpu(navigator.gpu, { featureLevel: 'compatibility' }));
      const be = new GpuBackend(engine);
      const cfg = clipConfig('wb-tiny');
      const model = new ClipModel(be, cfg, { seed: 1 });
      const out = model.lossAndGradients(clipBatch(be, cfg, images, ids));
      const grads: Record<string, number[]> = {};
      for (const p of model.params) {
        const g = await be.read(p.grad!);
        // The token table's gradient is zero except on the rows of the batch's tokens: send those rows only.
        grads[p.name] = p.name === table ? used.flatMap((id) => [...g.subarray(id * cfg.text.width, (id + 1) * cfg.text.width)]) : [...g];
      }
      const result = { loss: (await be.read(out.loss.value))[0]!, logits: [...(await be.read(out.logits.value))], grads };
      engine.destroy();
      return result;
    }, { images, ids, used, table: TOKEN_TABLE });

    const ref = new RefBackend();
    const model = new ClipModel(ref, cfg, { seed: 1 });
    const out = model.lossAndGradients(clipBatch(ref, cfg, images, ids));
    const loss = (await ref.read(out.loss.value))[0]!;
    assert.ok(Math.abs(gpu.loss - loss) < 1e-5, `loss ${gpu.loss} vs ${loss}`);
    const logits = await ref.read(out.logits.value);
    logits.forEach((v, i) => assert.ok(Math.abs(v - gpu.logits[i]!) < 2e-3, `logit ${i}: ${gpu.logits[i]} vs ${v}`));
    for (const p of model.params) {
      let a = await ref.read(p.grad!);
      if (p.name === TOKEN_TABLE) a = Float64Array.from(used.flatMap((id) => [...a.subarray(id * cfg.text.width, (id + 1) * cfg.text.width)]));
      const b = gpu.grads[p.name]!;
      assert.equal(b.length, a.length, p.name);
      let scale = 0;
      let diff = 0;
      a.forEach((v, i) => {
        scale = Math.max(scale, Math.abs(v));
        diff = Math.max(diff, Math.abs(v - b[i]!));
      });
      assert.ok(scale > 0 && diff <= 1e-4 * scale, `${p.name}: gradients differ by ${diff} (largest ${scale})`);
    }
  } finally {
    await browser.close();
  }
});
