/**
 * bench:gpu in headless Chromium: the same suite (bench/gpu-suite.ts) on navigator.gpu, tfjs-webgpu beside it on
 * the same GPUDevice. Run through `node --import tsx bench/gpu.ts --browser [--adapter compat|core]`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBrowser } from '../test/helpers/browser.ts';
import { formatTable, type SuiteResult } from './gpu-suite.ts';

type DeviceModule = typeof import('../src/core/gpu/device.ts');
type EngineModule = typeof import('../src/core/gpu/engine.ts');
type SuiteModule = typeof import('./gpu-suite.ts');
type TfjsModule = typeof import('./tfjs-entry.ts');

export async function runBrowserBench(o: { adapter: 'compat' | 'core'; out: string; maxSeconds: number; quick: boolean; tfjs: boolean }): Promise<SuiteResult> {
  const browser = await openBrowser({ adapter: o.adapter });
  try {
    browser.page.on('console', (m) => console.error(`[page] ${m.text()}`));
    const version = browser.context.browser()?.version() ?? 'chromium';
    const result = await browser.page.evaluate(async (o) => {
      const root = ''; // a variable specifier: resolved by Vite in the page, not by tsc
      const { requestGpu } = (await import(root + '/src/core/gpu/device.ts')) as DeviceModule;
      const { Engine } = (await import(root + '/src/core/gpu/engine.ts')) as EngineModule;
      const { runGpuSuite } = (await import(root + '/bench/gpu-suite.ts')) as SuiteModule;
      const engine = new Engine(await requestGpu(navigator.gpu, { featureLevel: o.adapter === 'compat' ? 'compatibility' : 'core' }));
      const tfjs = o.tfjs ? (await import(root + '/bench/tfjs-entry.ts')) as TfjsModule : undefined;
      const r = await runGpuSuite({ engine, tfjs, maxSeconds: o.maxSeconds, quick: o.quick, log: (l: string) => console.log(l) });
      engine.destroy();
      return r;
    }, o);
    console.log(`\nChromium ${version} (${o.adapter} adapter)`);
    console.log(formatTable(result));
    mkdirSync(o.out, { recursive: true });
    const file = join(o.out, `gpu-browser-${o.adapter}.json`);
    writeFileSync(file, JSON.stringify({ environment: `headless chromium ${version}, ${o.adapter} adapter`, ...result }, null, 2));
    console.log(`\nwrote ${file} (${result.seconds.toFixed(0)} s)`);
    return result;
  } finally {
    await browser.close();
  }
}
