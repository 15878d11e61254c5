// The Inspect view's duplicate groups, "more like this" and score hints, in the real built app (dcw serve) in
// headless Chromium, on a small real pool (`dcw pool build --fraction 0.01`):
//   - an unscored pool, added as the embedded default: exact groups (same sha256) hold every planted exact copy
//     of the ground truth (read here with DuckDB; the app never reads it for grouping), picture-fingerprint groups
//     too; the score columns' histogram and sort say how to get scores; "more like this" is off, with the hint;
//   - the same pool with embeddings numpy writes (metadata/<stem>.npz, float16, as CommonPool's), added by URL
//     (directory indexes: the ingest finds the npz beside its parquet): "more like this" from the detail panel and
//     from the M key ranks as numpy's brute-force cosine does, the sample first; embedding groups at 0.95 are
//     numpy's connected components.
// Screenshot: test-results/ui-duplicates.png.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Page } from 'playwright-core';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { REPO, startServe } from '../helpers/cli.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const SHOTS = join(REPO, 'test-results');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-ui-inspect-'));
let pool: SmallPool;
let scoredDir: string;
let plain: Awaited<ReturnType<typeof startServe>>;
let scored: Awaited<ReturnType<typeof startServe>> | undefined;
let browser: BrowserSession;
/** Metadata rows in table order (the metadata files sorted by name), read with DuckDB. */
let rows: { uid: string; sha256: string }[];
let truth: { uid: string; image_kind: string; duplicate_of: string }[];
let numpy: string | null = null;
let expected: {
  queries: { row: number; order: number[]; scores: number[] }[];
  groups95: number[][];
};

// numpy writes each metadata file's npz: one random direction per distinct picture (sha256), so exact copies
// are near-identical, plus a few rows pulled towards another row (near duplicates at cos ~0.97), all rows with a
// little noise; float16 as CommonPool's; no pair within 1e-3 of 0.95. And the brute-force answers in float64.
const SCRIPT = String.raw`
import json, sys
import numpy as np
spec = json.load(open(sys.argv[1]))
out = sys.argv[2]
rng = np.random.default_rng(11)
shas = [s for f in spec['files'] for s in f['sha256']]
n, d = len(shas), 64
base = {}
x = np.zeros((n, d))
for i, s in enumerate(shas):
    if s not in base:
        base[s] = rng.standard_normal(d)
    x[i] = base[s] + 0.02 * rng.standard_normal(d)
for a, b in rng.integers(0, n, (n // 10, 2)):
    x[b] = x[a] + 0.25 * rng.standard_normal(d)
def f16(v):
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
for _ in range(100):
    img = f16(x)
    v = img.astype(np.float64); v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = v @ v.T
    np.fill_diagonal(c, 0)
    bad = (np.abs(c - 0.95) < 1e-3).any(axis=1)
    if not bad.any():
        break
    x[bad] += 0.05 * rng.standard_normal((bad.sum(), d))
else:
    raise SystemExit('could not keep pairs away from 0.95')
txt = f16(rng.standard_normal((n, d)))
at = 0
for f in spec['files']:
    k = f['rows']
    np.savez(f"{out}/{f['stem']}.npz", b32_img=img[at:at + k], b32_txt=txt[at:at + k], l14_img=img[at:at + k], l14_txt=txt[at:at + k])
    at += k
queries = []
for q in spec['queries']:
    s = c[q].copy(); s[q] = 1
    rest = sorted((r for r in range(n) if r != q), key=lambda r: (-s[r], r))
    queries.append({'row': q, 'order': [q] + rest[:60], 'scores': s.tolist()})
parent = list(range(n))
def find(a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a
for i, j in zip(*np.nonzero(np.triu(c >= 0.95, 1))):
    parent[find(j)] = find(i)
groups = {}
for r in range(n):
    groups.setdefault(find(r), []).append(r)
json.dump({'queries': queries, 'groups95': sorted([g for g in groups.values() if len(g) > 1], key=lambda g: (-len(g), g[0]))}, open(f'{out}/expected.json', 'w'))
`;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pool = await buildSmallPool(tmp, { fraction: '0.01', shardSize: 100 });
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  rows = [];
  const files: { stem: string; rows: number; sha256: string[] }[] = [];
  for (const name of pool.metadataFiles) {
    const got = (await c.runAndReadAll(`select uid, sha256 from read_parquet('${join(pool.poolDir, 'metadata', name)}')`)).getRowObjects() as { uid: string; sha256: string }[];
    rows.push(...got);
    files.push({ stem: name.replace(/\.parquet$/, ''), rows: got.length, sha256: got.map((r) => r.sha256) });
  }
  truth = (await c.runAndReadAll(`select uid, image_kind, duplicate_of from read_parquet('${join(pool.poolDir, 'ground_truth', 'truth.parquet')}')`)).getRowObjects() as typeof truth;
  c.closeSync();

  scoredDir = join(tmp, 'scored');
  cpSync(pool.poolDir, scoredDir, { recursive: true });
  const specFile = join(tmp, 'npz-spec.json');
  writeFileSync(specFile, JSON.stringify({ files, queries: [3, Math.floor(rows.length / 2)] }));
  const run = spawnSync('python3', ['-c', SCRIPT, specFile, join(scoredDir, 'metadata')], { encoding: 'utf8', timeout: 120_000 });
  if (run.error || run.status !== 0) numpy = `python3 with numpy writes the embeddings: ${run.error?.message ?? run.stderr.trim().split('\n').pop()}`;
  else expected = JSON.parse(readFileSync(join(scoredDir, 'metadata', 'expected.json'), 'utf8')) as typeof expected;
  rmSync(join(scoredDir, 'metadata', 'expected.json'), { force: true });

  plain = await startServe(['--rebuild', '--pool', pool.poolDir]);
  if (!numpy) scored = await startServe(['--pool', scoredDir]);
  browser = await openBrowser({ baseUrl: plain.url, path: '/' });
  browser.page.on('dialog', (d) => void d.accept());
});

after(async () => {
  await browser?.close();
  await plain?.stop();
  await scored?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

async function ingest(page: Page, how: { embedded: true } | { url: string }) {
  await page.getByTestId('nav-pool').click();
  await page.getByTestId('pool-status').filter({ hasText: 'pool at' }).waitFor();
  if ('url' in how) {
    await page.getByTestId('pool-url').fill(how.url);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
  } else {
    await page.getByTestId('add-embedded').click();
  }
  await page.waitForFunction((n) => {
    const card = document.querySelector('[data-testid="pool-card"]');
    return card?.getAttribute('data-state') === 'complete' && card.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`;
  }, pool.samples, { timeout: 120_000 });
  await page.getByTestId('nav-inspect').click();
  await page.locator('[data-testid="card"] img').first().waitFor();
}

async function waitForGroups(page: Page) {
  await page.waitForFunction(() => {
    const t = document.querySelector('[data-testid="duplicates-status"]')?.textContent ?? '';
    return /groups in view/.test(t) || document.querySelector('[data-testid="duplicates-status"] .bad');
  }, null, { timeout: 180_000 });
  const status = (await page.getByTestId('duplicates-status').textContent()) ?? '';
  assert.match(status, /groups in view/, status);
  return status;
}

/** Every group the groups view lists (scrolled through, since it is virtualised): member uids, and the size shown. */
async function readGroups(page: Page): Promise<{ size: number; uids: string[] }[]> {
  const found = new Map<number, { size: number; uids: string[] }>();
  const view = page.getByTestId('groups');
  await view.evaluate((el) => (el.scrollTop = 0));
  for (;;) {
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="group"]')].every((g) => g.getAttribute('data-size')), null, { timeout: 10_000 });
    const seen = await page.$$eval('[data-testid="group"]', (els) => els.map((el) => ({
      top: new DOMMatrixReadOnly(getComputedStyle(el).transform).m42,
      size: Number(el.getAttribute('data-size')),
      uids: [...el.querySelectorAll('[data-testid="group-member"]')].map((m) => m.getAttribute('data-uid')!),
    })));
    for (const g of seen) found.set(Math.round(g.top), { size: g.size, uids: g.uids });
    const done = await view.evaluate((el) => {
      if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1) return true;
      el.scrollTop += el.clientHeight;
      return false;
    });
    if (done) break;
    await page.waitForTimeout(150);
  }
  return [...found.entries()].sort((a, b) => a[0] - b[0]).map(([, g]) => g);
}

const count = async (page: Page) => Number(((await page.getByTestId('count').textContent()) ?? '').match(/^([\d,]+) of/)?.[1]!.replace(/,/g, ''));

test('an unscored pool: exact groups hold every planted exact copy; score columns and "more like this" say how to get scores', async () => {
  const { page } = browser;
  await ingest(page, { embedded: true });

  // Score hints: the histogram and the sort of a score column that is all null.
  await page.getByTestId('hist-column').selectOption('clip_b32_similarity_score');
  assert.match((await page.getByTestId('histogram-empty').textContent()) ?? '', /no scores in this pool — dcw pool score computes them/);
  assert.equal(await page.getByTestId('histogram').count(), 0, 'no empty chart');
  await page.getByTestId('sort-column').selectOption('clip_l14_similarity_score');
  assert.match((await page.getByTestId('sort-hint').textContent()) ?? '', /no scores in this pool — dcw pool score computes them/);
  await page.getByTestId('sort-column').selectOption('');
  assert.equal(await page.getByTestId('sort-hint').count(), 0);
  await page.getByTestId('hist-column').selectOption('original_width');
  await page.getByTestId('histogram').waitFor();

  // "More like this" is off without embeddings, and says why.
  await page.getByTestId('card').first().click();
  await page.getByTestId('detail-uid').waitFor();
  assert.equal(await page.getByTestId('more-like-this').isDisabled(), true);
  assert.equal(await page.getByTestId('more-hint').textContent(), 'this pool has no embeddings: run dcw pool score (see docs/scoring.md)');
  await page.keyboard.press('Escape');

  // Exact groups: the reference is the metadata's sha256 (rows with equal bytes), and the ground truth's planted copies.
  await page.getByTestId('group-duplicates').click();
  assert.equal(await page.getByTestId('duplicate-mode').inputValue(), 'exact');
  const status = (await waitForGroups(page)).trim();
  const bySha = new Map<string, string[]>();
  for (const r of rows) bySha.set(r.sha256, [...(bySha.get(r.sha256) ?? []), r.uid]);
  const want = [...bySha.values()].filter((g) => g.length > 1);
  const groups = await readGroups(page);
  assert.equal(groups.length, want.length, status);
  assert.match(status, new RegExp(`^${want.length} groups in view`));
  const shaOf = new Map(rows.map((r) => [r.uid, r.sha256]));
  const groupOf = new Map<string, number>();
  groups.forEach((g, i) => {
    assert.equal(g.size, bySha.get(shaOf.get(g.uids[0]!)!)!.length, 'the size shown is the number of rows with these bytes');
    assert.ok(i === 0 || groups[i - 1]!.size >= g.size, 'largest groups first');
    for (const uid of g.uids) {
      assert.equal(shaOf.get(uid), shaOf.get(g.uids[0]!), 'one group, one sha256');
      groupOf.set(uid, i);
    }
  });
  const inPool = new Set(rows.map((r) => r.uid));
  const planted = truth.filter((t) => t.image_kind === 'exact_duplicate' && inPool.has(t.uid) && inPool.has(t.duplicate_of));
  assert.ok(planted.length >= 5, `${planted.length} planted exact copies in the small pool`);
  for (const p of planted) {
    assert.ok(groupOf.has(p.uid), `planted copy ${p.uid} is in a group`);
    assert.equal(groupOf.get(p.uid), groupOf.get(p.duplicate_of), `planted copy ${p.uid} is grouped with ${p.duplicate_of}`);
  }
  console.log(`# exact groups: ${groups.length}, holding all ${planted.length} planted exact copies`);
  await page.getByTestId('groups').evaluate((el) => (el.scrollTop = 0));
  await page.locator('[data-testid="group"][data-pos="0"] [data-testid="group-member"] img').first().waitFor();
  await page.screenshot({ path: join(SHOTS, 'ui-duplicates.png') });

  // The group size is a column: sorted by it, the grid's first card carries the largest group's badge.
  await page.getByTestId('group-duplicates').click();
  await page.getByTestId('sort-column').selectOption('duplicate_group_size');
  await page.waitForFunction((n) => document.querySelector('[data-testid="card"] [data-testid="group-badge"]')?.textContent === `×${n}`, groups[0]!.size, { timeout: 10_000 });

  // Near duplicates by picture fingerprint (the pool is small enough to fingerprint whole, in the worker).
  await page.getByTestId('sort-column').selectOption('');
  await page.getByTestId('group-duplicates').click();
  await page.getByTestId('duplicate-mode').selectOption('fingerprint');
  const fpStatus = await waitForGroups(page);
  const fpGroups = await readGroups(page);
  const fpGroupOf = new Map<string, number>();
  fpGroups.forEach((g, i) => g.uids.forEach((u) => fpGroupOf.set(u, i)));
  for (const p of planted) {
    assert.ok(fpGroupOf.has(p.uid) && fpGroupOf.get(p.uid) === fpGroupOf.get(p.duplicate_of), `identical pictures ${p.uid} and ${p.duplicate_of} share a fingerprint group`);
  }
  const near = truth.filter((t) => t.image_kind === 'near_duplicate' && inPool.has(t.uid) && inPool.has(t.duplicate_of));
  const nearFound = near.filter((p) => fpGroupOf.has(p.uid) && fpGroupOf.get(p.uid) === fpGroupOf.get(p.duplicate_of)).length;
  console.log(`# fingerprint groups: ${fpGroups.length} (${fpStatus.trim()}); planted near copies found: ${nearFound} of ${near.length}`);
  assert.ok(fpGroups.length >= groups.length - 2, 'picture groups take in the exact ones');
  await page.getByTestId('group-duplicates').click();
});

test('a pool with embeddings: "more like this" ranks as numpy\'s brute-force cosine does; embedding groups are numpy\'s components', async (t) => {
  if (numpy) return t.skip(numpy);
  const page = await browser.context.newPage();
  await page.goto(scored!.url + '/');
  await ingest(page, { url: `${scored!.url}/pool/` });
  const total = await count(page);
  assert.equal(total, rows.length);

  const q = expected.queries[0]!;
  const cardUids = async () => (await page.$$eval('[data-testid="card"]', (els) => els
    .map((e) => ({ pos: Number(e.getAttribute('data-pos')), uid: e.getAttribute('data-uid') }))
    .filter((e) => e.uid)
    .sort((a, b) => a.pos - b.pos)
    .map((e) => e.uid!)));
  const checkRanking = async (query: typeof q) => {
    await page.getByTestId('similar-banner').waitFor();
    await page.waitForFunction((uid) => document.querySelector('[data-testid="card"][data-pos="0"]')?.getAttribute('data-uid') === uid, rows[query.row]!.uid, { timeout: 20_000 });
    const shown = (await cardUids()).slice(0, 40);
    assert.ok(shown.length >= 15, `${shown.length} cards shown`);
    const rowOf = new Map(rows.map((r, i) => [r.uid, i]));
    shown.forEach((uid, i) => {
      const want = query.order[i]!;
      const got = rowOf.get(uid)!;
      assert.ok(got === want || Math.abs(query.scores[got]! - query.scores[want]!) < 1e-4, `position ${i}: row ${got} (cos ${query.scores[got]}), numpy has row ${want} (cos ${query.scores[want]})`);
    });
    assert.equal(await page.locator('[data-testid="card"][data-pos="0"] [data-testid="card-extra"]').textContent(), 'cosine 1.000');
    assert.match((await page.getByTestId('count').textContent()) ?? '', new RegExp(`^${Math.min(1000, rows.length).toLocaleString('en-US')} of`));
  };

  // From the detail panel's button.
  await page.evaluate(() => document.querySelector('[data-testid="grid"]')!.scrollTo(0, 0));
  const target = page.locator(`[data-testid="card"][data-pos="${q.row}"]`);
  await target.click();
  await page.getByTestId('more-like-this').click();
  await checkRanking(q);
  await page.keyboard.press('Escape');

  // The way back.
  await page.getByTestId('similar-back').click();
  await page.getByTestId('similar-banner').waitFor({ state: 'detached' });
  await page.waitForFunction((n) => (document.querySelector('[data-testid="count"]')?.textContent ?? '').startsWith(`${n.toLocaleString('en-US')} of`), total);

  // The M key on a focused card (the grid keeps the focused position; row q2 is at its pool position).
  const q2 = expected.queries[1]!;
  await page.getByTestId('grid').focus();
  for (let i = 0; i < q2.row; i++) await page.keyboard.press('ArrowRight');
  await page.waitForFunction((pos) => document.activeElement?.getAttribute('data-pos') === String(pos), q2.row);
  await page.keyboard.press('m');
  await checkRanking(q2);
  await page.getByTestId('similar-back').click();
  await page.getByTestId('similar-banner').waitFor({ state: 'detached' });

  // Near-duplicate groups by embedding cosine at the default 0.95.
  await page.getByTestId('group-duplicates').click();
  assert.equal(await page.getByTestId('duplicate-mode').inputValue(), 'embedding');
  assert.equal(await page.getByTestId('duplicate-threshold').inputValue(), '0.95');
  await waitForGroups(page);
  const groups = await readGroups(page);
  const rowOf = new Map(rows.map((r, i) => [r.uid, i]));
  const got = groups.map((g) => g.uids.map((u) => rowOf.get(u)!).sort((a, b) => a - b));
  assert.deepEqual(groups.map((g) => g.size), expected.groups95.map((g) => g.length));
  assert.deepEqual(got, expected.groups95.map((g) => g.slice(0, 12)));
  await page.close();
});
