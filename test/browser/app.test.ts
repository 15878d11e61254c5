// The real built app, served by the real `dcw serve`, in Debian's headless Chromium with WebGPU on the CPU.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { REPO, startServe } from '../helpers/cli.ts';

let server: Awaited<ReturnType<typeof startServe>>;
let browser: BrowserSession;
const emptyPool = mkdtempSync(join(tmpdir(), 'dcw-no-pool-'));

before(async () => {
  server = await startServe(['--rebuild', '--pool', emptyPool]);
  browser = await openBrowser({ baseUrl: server.url, path: '/' });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(emptyPool, { recursive: true, force: true });
});

test('the page loads, finds a WebGPU adapter and its compute self-check passes', async () => {
  const { page } = browser;
  await page.getByRole('heading', { name: 'DataComp Workbench' }).waitFor();
  const status = page.getByTestId('gpu-status');
  await page.waitForFunction(() => !document.querySelector('[data-testid="gpu-status"]')?.textContent?.includes('Looking'), null, { timeout: 60_000 });
  assert.equal((await status.textContent())?.trim(), 'WebGPU ready');
  const adapter = await page.getByTestId('gpu-adapter').textContent();
  assert.match(adapter ?? '', /swiftshader|llvmpipe|mesa|google/i, 'a CPU adapter is expected on this machine');
  assert.match((await page.getByTestId('gpu-selfcheck').textContent()) ?? '', /1000 values computed on the GPU match/);
  mkdirSync(join(REPO, 'test-results'), { recursive: true });
  await page.screenshot({ path: join(REPO, 'test-results/app-home.png'), fullPage: true });
});

test('without a pool the page says so and how to build one', async () => {
  const text = await browser.page.getByTestId('pool-status').textContent();
  assert.match(text ?? '', /no pool yet: build the embedded default with 'dcw pool build/);
});

test('the server sends the cross-origin isolation headers the app needs', async () => {
  assert.equal(await browser.page.evaluate(() => crossOriginIsolated), true);
});
