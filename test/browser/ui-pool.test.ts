// The Pool and Inspect views of the real built app (dcw serve), in headless Chromium, on a small real pool:
// ingest into IndexedDB with progress while the page stays responsive, the virtualised grid, sort, filters,
// search, histogram brushing and the detail panel, a reload in the middle of an ingest from an HTTP URL,
// deleting pools, and the page without WebGPU. Screenshots of each view go to test-results/.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { readCommonPoolMetadata } from '../../src/core/formats/parquet.ts';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { REPO, startServe } from '../helpers/cli.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const SHOTS = join(REPO, 'test-results');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-ui-'));
let pool: SmallPool;
let server: Awaited<ReturnType<typeof startServe>>;
let browser: BrowserSession;
let rows: { uid: string; text: string; width: number; height: number }[];

// A second origin that serves the same pool slowly (one shard per `shardDelayMs`), with the CORS headers a
// cross-origin-isolated page needs, and logs every request: the reload test watches what is fetched again.
let slow: Server;
let slowUrl: string;
let shardDelayMs = 0;
const slowLog: string[] = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pool = await buildSmallPool(tmp, { fraction: '0.01', shardSize: 100 });
  const metadata = await readCommonPoolMetadata(readFileSync(join(pool.poolDir, 'metadata', pool.metadataFiles[0]!)), 'metadata');
  rows = [...Array(metadata.numRows).keys()].map((i) => ({
    uid: String(metadata.getChild('uid')!.get(i)),
    text: String(metadata.getChild('text')!.get(i)),
    width: Number(metadata.getChild('original_width')!.get(i)),
    height: Number(metadata.getChild('original_height')!.get(i)),
  }));
  server = await startServe(['--rebuild', '--pool', pool.poolDir, '--eval', join(tmp, 'built', 'eval')]);
  slow = createServer(async (req, res) => {
    slowLog.push(`${req.method} ${req.url}`);
    if (req.method === 'GET' && req.url!.endsWith('.tar')) await new Promise((r) => setTimeout(r, shardDelayMs));
    const upstream = await fetch(server.url + req.url!.replace(/^\/slow\//, '/pool/'), { method: req.method });
    const body = req.method === 'HEAD' ? null : Buffer.from(await upstream.arrayBuffer());
    res.writeHead(upstream.status, {
      'Content-Type': upstream.headers.get('content-type') ?? 'application/octet-stream',
      'Content-Length': upstream.headers.get('content-length') ?? String(body?.length ?? 0),
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Expose-Headers': 'Content-Length',
      'Cross-Origin-Resource-Policy': 'cross-origin',
    });
    res.end(body);
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/slow/`;
  browser = await openBrowser({ baseUrl: server.url, path: '/' });
  browser.page.on('dialog', (d) => void d.accept());
  browser.page.on('console', (m) => {
    if (m.text().startsWith('layout shift')) console.log(`# ${m.text()}`);
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  slow?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const count = async (page: Page) => Number(((await page.getByTestId('count').textContent()) ?? '').match(/^([\d,]+) of/)?.[1]!.replace(/,/g, ''));

async function waitForCount(page: Page, expected: number) {
  await page.waitForFunction((n) => {
    const t = document.querySelector('[data-testid="count"]')?.textContent ?? '';
    return Number(t.match(/^([\d,]+) of/)?.[1]?.replace(/,/g, '')) === n;
  }, expected, { timeout: 20_000 }).catch(async () => assert.fail(`count stayed at ${await count(page)}, expected ${expected}`));
}

test('the embedded pool streams into IndexedDB with progress, and the page never blocks while it does', async () => {
  const { page } = browser;
  await page.getByTestId('pool-status').filter({ hasText: 'pool at' }).waitFor();
  await page.getByTestId('no-pools').waitFor();
  // The WebGPU self-check compiles a shader on the main thread at start-up; it is not part of the ingest.
  await page.waitForFunction(() => !document.querySelector('[data-testid="gpu-status"]')?.textContent?.includes('Looking'), null, { timeout: 60_000 });
  // Long tasks and layout shifts from here on (the app's own start-up is not part of the ingest).
  await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[]; shifts: number[] };
    w.longTasks = [];
    w.shifts = [];
    new PerformanceObserver((list) => list.getEntries().forEach((e) => w.longTasks.push(e.duration))).observe({ type: 'longtask' });
    // Shifts right after an input (the click that adds the pool) are expected, as in Cumulative Layout Shift.
    new PerformanceObserver((list) => list.getEntries().forEach((e) => {
      const shift = e as unknown as { value: number; hadRecentInput: boolean; sources?: { node?: Node; previousRect: DOMRectReadOnly; currentRect: DOMRectReadOnly }[] };
      if (shift.hadRecentInput) return;
      w.shifts.push(shift.value);
      console.log(`layout shift ${shift.value}: ${(shift.sources ?? []).map((s) => `${(s.node as Element)?.outerHTML?.slice(0, 80)} ${JSON.stringify(s.previousRect)} → ${JSON.stringify(s.currentRect)}`).join('; ')}`);
    })).observe({ type: 'layout-shift' });
  });
  await page.getByTestId('add-embedded').click();
  const seen = new Set<string>();
  for (;;) {
    const card = page.getByTestId('pool-card').first();
    seen.add((await card.getByTestId('pool-samples').textContent()) ?? '');
    if ((await card.getAttribute('data-state')) === 'complete' && !(await page.getByRole('button', { name: 'Pause' }).count())) break;
    await page.waitForTimeout(30);
  }
  assert.equal(await page.getByTestId('pool-samples').textContent(), `${pool.samples} of ${pool.samples}`);
  assert.ok([...seen].some((s) => s.startsWith('0 of') || /^\d+ of/.test(s)));
  const { longTasks, shifts } = await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[]; shifts: number[] };
    return { longTasks: w.longTasks, shifts: w.shifts };
  });
  const worst = Math.max(0, ...longTasks);
  console.log(`# ingest of ${pool.samples} samples: ${longTasks.length} long tasks on the main thread, worst ${worst.toFixed(0)} ms; layout shift ${shifts.reduce((a, b) => a + b, 0).toFixed(4)}`);
  assert.ok(worst < 50 || longTasks.length === 0, `main thread blocked for ${worst} ms during the ingest`);
  assert.ok(shifts.reduce((a, b) => a + b, 0) < 0.01, `layout shifted by ${shifts.join(', ')}`);
  assert.match((await page.getByTestId('storage-usage').textContent()) ?? '', /used of/);
  await page.screenshot({ path: join(SHOTS, 'ui-pool.png') });
});

test('Inspect shows the samples in a virtualised grid; sort, filters, search and the histogram agree with the metadata', async () => {
  const { page } = browser;
  await page.getByTestId('nav-inspect').click();
  await page.locator('[data-testid="card"] img').first().waitFor();
  await waitForCount(page, pool.samples);
  const rendered = await page.getByTestId('card').count();
  assert.ok(rendered > 0 && rendered < pool.samples / 3, `${rendered} cards rendered for ${pool.samples} samples`);
  await page.screenshot({ path: join(SHOTS, 'ui-inspect.png') });

  // Sort by width, widest first: the first card is one of the widest samples.
  await page.getByTestId('sort-column').selectOption('original_width');
  await page.waitForFunction(() => document.querySelector('[data-testid="card"]')?.getAttribute('aria-label') !== 'loading');
  const maxWidth = Math.max(...rows.map((r) => r.width));
  await page.waitForFunction((w) => (document.querySelector('[data-testid="card"]')?.getAttribute('aria-label') ?? '').includes(`; ${w} by`), maxWidth.toLocaleString('en-US'), { timeout: 10_000 });

  // A range filter typed in.
  await page.getByTestId('min-original_width').fill('96');
  await page.getByTestId('min-original_width').press('Enter');
  await waitForCount(page, rows.filter((r) => r.width >= 96).length);

  // Caption search (all words, any case) on top of the range.
  const word = 'flag';
  await page.getByTestId('search').fill('FLAG');
  await waitForCount(page, rows.filter((r) => r.width >= 96 && r.text.toLowerCase().includes(word)).length);
  await page.screenshot({ path: join(SHOTS, 'ui-inspect-filtered.png') });

  // Brushing the histogram of original_height sets a range on it; the inputs show it and the grid follows.
  await page.getByTestId('search').fill('');
  await page.getByTestId('hist-column').selectOption('original_height');
  const box = (await page.getByTestId('histogram').boundingBox())!;
  await page.mouse.move(box.x + 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => (document.querySelector('[data-testid="max-original_height"]') as HTMLInputElement).value !== '');
  const lo = Number(await page.getByTestId('min-original_height').inputValue());
  const hi = Number(await page.getByTestId('max-original_height').inputValue());
  assert.ok(hi > lo, `brushed [${lo}, ${hi}]`);
  await waitForCount(page, rows.filter((r) => r.width >= 96 && r.height >= lo && r.height <= hi).length);

  // Ground truth is no column: neither sortable nor filterable.
  const options = await page.getByTestId('sort-column').locator('option').allTextContents();
  for (const truth of ['caption_kind', 'image_kind', 'style', 'concept', 'language']) assert.ok(!options.includes(truth), `${truth} is sortable`);
  assert.equal(await page.locator('[data-testid^="min-caption_kind"]').count(), 0);
});

test('the detail panel shows the sample json, the metadata row and the ground truth labelled as such; the grid works by keyboard', async () => {
  const { page } = browser;
  await page.getByRole('button', { name: 'Clear all' }).click();
  await waitForCount(page, pool.samples);
  // Keyboard: focus the grid, move right and down, open with Enter.
  await page.getByTestId('grid').focus();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  const detail = page.getByTestId('detail');
  await detail.getByTestId('detail-json').waitFor();
  const uid = (await detail.getByTestId('detail-uid').textContent())!.trim();
  const json = JSON.parse((await detail.getByTestId('detail-json').textContent())!);
  assert.equal(json.uid, uid);
  const row = rows.find((r) => r.uid === uid)!;
  assert.ok(row, 'the uid is in the metadata');
  assert.equal(json.caption, row.text);
  assert.match((await detail.getByTestId('detail-truth').textContent()) ?? '', /Ground truth.*filters never read it.*caption_kind/s);
  await page.screenshot({ path: join(SHOTS, 'ui-detail.png') });
  await detail.getByTestId('detail-truth').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SHOTS, 'ui-detail-truth.png') });
  await page.keyboard.press('Escape');
  await detail.waitFor({ state: 'detached' });
});

test('a reload in the middle of an ingest from an HTTP URL resumes where it stopped', async () => {
  const { page } = browser;
  await page.getByTestId('nav-pool').click();
  shardDelayMs = 700;
  await page.getByTestId('pool-url').fill(slowUrl);
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const card = page.getByTestId('pool-card').nth(1);
  await card.waitFor();
  // Two shards stored, the rest still to come: reload.
  await page.waitForFunction(() => {
    const t = document.querySelectorAll('[data-testid="pool-samples"]')[1]?.textContent ?? '';
    return Number(t.split(' of ')[0]!.replace(/,/g, '')) >= 200;
  }, null, { timeout: 30_000 });
  const storedBefore = Number((await card.getByTestId('pool-samples').textContent())!.split(' of ')[0]!.replace(/,/g, '')) / 100;
  assert.ok(storedBefore < pool.shards, 'the ingest was still running');
  await page.screenshot({ path: join(SHOTS, 'ui-pool-ingesting.png') });
  const before = slowLog.length;
  await page.reload();
  await page.getByTestId('pool-card').nth(1).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="pool-card"]')[1]?.getAttribute('data-state') === 'complete', null, { timeout: 60_000 });
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="pool-samples"]')[1]?.textContent === `${n} of ${n}`, pool.samples);
  const after = slowLog.slice(before).filter((l) => l.startsWith('GET') && l.endsWith('.tar')).map((l) => Number(l.match(/(\d{8})\.tar$/)![1]));
  for (let shard = 0; shard < storedBefore; shard++) assert.ok(!after.includes(shard), `shard ${shard} was stored before the reload and fetched again`);
  assert.ok(after.length <= pool.shards - storedBefore, `fetched after the reload: ${after.join(', ')}`);
  assert.ok(!slowLog.slice(before).some((l) => l.includes('/metadata/') && l.startsWith('GET') && l.endsWith('.parquet')), 'metadata was fetched again');
  shardDelayMs = 0;
});

test('Pause stops an ingest and keeps what was stored, a paused pool stays paused over a reload, Resume finishes it', async () => {
  const { page } = browser;
  shardDelayMs = 500;
  // Another spelling of the same server is another source, so this is a third pool.
  await page.getByTestId('pool-url').fill(slowUrl.replace('127.0.0.1', 'localhost'));
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const card = page.getByTestId('pool-card').nth(2);
  await card.waitFor();
  await page.waitForFunction(() => (document.querySelectorAll('[data-testid="pool-samples"]')[2]?.textContent ?? '').startsWith('100 of'), null, { timeout: 30_000 });
  await card.getByRole('button', { name: 'Pause' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="pool-card"]')[2]?.getAttribute('data-state') === 'paused');
  const stored = await card.getByTestId('pool-samples').textContent();
  await page.reload();
  await page.waitForTimeout(1500);
  const card2 = page.getByTestId('pool-card').nth(2);
  assert.equal(await card2.getAttribute('data-state'), 'paused');
  assert.equal(await card2.getByTestId('pool-samples').textContent(), stored, 'nothing more was fetched while paused');
  assert.match((await card2.getByTestId('pool-current').textContent()) ?? '', /Stopped after \d+ of 6 shards/);
  shardDelayMs = 0;
  await card2.getByRole('button', { name: 'Resume' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="pool-samples"]')[2]?.textContent === `${n} of ${n}`, pool.samples, { timeout: 30_000 });
});

test('a URL that holds no pool fails with a message naming it; pools can be deleted, and their databases go with them', async () => {
  const { page } = browser;
  await page.getByTestId('pool-url').fill(`${server.url}/no-pool-here/`);
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const failed = page.locator('[data-testid="pool-card"][data-state="error"]');
  await failed.waitFor();
  assert.match((await failed.getByTestId('pool-current').textContent()) ?? '', /no-pool-here\/metadata\/: no \.parquet files listed/);
  assert.equal(await failed.getByRole('button', { name: 'Retry' }).count(), 1);
  while (await page.getByTestId('delete-pool').count()) {
    const n = await page.getByTestId('pool-card').count();
    await page.getByTestId('delete-pool').first().click();
    await page.waitForFunction((k) => document.querySelectorAll('[data-testid="pool-card"]').length === k - 1, n);
  }
  await page.getByTestId('no-pools').waitFor();
  const dbs = await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
  assert.deepEqual(dbs.filter((n) => n?.startsWith('dcw-pool-')), []);
  await page.getByTestId('nav-inspect').click();
  await page.getByTestId('inspect-empty').waitFor();
});

test('Evaluate opens on the suite with no runs yet, and a browser without WebGPU gets a message, not a blank page', async () => {
  const { page, context } = browser;
  await page.getByTestId('nav-evaluate').click();
  // the suite the server serves is listed before any run exists; nothing to evaluate yet
  await page.getByTestId('suite').waitFor();
  assert.match((await page.getByTestId('suite').textContent()) ?? '', /^\d+ tasks: /);
  assert.equal(await page.getByTestId('eval-run').count(), 0);
  await page.screenshot({ path: join(SHOTS, 'ui-evaluate-empty.png') });
  const noGpu = await context.newPage();
  await noGpu.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
  await noGpu.goto(`${server.url}/#/train`);
  await noGpu.getByTestId('gpu-status').filter({ hasText: 'No WebGPU' }).waitFor();
  assert.match((await noGpu.getByTestId('view-train').textContent()) ?? '', /cannot run it here: This browser has no WebGPU/);
  await noGpu.screenshot({ path: join(SHOTS, 'ui-no-webgpu.png') });
  await noGpu.close();
});
