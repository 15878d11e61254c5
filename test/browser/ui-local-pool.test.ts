// A pool from a local folder in the real built app (dcw serve), in headless Chromium: "Add local folder…" with the
// <input webkitdirectory> fallback (the File System Access picker is hidden, as in browsers without it), reached by
// keyboard; the ingest to complete and the pool in Inspect; a reload in the middle of an ingest, the folder picked
// again (a wrong folder refused, naming the difference) and the ingest resumed where it stopped; loose files dropped
// onto the Pool view. Screenshot: test-results/ui-local-pool.png.
//
// Local reads are too fast to reload "in the middle" by timing, so the test holds the ingest at a shard boundary
// itself: a readwrite IndexedDB transaction from the page on the pool's `samples` store makes the worker's next
// shard write wait (IndexedDB runs overlapping readwrite transactions one after another) until it is released.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { REPO, startServe } from '../helpers/cli.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const SHOTS = join(REPO, 'test-results');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-ui-local-'));
let pool: SmallPool;
let server: Awaited<ReturnType<typeof startServe>>;
let browser: BrowserSession;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pool = await buildSmallPool(tmp, { fraction: '0.01', shardSize: 100 });
  // The server serves another pool (the eval suite's build): the local folder is the only way this pool gets in.
  server = await startServe(['--rebuild', '--pool', join(tmp, 'built', 'pool'), '--eval', join(tmp, 'built', 'eval')]);
  browser = await openBrowser({ baseUrl: server.url, path: '/' });
  browser.page.on('dialog', (d) => void d.accept()); // Delete's confirm
  // As in a browser without the File System Access API: "Add local folder…" falls back to <input webkitdirectory>.
  await browser.context.addInitScript(() => {
    delete (window as { showDirectoryPicker?: unknown }).showDirectoryPicker;
  });
  await browser.page.reload();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const card = (page: Page) => page.getByTestId('pool-card').first();
const samplesText = async (page: Page) => (await card(page).getByTestId('pool-samples').textContent()) ?? '';

type Holds = { holds?: Record<string, { queued: boolean; release(): void }> };

/**
 * Holds the pool's shard writes: a readwrite transaction on its `samples` store, kept alive by a chain of reads
 * until `release(page, key)` (or the page goes). Resolves, once it holds, with the samples stored then (a shard's
 * samples and its completion record are written in one transaction, so these are whole shards).
 */
async function holdIngest(page: Page, id: string, key: string): Promise<number> {
  return page.evaluate(({ name, key }) => new Promise<number>((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const db = req.result;
      const tx = db.transaction('samples', 'readwrite');
      const w = window as unknown as Holds;
      let held = true;
      (w.holds ??= {})[key] = { queued: true, release: () => (held = false) };
      const spin = () => {
        if (held) tx.objectStore('samples').get('hold').onsuccess = spin;
      };
      spin();
      tx.oncomplete = () => db.close();
      const count = tx.objectStore('samples').count();
      count.onsuccess = () => resolve(count.result);
    };
  }), { name: `dcw-pool-${id}`, key });
}

async function release(page: Page, key: string): Promise<void> {
  await page.evaluate((k) => (window as unknown as Holds).holds![k]!.release(), key);
}

/**
 * Arms a hold for the next pool added: the page watches for its database (created when the pool is registered,
 * before its ingest starts) and at once holds its `samples` store (hold 'h0'). Resolves once armed.
 */
async function armHold(page: Page): Promise<void> {
  await page.evaluate(async () => {
    const w = window as unknown as Holds & { armed?: { name: string; stored: number } };
    delete w.armed;
    const seen = new Set((await indexedDB.databases()).map((d) => d.name));
    let looking = false;
    const timer = setInterval(async () => {
      if (looking) return;
      looking = true;
      const fresh = (await indexedDB.databases()).find((d) => d.name?.startsWith('dcw-pool-') && !seen.has(d.name));
      looking = false;
      if (!fresh || w.armed) return;
      clearInterval(timer);
      w.armed = { name: fresh.name!, stored: -1 };
      // Only a database that exists is opened (no version): this never creates one the ingest would then find empty.
      const req = indexedDB.open(fresh.name!);
      req.onsuccess = () => {
        const db = req.result;
        const tx = db.transaction('samples', 'readwrite');
        let held = true;
        (w.holds ??= {}).h0 = { queued: true, release: () => (held = false) };
        const spin = () => {
          if (held) tx.objectStore('samples').get('hold').onsuccess = spin;
        };
        spin();
        tx.oncomplete = () => db.close();
        const count = tx.objectStore('samples').count();
        count.onsuccess = () => (w.armed!.stored = count.result);
      };
    }, 5);
  });
}

/**
 * After armHold and the add: the pool's id, with its ingest stopped right after its first whole shard and kept
 * there (hold `last`, released by `release(page, last)`). From the armed hold, one shard write is let through
 * at a time, each next hold queued before the last is released (IndexedDB starts overlapping readwrite
 * transactions in the order they were made, so at most one shard gets in between), until a shard is stored.
 */
async function holdAfterAShard(page: Page): Promise<{ id: string; stored: number; last: string }> {
  const armed = await page.waitForFunction(() => {
    const a = (window as unknown as { armed?: { name: string; stored: number } }).armed;
    return a && a.stored >= 0 ? a : null;
  }, null, { timeout: 30_000 });
  const { name, stored: first } = (await armed.jsonValue())!;
  const id = name.slice('dcw-pool-'.length);
  let stored = first;
  let i = 0;
  while (stored === 0) {
    await page.waitForTimeout(100); // the ingest reads its next shard and queues the write
    const next = holdIngest(page, id, `h${i + 1}`);
    await page.waitForFunction((k) => Boolean((window as unknown as Holds).holds?.[k]?.queued), `h${i + 1}`);
    await release(page, `h${i}`);
    stored = await next;
    i++;
  }
  return { id, stored, last: `h${i}` };
}

test('a local folder added by keyboard through the folder input ingests to complete and opens in Inspect', async () => {
  const { page } = browser;
  await page.getByTestId('no-pools').waitFor();
  assert.equal(await page.evaluate(() => 'showDirectoryPicker' in window), false, 'the fallback is under test');
  // Keyboard: the button takes focus and Enter opens the folder dialog (the hidden input).
  const add = page.getByRole('button', { name: 'Add local folder…' });
  const chooser = page.waitForEvent('filechooser');
  await add.press('Enter');
  await (await chooser).setFiles(pool.poolDir);
  await card(page).waitFor();
  assert.match((await card(page).locator('h3').textContent()) ?? '', /Local folder “pool”/);
  await page.waitForFunction(() => document.querySelector('[data-testid="pool-card"]')?.getAttribute('data-state') === 'complete', null, { timeout: 60_000 });
  await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, pool.samples);
  assert.match((await card(page).getByTestId('pool-current').textContent()) ?? '', new RegExp(`${pool.shards} shards and \\d+ files stored`));

  await card(page).getByRole('link', { name: 'Inspect' }).click();
  await page.locator('[data-testid="card"] img').first().waitFor({ timeout: 30_000 });
  await page.waitForFunction((n) => (document.querySelector('[data-testid="count"]')?.textContent ?? '').startsWith(`${n.toLocaleString('en-US')} of`), pool.samples, { timeout: 20_000 });

  // The same folder again is the same pool, not a second one.
  await page.getByTestId('nav-pool').click();
  await page.getByTestId('local-folder-input').setInputFiles(pool.poolDir);
  await page.waitForTimeout(1000);
  await page.waitForFunction(() => !(document.querySelector('[data-testid="add-local"]') as HTMLButtonElement).disabled);
  assert.equal(await page.getByTestId('pool-card').count(), 1);
  await card(page).getByTestId('delete-pool').click();
  await page.getByTestId('no-pools').waitFor();
});

test('a reload in the middle of a local ingest: the folder is picked again (a wrong one is refused) and the ingest resumes where it stopped', async () => {
  const { page } = browser;
  await armHold(page);
  await page.getByTestId('local-folder-input').setInputFiles(pool.poolDir);
  // A shard stored, the next one's write held: reload while it waits.
  const { id, stored } = await holdAfterAShard(page);
  assert.ok(stored >= 100 && stored < pool.samples && stored % 100 === 0, `${stored} of ${pool.samples} samples stored when the ingest was held`);
  console.log(`# ingest held after ${stored} of ${pool.samples} samples, then the page reloaded`);
  await page.waitForTimeout(500); // the worker reads the next shard and queues its write behind the hold
  await page.reload();

  // After the reload the browser has forgotten the files: the card asks for the folder again.
  const needs = card(page).getByTestId('pool-needs');
  await needs.waitFor({ timeout: 30_000 });
  assert.equal(await card(page).getByTestId('pool-state').textContent(), 'waiting for the folder');
  assert.equal(await samplesText(page), `${stored} of ${pool.samples}`, 'only whole shards count: the one being written when the page went is not');
  await page.screenshot({ path: join(SHOTS, 'ui-local-pool.png') });

  // Another folder (the pool without its last shard) is refused, naming what differs.
  const other = join(tmp, 'other');
  cpSync(pool.poolDir, other, { recursive: true });
  const last = readdirSync(join(other, 'shards')).filter((n) => n.endsWith('.tar')).sort().at(-1)!;
  rmSync(join(other, 'shards', last));
  let chooser = page.waitForEvent('filechooser');
  await card(page).getByTestId('local-repick').click();
  await (await chooser).setFiles(other);
  await card(page).getByTestId('local-error').waitFor();
  assert.equal(await card(page).getByTestId('local-error').textContent(), `not the folder “pool” this pool came from (shards/${last} is missing): pick that folder again`);
  assert.equal(await samplesText(page), `${stored} of ${pool.samples}`);

  // The right folder: the ingest resumes from the stored shards (held once more to see it start there).
  await holdIngest(page, id, 'again');
  chooser = page.waitForEvent('filechooser');
  await card(page).getByTestId('local-repick').click();
  await (await chooser).setFiles(pool.poolDir);
  await page.waitForFunction(() => document.querySelector('[data-testid="pool-state"]')?.textContent === 'resuming', null, { timeout: 30_000 });
  assert.equal(await samplesText(page), `${stored} of ${pool.samples}`);
  assert.equal(await card(page).getByTestId('local-error').count(), 0);
  await release(page, 'again');
  await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, pool.samples, { timeout: 60_000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="pool-card"]')?.getAttribute('data-state') === 'complete');
  await card(page).getByTestId('delete-pool').click();
  await page.getByTestId('no-pools').waitFor();
});

test('loose shard tars and metadata dropped onto the Pool view become a pool; a drop that holds none says what to drop', async () => {
  const { page } = browser;
  const names = [...readdirSync(join(pool.poolDir, 'shards')), ...pool.metadataFiles];
  const files = names.map((name) => ({
    name,
    base64: readFileSync(join(pool.poolDir, name.endsWith('.parquet') && !/^\d{8}/.test(name) ? 'metadata' : 'shards', name)).toString('base64'),
  }));
  const drop = async (list: { name: string; base64: string }[]) => {
    const dataTransfer = await page.evaluateHandle((list) => {
      const dt = new DataTransfer();
      for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0))], f.name));
      return dt;
    }, list);
    await page.getByTestId('pool-drop').dispatchEvent('dragover', { dataTransfer });
    await page.getByTestId('pool-drop').dispatchEvent('drop', { dataTransfer });
  };
  await drop([{ name: 'notes.txt', base64: Buffer.from('hello').toString('base64') }]);
  await page.getByTestId('add-error').filter({ hasText: /./ }).waitFor();
  assert.match((await page.getByTestId('add-error').textContent()) ?? '', /^1 dropped (files|items): no metadata\/\*\.parquet and no \.parquet or \{:08d\}\.tar files — pick the pool’s folder/);
  assert.equal(await page.getByTestId('pool-card').count(), 0);

  await drop(files);
  await card(page).waitFor();
  await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, pool.samples, { timeout: 60_000 });
  assert.match((await card(page).locator('h3').textContent()) ?? '', new RegExp(`${files.length} dropped (files|items)`));
  assert.equal(await page.getByTestId('add-error').textContent(), '');
});

test('a folder from the File System Access picker: its handle is kept, and after a reload the ingest resumes from it with no file dialog', async () => {
  // A browser of its own, with the picker: it returns a real FileSystemDirectoryHandle (of the origin-private file
  // system, which needs no permission prompt — the one thing a headless browser cannot click) holding the pool.
  const session = await openBrowser({ baseUrl: server.url, path: '/' });
  try {
    const { page, context } = session;
    page.on('dialog', (d) => void d.accept());
    for (const dir of readdirSync(pool.poolDir)) {
      for (const name of readdirSync(join(pool.poolDir, dir))) {
        await page.evaluate(async ({ dir, name, base64 }) => {
          const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('pool', { create: true });
          const file = await (await root.getDirectoryHandle(dir, { create: true })).getFileHandle(name, { create: true });
          const out = await file.createWritable();
          await out.write(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
          await out.close();
        }, { dir, name, base64: readFileSync(join(pool.poolDir, dir, name)).toString('base64') });
      }
    }
    await context.addInitScript(() => {
      (window as unknown as { showDirectoryPicker: () => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('pool');
    });
    await page.reload();
    // A second tab of the same origin (not the app) to hold the ingest across the reload of the first.
    const holder = await context.newPage();
    await holder.goto(`${server.url}/api/pool`);
    // Held from the second tab, so the hold outlives the reload of the first.
    await armHold(holder);
    await page.getByRole('button', { name: 'Add local folder…' }).click();
    await card(page).waitFor();
    assert.match((await card(page).textContent()) ?? '', /after a reload the browser asks once to read the folder again/);
    const { id, stored, last } = await holdAfterAShard(holder);
    assert.ok(stored >= 100 && stored < pool.samples && stored % 100 === 0, `${stored} of ${pool.samples} samples stored when the ingest was held`);
    console.log(`# ingest held after ${stored} of ${pool.samples} samples, then the page reloaded`);
    await page.waitForTimeout(300);
    await page.reload();
    // It goes on by itself, from the stored shards: no file dialog, no prompt.
    await page.waitForFunction(() => document.querySelector('[data-testid="pool-state"]')?.textContent === 'resuming', null, { timeout: 30_000 });
    assert.equal(await samplesText(page), `${stored} of ${pool.samples}`);
    assert.equal(await page.getByTestId('pool-needs').count(), 0);
    await release(holder, last);
    await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, pool.samples, { timeout: 60_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="pool-card"]')?.getAttribute('data-state') === 'complete');
  } finally {
    await session.close();
  }
});
