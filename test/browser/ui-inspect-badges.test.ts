// Inspect's keep/drop badges in the real built app (dcw serve --rebuild), in headless Chromium, on a small real
// pool (`dcw pool build --fraction 0.01`) ingested into IndexedDB:
//   - basic_filter picked in Inspect's badge picker (fastText in the filter worker) keeps as many samples as
//     `dcw filter --name basic_filter` on the same metadata, every card's ✓/✗ is membership in the CLI's subset,
//     and "kept only" / "dropped only" list exactly the CLI's subset and the rest (scrolled through the whole
//     virtualised grid), also together with a caption search (checked against the metadata read by DuckDB);
//   - a second filter B (an expression, checked against `dcw filter --recipe`) gives per-card A/B badges and
//     the "kept by both" count of the two CLI subsets' intersection;
//   - a subset .npy written by numpy as filter A marks exactly its uids; a file that is no subset is refused,
//     named.
// Screenshots: test-results/ui-inspect-badges.png and docs/screenshots/inspect-badges.png.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Page } from 'playwright-core';
import { decodeSubset } from '../../src/core/formats/uid.ts';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { dcw, REPO, startServe } from '../helpers/cli.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const SHOTS = join(REPO, 'test-results');
const DOCS_SHOT = join(REPO, 'docs', 'screenshots', 'inspect-badges.png');
const EXPR = 'min(original_width, original_height) >= 100 and words(text) > 1';
const tmp = mkdtempSync(join(tmpdir(), 'dcw-ui-badges-'));
let pool: SmallPool;
let server: Awaited<ReturnType<typeof startServe>>;
let browser: BrowserSession;
/** Metadata rows (uid, caption) read with DuckDB. */
let rows: { uid: string; text: string }[];
let basic: Set<string>;
let expr: Set<string>;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pool = await buildSmallPool(tmp, { fraction: '0.01', shardSize: 100 });
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  rows = (await c.runAndReadAll(`select uid, text from read_parquet('${join(pool.poolDir, 'metadata', '*.parquet')}')`)).getRowObjects() as typeof rows;
  c.closeSync();
  basic = cliSubset(['--name', 'basic_filter'], 'basic');
  const recipe = join(tmp, 'expr.recipe.json');
  writeFileSync(recipe, JSON.stringify({ recipe: 1, subsets: { s: { where: EXPR } }, result: 's' }));
  expr = cliSubset(['--recipe', recipe], 'expr');
  server = await startServe(['--rebuild', '--pool', pool.poolDir]);
  browser = await openBrowser({ baseUrl: server.url, path: '/' });
  const { page } = browser;
  await page.getByTestId('add-embedded').click();
  await page.locator('[data-testid="pool-card"][data-state="complete"]').waitFor({ timeout: 120_000 });
  await page.getByTestId('nav-inspect').click();
  await page.locator('[data-testid="card"] img').first().waitFor();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** `dcw filter` with these flags: the uids of the subset it writes. */
function cliSubset(args: string[], label: string): Set<string> {
  const out = join(tmp, `${label}.npy`);
  const run = dcw(['filter', ...args, '--metadata_dir', join(pool.poolDir, 'metadata'), '--save_path', out]);
  assert.equal(run.status, 0, run.stderr);
  const uids = decodeSubset(new Uint8Array(readFileSync(out)), out);
  assert.equal(new Set(uids).size, uids.length, `${label}: no uid twice in the small pool`);
  return new Set(uids);
}

const shownCount = async (page: Page) => Number(((await page.getByTestId('count').textContent()) ?? '').match(/^([\d,]+) of/)?.[1]!.replace(/,/g, ''));

/** Waits until the grid shows `n` samples and the badge counts are in for it. */
async function settled(page: Page, n: number, a: number, b?: number): Promise<void> {
  await page.waitForFunction(([n, a, b]) => {
    const count = document.querySelector('[data-testid="count"]')?.textContent ?? '';
    const marks = document.querySelector('[data-testid="mark-count"]');
    return count.startsWith(`${n.toLocaleString('en-US')} of`) && marks && marks.getAttribute('data-of') === String(n)
      && marks.getAttribute('data-a') === String(a) && (b === null || marks.getAttribute('data-b') === String(b));
  }, [n, a, b ?? null] as const, { timeout: 120_000 });
}

/** The cards on screen, once all of them have their row and badges: uid and the A/B bits. */
async function cardsInView(page: Page, slots: 'a' | 'ab' = 'a'): Promise<{ pos: number; uid: string; a: string | null; b: string | null }[]> {
  await page.waitForFunction((slots) => {
    const cards = [...document.querySelectorAll('[data-testid="card"]')];
    return cards.length > 0 && cards.every((c) => c.getAttribute('data-uid') && c.getAttribute('data-kept-a') !== null && (slots === 'a' || c.getAttribute('data-kept-b') !== null));
  }, slots, { timeout: 20_000 });
  return page.$$eval('[data-testid="card"]', (els) => els.map((e) => ({
    pos: Number(e.getAttribute('data-pos')), uid: e.getAttribute('data-uid')!, a: e.getAttribute('data-kept-a'), b: e.getAttribute('data-kept-b'),
  })));
}

/** Every card of the (virtualised) grid, scrolled through from the top: uid and A bit by position. */
async function allCards(page: Page): Promise<Map<number, { uid: string; a: string | null }>> {
  const found = new Map<number, { uid: string; a: string | null }>();
  const grid = page.getByTestId('grid');
  await grid.evaluate((el) => (el.scrollTop = 0));
  for (;;) {
    await page.waitForTimeout(100);
    for (const c of await cardsInView(page)) found.set(c.pos, { uid: c.uid, a: c.a });
    const done = await grid.evaluate((el) => {
      if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1) return true;
      el.scrollTop += el.clientHeight;
      return false;
    });
    if (done) break;
  }
  for (const c of await cardsInView(page)) found.set(c.pos, { uid: c.uid, a: c.a });
  return found;
}

test('basic_filter badges: the CLI\'s count, each card ✓ exactly when its uid is in dcw filter\'s subset; kept / dropped only', async () => {
  const { page } = browser;
  const total = rows.length;
  assert.equal(await shownCount(page), total);
  assert.ok(basic.size > 20 && basic.size < total - 20, `basic_filter keeps ${basic.size} of ${total}`);

  await page.getByTestId('badges-toggle').click();
  await page.getByTestId('mark-a-mode-baseline').check();
  await page.getByTestId('mark-a-baseline').selectOption('basic_filter');
  await settled(page, total, basic.size);
  assert.equal(Number(await page.getByTestId('mark-a-count').getAttribute('data-kept')), basic.size, 'the editor counts what the CLI keeps');
  assert.equal(Number(await page.getByTestId('mark-a-summary').getAttribute('data-kept')), basic.size, 'the rows marked kept');
  assert.match((await page.getByTestId('mark-count').textContent()) ?? '', new RegExp(`✓ ${basic.size} kept .* ✗ ${total - basic.size} dropped`));

  // The cards in view, in pool order: ✓ exactly for the CLI's uids; both kinds are on screen.
  const inView = await cardsInView(page);
  assert.ok(inView.length >= 10, `${inView.length} cards in view`);
  for (const c of inView) assert.equal(c.a, basic.has(c.uid) ? '1' : '0', `card ${c.pos} (${c.uid})`);
  assert.ok(inView.some((c) => c.a === '1') && inView.some((c) => c.a === '0'), 'kept and dropped cards in view');
  const badge = page.locator(`[data-testid="card"][data-uid="${inView.find((c) => c.a === '1')!.uid}"] [data-testid="keep-badge"]`);
  assert.equal(await badge.textContent(), '✓');
  assert.equal(await page.locator(`[data-testid="card"][data-uid="${inView.find((c) => c.a === '0')!.uid}"] [data-testid="keep-badge"]`).textContent(), '✗');
  await page.screenshot({ path: join(SHOTS, 'ui-inspect-badges.png') });
  mkdirSync(join(REPO, 'docs', 'screenshots'), { recursive: true });
  copyFileSync(join(SHOTS, 'ui-inspect-badges.png'), DOCS_SHOT);

  // Kept only: exactly the CLI's subset, every card ✓.
  await page.getByTestId('mark-show').selectOption('kept');
  await settled(page, basic.size, basic.size);
  const kept = await allCards(page);
  assert.equal(kept.size, basic.size);
  assert.deepEqual(new Set([...kept.values()].map((c) => c.uid)), basic);
  assert.ok([...kept.values()].every((c) => c.a === '1'));

  // Dropped only: the rest of the pool.
  await page.getByTestId('mark-show').selectOption('dropped');
  await settled(page, total - basic.size, 0);
  const dropped = await allCards(page);
  assert.deepEqual(new Set([...dropped.values()].map((c) => c.uid)), new Set(rows.map((r) => r.uid).filter((u) => !basic.has(u))));

  // Kept only, together with a caption search (all words, case-insensitive, as the grid searches).
  const word = 'flag';
  const matching = rows.filter((r) => r.text.toLowerCase().includes(word));
  const both = matching.filter((r) => basic.has(r.uid)).length;
  assert.ok(both > 0 && both < matching.length, `"${word}": ${matching.length} captions, ${both} kept`);
  await page.getByTestId('mark-show').selectOption('kept');
  await page.getByTestId('search').fill(word);
  await settled(page, both, both);
  for (const c of await cardsInView(page)) assert.ok(basic.has(c.uid) && matching.some((r) => r.uid === c.uid), c.uid);
  await page.getByTestId('mark-show').selectOption('all');
  await settled(page, matching.length, both);
  await page.getByTestId('search').fill('');
  await settled(page, total, basic.size);
});

test('two filters: A/B badges per card and the count kept by both are the CLI subsets\' intersection', async () => {
  const { page } = browser;
  const total = rows.length;
  const ab = [...basic].filter((u) => expr.has(u)).length;
  assert.ok(expr.size > 0 && expr.size < total && ab > 0, `expression keeps ${expr.size}, both ${ab}`);
  await page.getByTestId('mark-compare').check();
  await page.getByTestId('mark-b-mode-where').check();
  await page.getByTestId('mark-b-where').fill(EXPR);
  await settled(page, total, basic.size, expr.size);
  assert.equal(await page.getByTestId('mark-count').getAttribute('data-both'), String(ab));
  for (const c of await cardsInView(page, 'ab')) {
    assert.equal(c.a, basic.has(c.uid) ? '1' : '0', c.uid);
    assert.equal(c.b, expr.has(c.uid) ? '1' : '0', c.uid);
    const text = await page.locator(`[data-testid="card"][data-pos="${c.pos}"] [data-testid="keep-badge"]`).textContent();
    assert.equal(text, `A${c.a === '1' ? '✓' : '✗'} B${c.b === '1' ? '✓' : '✗'}`);
  }
  await page.getByTestId('mark-show').selectOption('b-only');
  const bOnly = [...expr].filter((u) => !basic.has(u)).length;
  await settled(page, bOnly, 0, bOnly);
  await page.getByTestId('mark-show').selectOption('both');
  await settled(page, ab, ab, ab);
  await page.getByTestId('mark-show').selectOption('all');
  await page.getByTestId('mark-compare').uncheck();
  await settled(page, total, basic.size);
  // B unchecked: its badges and counts go (once the table worker has cleared it)
  await page.waitForFunction(() => document.querySelector('[data-testid="mark-count"]')?.getAttribute('data-b') === '', null, { timeout: 20_000 });
  for (const c of await cardsInView(page)) assert.equal(c.b, null, c.uid);
});

test('a subset .npy written by numpy marks exactly its uids; a file that is no subset is refused, named', async (t) => {
  const { page } = browser;
  const total = rows.length;
  // numpy picks every third uid of the pool and saves them as apply_filter.py does (sorted (u8, u8) records)
  const spec = join(tmp, 'uids.json');
  const npy = join(tmp, 'every-third.npy');
  writeFileSync(spec, JSON.stringify(rows.map((r) => r.uid)));
  const script = `
import json, sys
import numpy as np
uids = json.load(open(sys.argv[1]))[::3]
a = np.array([(int(u[:16], 16), int(u[16:], 16)) for u in uids], np.dtype('u8,u8'))
np.save(sys.argv[2], np.sort(a))`;
  const run = spawnSync('python3', ['-c', script, spec, npy], { encoding: 'utf8' });
  if (run.error || run.status !== 0) return t.skip(`python3 with numpy writes the subset: ${run.error?.message ?? run.stderr}`);
  const third = new Set(rows.map((r) => r.uid).filter((_, i) => i % 3 === 0));

  await page.getByTestId('mark-a-source-file').check();
  await page.getByTestId('mark-a-file').setInputFiles(npy);
  await settled(page, total, third.size);
  assert.match((await page.getByTestId('mark-a-summary').textContent()) ?? '', new RegExp(`${third.size} uids in the file`));
  for (const c of await cardsInView(page)) assert.equal(c.a, third.has(c.uid) ? '1' : '0', c.uid);
  await page.getByTestId('mark-show').selectOption('kept');
  await settled(page, third.size, third.size);
  assert.deepEqual(new Set([...(await allCards(page)).values()].map((c) => c.uid)), third);

  const junk = join(tmp, 'notes.npy');
  writeFileSync(junk, 'not a subset\n');
  await page.getByTestId('mark-a-file').setInputFiles(junk);
  await page.getByTestId('mark-a-summary').filter({ hasText: 'notes.npy' }).waitFor();
  // with no filter A, "kept only" asks nothing: the whole pool, without badges or badge counts
  await page.waitForFunction((n) => (document.querySelector('[data-testid="count"]')?.textContent ?? '').startsWith(`${n.toLocaleString('en-US')} of`)
    && !document.querySelector('[data-testid="mark-count"]') && !document.querySelector('[data-testid="keep-badge"]'), total, { timeout: 20_000 });
});
