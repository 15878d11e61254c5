// The same reference checks as test/unit/gpu-*.test.ts, run by the engine inside headless Chromium's WebGPU.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';

type DeviceModule = typeof import('../../src/core/gpu/device.ts');
type EngineModule = typeof import('../../src/core/gpu/engine.ts');
type ChecksModule = typeof import('../../src/core/gpu/checks.ts');
type OpsModule = typeof import('../../src/core/gpu/kernels/ops.ts');

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

test('row kernels in every form the adapter has match the reference in Chromium (compatibility and SwiftShader core adapters)', async () => {
  const runAll = (session: BrowserSession, featureLevel: 'compatibility' | 'core') => session.page.evaluate(async (featureLevel) => {
    const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
    const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
    const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
    const { checkOps } = (await import(root + '/src/core/gpu/checks.ts')) as ChecksModule;
    const ops = (await import(root + '/src/core/gpu/kernels/ops.ts')) as OpsModule;
    const engine = new Engine(await requestGpu(navigator.gpu, { featureLevel }));
    const modes = ops.rowKernelModes(engine);
    const results = [];
    for (const mode of modes.filter((m) => m !== 'thread')) results.push(...(await checkOps(engine, 13, mode, { attentionShapes: 'quick' })));
    const info = { subgroups: engine.info.subgroups, wgsl: engine.info.wgslFeatures, sizes: [engine.info.subgroupMinSize, engine.info.subgroupMaxSize] };
    engine.destroy();
    return { modes, results, info };
  }, featureLevel);
  const compatOut = await runAll(compat, 'compatibility');
  assert.deepEqual(compatOut.modes, ['thread', 'workgroup']);
  assert.deepEqual(compatOut.results.filter((r) => !r.ok), []);
  assert.ok(compatOut.results.length > 100);
  const core = await openBrowser({ adapter: 'core' });
  try {
    const coreOut = await runAll(core, 'core');
    assert.ok(coreOut.modes.includes('subgroup'), `no subgroup form on the core adapter: ${JSON.stringify(coreOut.info)}`);
    assert.deepEqual(coreOut.results.filter((r) => !r.ok), []);
    assert.ok(coreOut.results.length > 200);
  } finally {
    await core.close();
  }
});
