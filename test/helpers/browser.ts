/**
 * Real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) with WebGPU on the CPU,
 * and a Vite dev server over the repository, so browser tests can `import('/src/core/...')` the very
 * modules the app uses.
 *
 * Two adapters exist on a CPU-only machine (../shared/research/webgpu.md): SwiftShader ("core": subgroups,
 * 1 GiB buffers, slow) from --enable-unsafe-webgpu alone, and Dawn's OpenGL ES backend over Mesa llvmpipe
 * ("compatibility": 3–5× faster, no subgroups/f16) with --use-angle=gl-egl --use-webgpu-adapter=opengles.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createServer, type ViteDevServer } from 'vite';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const REPO = resolve(import.meta.dirname, '../..');

export type AdapterKind = 'core' | 'compat';

const BASE_ARGS = [
  '--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu',
];
const COMPAT_ARGS = ['--use-angle=gl-egl', '--use-webgpu-adapter=opengles'];

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  /** Base URL of the server the page was opened on. */
  baseUrl: string;
  close(): Promise<void>;
}

let vite: ViteDevServer | undefined;
let viteUsers = 0;

/** Starts (once per process) a Vite dev server over the repository on a free loopback port. */
export async function devServer(): Promise<string> {
  if (!vite) {
    vite = await createServer({
      root: REPO,
      configFile: join(REPO, 'vite.config.ts'),
      logLevel: 'error',
      server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false },
      clearScreen: false,
    });
    await vite.listen();
  }
  const address = vite.httpServer!.address();
  if (!address || typeof address === 'string') throw new Error('vite dev server has no TCP address');
  return `http://127.0.0.1:${address.port}`;
}

/**
 * Opens `path` (default: a blank harness page served by Vite) in a fresh Chromium profile.
 * `baseUrl` lets a test open the real built app served by `dcw serve` instead of Vite.
 */
export async function openBrowser(options: { adapter?: AdapterKind; path?: string; baseUrl?: string } = {}): Promise<BrowserSession> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium)`);
  const usesVite = !options.baseUrl;
  const baseUrl = options.baseUrl ?? (await devServer());
  if (usesVite) viteUsers++;
  const profile = mkdtempSync(join(tmpdir(), 'dcw-chromium-'));
  const args = [...BASE_ARGS, ...(options.adapter === 'compat' ? COMPAT_ARGS : [])];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // --headless=new is passed in args; Playwright's own flag would pick the old mode
    args,
    viewport: { width: 1280, height: 800 },
  });
  // tsx compiles tests with esbuild's keepNames, which wraps functions in `__name(fn, "name")`; functions sent
  // to the page by page.evaluate carry those calls with them, so the page needs the (identity) helper too.
  await context.addInitScript({ content: 'globalThis.__name = (fn) => fn;' });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  await page.goto(baseUrl + (options.path ?? '/test/browser/harness.html'));
  return {
    context,
    page,
    baseUrl,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
      if (usesVite && --viteUsers === 0 && vite) {
        await vite.close();
        vite = undefined;
      }
    },
  };
}
