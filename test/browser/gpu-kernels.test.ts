// The same reference checks as test/unit/gpu-*.test.ts, run by the engine inside headless Chromium's WebGPU.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';

type DeviceModule = typeof import('../../src/core/gpu/device.ts');
type EngineModule = typeof import('../../src/core/gpu/engine.ts');
type ChecksModule = typeof import('../../src/core/gpu/checks.ts');

let compat: BrowserSession;
before(async () => {
  compat = await openBrowser({ adapter: 'compat' });
});
after(async () => {
  await compat?.close();
});

test('matmul kernels match the reference in Chromium (compatibility adapter)', async () => {
  const out = await compat.page.evaluate(async () => {
    const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
    const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
    const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
    const { checkMatmul } = (await import(root + '/src/core/gpu/checks.ts')) as ChecksModule;
    const engine = new Engine(await requestGpu(navigator.gpu, { featureLevel: 'compatibility' }));
    const results = [
      ...(await checkMatmul(engine)),
      ...(await checkMatmul(engine, { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 }, 2)),
    ];
    const info = engine.info;
    engine.destroy();
    return { results, info };
  });
  assert.equal(out.info.featureLevel, 'compatibility');
  assert.ok(out.info.isCpu, JSON.stringify(out.info));
  assert.deepEqual(out.results.filter((r) => !r.ok), []);
  assert.ok(out.results.length >= 180);
});

test('matmul kernels match the reference in Chromium (SwiftShader core adapter)', async () => {
  const core = await openBrowser({ adapter: 'core' });
  try {
    const out = await core.page.evaluate(async () => {
    const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
      const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
      const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
      const { checkMatmul } = (await import(root + '/src/core/gpu/checks.ts')) as ChecksModule;
      const engine = new Engine(await requestGpu(navigator.gpu));
      const results = await checkMatmul(engine);
      const info = engine.info;
      engine.destroy();
      return { results, info };
    });
    assert.equal(out.info.featureLevel, 'core');
    assert.deepEqual(out.results.filter((r) => !r.ok), []);
  } finally {
    await core.close();
  }
});

test('all other ops match the reference in Chromium (compatibility adapter)', async () => {
  const results = await compat.page.evaluate(async () => {
    const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
    const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
    const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
    const { checkOps } = (await import(root + '/src/core/gpu/checks.ts')) as ChecksModule;
    const engine = new Engine(await requestGpu(navigator.gpu, { featureLevel: 'compatibility' }));
    const out = [...(await checkOps(engine, 11)), ...(await checkOps(engine, 12))];
    engine.destroy();
    return out;
  });
  assert.deepEqual(results.filter((r) => !r.ok), []);
  assert.ok(results.length > 160);
});
