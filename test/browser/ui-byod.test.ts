// "Bring your own data" in the real built app (dcw serve with a small pool and its evaluation suite), in headless
// Chromium: a folder of real pictures with captions — one of them a picture copied out of the evaluation suite
// that `dcw pool build --eval-out` wrote — is imported, refused for merging until checked, checked (the copy is
// found and shown), the match dropped, the rest merged into the ingested pool and found in Inspect; merging
// again stops at the first uid the pool has; a table of image URLs is fetched where CORS allows, through dcw serve
// (/api/fetch) where it does not, and the rows that fail say why. Screenshots go to test-results/ui-byod.png and docs/screenshots/byod.png.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { REPO, startServe } from '../helpers/cli.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';
import { formatBytes } from '../../src/ui/lib/format.ts';

const SHOTS = join(REPO, 'test-results');
const IMAGES = join(REPO, 'test/fixtures/images');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-byod-ui-'));
const folder = join(tmp, 'my-pairs');
let pool: SmallPool;
let server: Awaited<ReturnType<typeof startServe>>;
let browser: BrowserSession;
let evalTask: string;
let pictures: Server;
let picturesUrl: string;

/** Our captions (all carry a word the pool's captions never use, so Inspect can find exactly them). */
const CAPTIONS: Record<string, string> = {
  'photo-q95.jpg': 'zyxbyod a photo of a yellow disc over a gradient',
  'alpha.png': 'zyxbyod a translucent gradient square',
  'palette.png': 'zyxbyod a pattern of sixteen colours',
  'nested/photo-lossless.webp': 'zyxbyod the same photo without loss',
  'from-the-web.png': 'zyxbyod a picture found on the web',
};

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pool = await buildSmallPool(tmp, { fraction: '0.01', shardSize: 100 });
  const evalDir = join(tmp, 'built', 'eval');
  // One picture of the evaluation suite, taken out with GNU tar: the check must find it.
  evalTask = readdirSync(evalDir).filter((d) => existsSync(join(evalDir, d, 'test', '0.tar'))).sort()[0]!;
  const extracted = join(tmp, 'eval-extracted');
  mkdirSync(extracted);
  assert.equal(spawnSync('tar', ['-xf', join(evalDir, evalTask, 'test', '0.tar'), '-C', extracted]).status, 0);
  const testPicture = readdirSync(extracted).filter((n) => n.endsWith('.png')).sort()[0]!;

  mkdirSync(join(folder, 'nested'), { recursive: true });
  copyFileSync(join(IMAGES, 'photo-q95.jpg'), join(folder, 'photo-q95.jpg'));
  copyFileSync(join(IMAGES, 'alpha.png'), join(folder, 'alpha.png'));
  copyFileSync(join(IMAGES, 'palette.png'), join(folder, 'palette.png'));
  copyFileSync(join(IMAGES, 'photo-lossless.webp'), join(folder, 'nested', 'photo-lossless.webp'));
  copyFileSync(join(extracted, testPicture), join(folder, 'from-the-web.png'));
  writeFileSync(join(folder, 'photo-q95.txt'), CAPTIONS['photo-q95.jpg']!);
  writeFileSync(join(folder, 'nested', 'photo-lossless.txt'), CAPTIONS['nested/photo-lossless.webp']!);
  writeFileSync(join(folder, 'captions.csv'), `file_name,caption\nalpha.png,${CAPTIONS['alpha.png']}\npalette.png,"${CAPTIONS['palette.png']}"\nfrom-the-web.png,${CAPTIONS['from-the-web.png']}\nbroken.jpg,zyxbyod not a picture\n`);
  writeFileSync(join(folder, 'broken.jpg'), '<html>this is a web page, not a picture</html>');
  copyFileSync(join(IMAGES, 'photo-gray.jpg'), join(folder, 'no-caption.jpg'));

  server = await startServe(['--rebuild', '--pool', pool.poolDir, '--eval', evalDir]);
  // Another origin serving pictures: /cors/ lets other sites read them (and embed them, as COEP asks), /closed/ does
  // not (dcw serve fetches those for the page), /gone/ is a 404 without CORS either.
  pictures = createServer((req, res) => {
    if (req.url!.startsWith('/gone/')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return res.end('not here');
    }
    const cors = req.url!.startsWith('/cors/');
    const body = readFileSync(join(IMAGES, cors ? 'photo-progressive.jpg' : 'photo-q95.jpg'));
    if (cors) res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Access-Control-Allow-Origin': '*', 'Cross-Origin-Resource-Policy': 'cross-origin' });
    else res.writeHead(200, { 'Content-Type': 'image/jpeg' });
    res.end(body);
  });
  await new Promise<void>((r) => pictures.listen(0, '127.0.0.1', r));
  picturesUrl = `http://127.0.0.1:${(pictures.address() as AddressInfo).port}`;
  browser = await openBrowser({ baseUrl: server.url, path: '/' });
  browser.page.on('dialog', (d) => void d.accept());
});

after(async () => {
  await browser?.close();
  await server?.stop();
  pictures?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function waitForCount(page: Page, expected: number) {
  await page.waitForFunction((n) => {
    const t = document.querySelector('[data-testid="count"]')?.textContent ?? '';
    return Number(t.match(/^([\d,]+) of/)?.[1]?.replace(/,/g, '')) === n;
  }, expected, { timeout: 30_000 }).catch(async () => assert.fail(`count is ${await page.getByTestId('count').textContent()}, expected ${expected}`));
}

const usable = Object.keys(CAPTIONS).length;

test('a folder of pictures is imported, refused until checked, the test picture in it found, dropped, and the rest merged into the pool', async () => {
  const { page } = browser;
  await page.getByTestId('add-embedded').click();
  await page.locator('[data-testid="pool-card"][data-state="complete"]').waitFor({ timeout: 60_000 });
  await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, pool.samples);

  // The directory picker, as a user's "Choose a folder" gives it.
  await page.getByTestId('byod-folder').setInputFiles(folder);
  const card = page.getByTestId('byod-import').first();
  await card.waitFor({ timeout: 60_000 });
  assert.equal(await card.getByRole('heading').textContent(), 'my-pairs');
  assert.equal(await card.getByTestId('byod-samples').textContent(), `${usable} samples`);
  assert.equal(await card.getByTestId('byod-status').textContent(), 'not checked');
  const problems = (await card.getByTestId('byod-problems').textContent()) ?? '';
  assert.match(problems, /2 inputs could not be used/);
  assert.match(problems, /broken\.jpg: not a readable picture|broken\.jpg: not a JPEG, PNG, WebP or GIF/);
  assert.match(problems, /no-caption\.jpg: no caption: put it in no-caption\.txt/);
  // Not checked: it cannot go into a pool.
  assert.equal(await card.getByTestId('byod-merge').isDisabled(), true);
  assert.match((await card.textContent()) ?? '', /has not been checked for evaluation pictures: run the contamination check first/);

  // The check, started from the keyboard.
  await card.getByTestId('byod-check').focus();
  await page.keyboard.press('Enter');
  await card.locator('[data-testid="byod-status"]', { hasText: 'match' }).waitFor({ timeout: 120_000 });
  const matches = card.getByTestId('byod-match');
  assert.equal(await matches.count(), 1, 'exactly the copied test picture matches');
  assert.match((await matches.first().textContent()) ?? '', /from-the-web\.png/);
  assert.equal(await matches.first().getByTestId('byod-match-task').textContent(), evalTask);
  assert.match(((await card.getByTestId('byod-check-summary').textContent()) ?? '').replace(/\s+/g, ' '), new RegExp(`Compared ${usable} samples with \\d+ test pictures of .*${evalTask}.*: 1 match`));
  // Both thumbnails show.
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="byod-match"] img')].every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0));
  assert.equal(await matches.first().locator('img').count(), 2);
  assert.equal(await card.getByTestId('byod-merge').isDisabled(), true, 'undecided matches block the merge');
  await card.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SHOTS, 'ui-byod.png'), fullPage: true });
  await page.locator('section.byod').screenshot({ path: join(REPO, 'docs/screenshots/byod.png') });

  await card.getByTestId('byod-drop-matches').click();
  await card.locator('[data-testid="byod-status"]', { hasText: 'matches dropped' }).waitFor();
  assert.equal(await card.getByTestId('byod-samples').textContent(), `${usable - 1} samples`);
  assert.match(((await card.getByTestId('byod-decision').textContent()) ?? '').replace(/\s+/g, ' '), /Dropped 1 sample/);

  await card.getByTestId('byod-merge').click();
  await card.getByTestId('byod-merged').waitFor({ timeout: 60_000 });
  assert.match(((await card.getByTestId('byod-merged').textContent()) ?? '').replace(/\s+/g, ' '), new RegExp(`Merged ${usable - 1} samples into “Embedded default pool” as shards/${String(pool.shards).padStart(8, '0')}\\.tar`));
  const total = pool.samples + usable - 1;
  await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, total);

  // Inspect: the pool holds them, with their pictures and captions.
  await page.getByTestId('nav-inspect').click();
  await waitForCount(page, total);
  await page.getByTestId('search').fill('zyxbyod');
  await waitForCount(page, usable - 1);
  await page.waitForFunction((n) => [...document.querySelectorAll('[data-testid="card"] img')].filter((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0).length === n, usable - 1, { timeout: 20_000 });
  const shown = await page.getByTestId('card').allTextContents();
  for (const caption of Object.values(CAPTIONS).filter((c) => !c.includes('found on the web'))) assert.ok(shown.some((t) => t.includes(caption)), `${caption} is in Inspect`);
  assert.ok(!shown.some((t) => t.includes('found on the web')), 'the dropped test picture is not in the pool');
  await page.screenshot({ path: join(SHOTS, 'ui-byod-inspect.png') });
});

test('merging the same pairs again stops at the first uid the pool already has, naming it', async () => {
  const { page } = browser;
  await page.getByTestId('nav-pool').click();
  await page.getByTestId('byod-folder').setInputFiles(folder);
  const card = page.getByTestId('byod-import').nth(1);
  await card.waitFor({ timeout: 60_000 });
  await card.getByTestId('byod-check').click();
  await card.getByTestId('byod-drop-matches').click();
  await card.locator('[data-testid="byod-status"]', { hasText: 'matches dropped' }).waitFor();
  await card.getByTestId('byod-merge').click();
  await page.locator('[data-testid="byod-error"]', { hasText: 'already in' }).waitFor({ timeout: 30_000 });
  assert.match((await page.getByTestId('byod-error').textContent()) ?? '', /^uid [0-9a-f]{32} \([^)]+\) is already in “Embedded default pool”: remove that pair from the import, or merge it into another pool$/);
  assert.equal(await card.getByTestId('byod-status').textContent(), 'matches dropped', 'nothing was merged');
  await page.waitForFunction((n) => document.querySelector('[data-testid="pool-samples"]')?.textContent === `${n} of ${n}`, pool.samples + usable - 1);
  await card.getByTestId('byod-delete').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="byod-import"]').length === 1);
});

test('a CSV of image URLs: pictures are fetched where their site allows it, through dcw serve where it refuses CORS, and failures are listed', async () => {
  const { page } = browser;
  const csv = join(tmp, 'urls.csv');
  writeFileSync(csv, `Image_URL,TEXT\n${picturesUrl}/cors/a.jpg,zyxbyod fetched across origins\n${picturesUrl}/closed/b.jpg,zyxbyod refused by its site\n${picturesUrl}/gone/c.jpg,zyxbyod not there\n`);
  await page.getByTestId('byod-table').setInputFiles(csv);
  const card = page.getByTestId('byod-import').filter({ has: page.getByRole('heading', { name: 'urls.csv' }) });
  await card.waitFor({ timeout: 60_000 });
  assert.equal(await card.getByTestId('byod-samples').textContent(), '2 samples');
  assert.match((await card.getByTestId('byod-via-server').textContent()) ?? '', /^1 picture fetched through dcw serve/);
  // both pictures are stored as their sites sent them (JPEGs within the size limit are kept as they are)
  const sent = readFileSync(join(IMAGES, 'photo-progressive.jpg')).length + readFileSync(join(IMAGES, 'photo-q95.jpg')).length;
  assert.ok(((await card.textContent()) ?? '').includes(`2 samples (${formatBytes(sent)})`), `${sent} bytes stored`);
  const problems = (await card.getByTestId('byod-problems').textContent()) ?? '';
  assert.match(problems, /urls\.csv row 4: .*\/gone\/c\.jpg: through dcw serve: HTTP 404 Not Found/);
  assert.doesNotMatch(problems, /b\.jpg/);
  assert.equal(await card.getByTestId('byod-status').textContent(), 'not checked');
});
