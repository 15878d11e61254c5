// The Filter view of the real built app (dcw serve), in headless Chromium, on a small real pool ingested into
// IndexedDB: baselines and expressions counted live in a worker agree with `dcw filter`, the exported subset
// .npy has the CLI's bytes, a bad expression shows its error at the right column, two filters are compared
// (with pictures), and a subset made elsewhere is imported. Language id (basic_filter, lang()) is fastText in
// the worker, checked against the CLI's fastText. Screenshots go to test-results/.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { ExpressionError, compileExpression } from '../../src/core/filters/expr.ts';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { decodeSubset, encodeSubset } from '../../src/core/formats/uid.ts';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { dcw, REPO, startServe } from '../helpers/cli.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const SHOTS = join(REPO, 'test-results');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-ui-filter-'));
let pool: SmallPool;
let metadataDir: string;
let server: Awaited<ReturnType<typeof startServe>>;
let browser: BrowserSession;
/** The CLI's answers, kept for the later tests. */
let cliAll: { bytes: Uint8Array; kept: number };
let cliE1: { bytes: Uint8Array; kept: number };
const E1 = 'min(original_width, original_height) >= 200 and words(text) > 2';

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pool = await buildSmallPool(tmp, { fraction: '0.01', shardSize: 200 });
  metadataDir = join(pool.poolDir, 'metadata');
  server = await startServe(['--rebuild', '--pool', pool.poolDir]);
  browser = await openBrowser({ baseUrl: server.url, path: '/' });
  const { page } = browser;
  await page.getByTestId('add-embedded').click();
  await page.locator('[data-testid="pool-card"][data-state="complete"]').waitFor({ timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** `dcw filter` with these flags: the subset bytes it writes and the count it reports. */
function cliFilter(args: string[], label: string): { bytes: Uint8Array; kept: number } {
  const out = join(tmp, `${label}.npy`);
  const run = dcw(['filter', ...args, '--metadata_dir', metadataDir, '--save_path', out]);
  assert.equal(run.status, 0, run.stderr);
  const bytes = new Uint8Array(readFileSync(out));
  return { bytes, kept: decodeSubset(bytes, out).length };
}

function cliRecipe(recipe: object, label: string) {
  const file = join(tmp, `${label}.recipe.json`);
  writeFileSync(file, JSON.stringify(recipe));
  return cliFilter(['--recipe', file], label);
}

/** Waits for the live count of editor `id` to settle on a number (not "Counting…", not stale). */
async function settledCount(page: Page, id: string, expected?: number): Promise<number> {
  await page.waitForFunction(([id, n]) => {
    const el = document.querySelector(`[data-testid="${id}-count"]:not(.stale)`);
    return el && (n === null || Number(el.getAttribute('data-kept')) === n);
  }, [id, expected ?? null] as const, { timeout: 20_000 }).catch(async () => {
    assert.fail(`count of ${id} is ${await page.getByTestId(`${id}-count`).getAttribute('data-kept').catch(() => 'missing')}, expected ${expected}`);
  });
  return Number(await page.getByTestId(`${id}-count`).getAttribute('data-kept'));
}

async function downloadBytes(page: Page, testId: string): Promise<{ bytes: Uint8Array; name: string }> {
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testId).click()]);
  const path = join(tmp, `dl-${Date.now()}-${download.suggestedFilename()}`);
  await download.saveAs(path);
  return { bytes: new Uint8Array(readFileSync(path)), name: download.suggestedFilename() };
}

test('official baselines: the live count and the exported .npy bytes are those of dcw filter', async () => {
  const { page } = browser;
  await page.getByTestId('nav-filter').click();
  await page.getByTestId('a-editor').waitFor();
  await page.getByTestId('a-mode-baseline').check();

  await page.getByTestId('a-baseline').selectOption('no_filter');
  const all = cliFilter(['--name', 'no_filter'], 'no_filter');
  cliAll = all;
  assert.equal(all.kept, pool.samples);
  await settledCount(page, 'a', all.kept);
  assert.match((await page.getByTestId('a-pct').textContent()) ?? '', /\(100\.0%\)/);
  const npy = await downloadBytes(page, 'export-npy');
  assert.equal(npy.name, 'no_filter.npy');
  assert.deepEqual(npy.bytes, all.bytes);

  // clip_score with its flags, typed in (the embedded pool leaves the scores to the scorers: the official
  // rule then keeps nothing, and so must the view).
  await page.getByTestId('a-baseline').selectOption('clip_score');
  await page.getByTestId('a-arch').selectOption('b32');
  await page.getByTestId('a-by').selectOption('threshold');
  await page.getByTestId('a-value').fill('0.25');
  const clip = cliFilter(['--name', 'clip_score', '--arch', 'b32', '--threshold', '0.25'], 'clip');
  await settledCount(page, 'a', clip.kept);
  assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, clip.bytes);

  // An invalid flag value is the official check's message, not a count.
  await page.getByTestId('a-by').selectOption('fraction');
  await page.getByTestId('a-value').fill('1.5');
  await page.getByTestId('a-error').filter({ hasText: '--fraction must be in [0, 1)' }).waitFor();
  // basic_filter: fastText lid.176 in the worker, the same package and model file as the CLI.
  assert.match((await page.getByTestId('langid').textContent()) ?? '', /^fasttext-lid\.176 \(fasttext\.wasm\.js@1\.0\.0 lid\.176\.ftz sha256:[0-9a-f]{16}\)$/);
  await page.getByTestId('a-baseline').selectOption('basic_filter');
  const basic = cliFilter(['--name', 'basic_filter'], 'basic');
  assert.ok(basic.kept > 0 && basic.kept < pool.samples, `basic_filter keeps ${basic.kept}`);
  await settledCount(page, 'a', basic.kept);
  assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, basic.bytes);
});

test('a custom expression: live count as it is typed, export matches dcw filter --recipe byte for byte', async () => {
  const { page } = browser;
  await page.getByTestId('a-mode-where').check();
  const where = page.getByTestId('a-where');
  const e1 = E1;
  await where.fill(e1);
  const cli1 = cliRecipe({ recipe: 1, subsets: { s: { where: e1 } }, result: 's' }, 'e1');
  cliE1 = cli1;
  assert.ok(cli1.kept > 0 && cli1.kept < pool.samples, `expression keeps ${cli1.kept} of ${pool.samples}`);
  await settledCount(page, 'a', cli1.kept);

  // Typing more recounts (debounced, in the worker).
  await where.press('End');
  await where.pressSequentially(' and original_width >= 384', { delay: 20 });
  const e2 = `${e1} and original_width >= 384`;
  const cli2 = cliRecipe({ recipe: 1, subsets: { s: { where: e2 } }, result: 's' }, 'e2');
  assert.notEqual(cli2.kept, cli1.kept);
  await settledCount(page, 'a', cli2.kept);

  // The exported recipe runs in the CLI to the same bytes as the exported subset.
  const recipe = await downloadBytes(page, 'export-recipe');
  const recipeFile = join(tmp, 'exported.recipe.json');
  writeFileSync(recipeFile, recipe.bytes);
  const fromRecipe = cliFilter(['--recipe', recipeFile], 'exported');
  assert.deepEqual((await downloadBytes(page, 'export-npy')).bytes, fromRecipe.bytes);
  assert.deepEqual(fromRecipe.bytes, cli2.bytes);

  // lang() runs the worker's fastText, as the CLI's.
  const e3 = 'lang(text) == "en" and original_width >= 384';
  await where.fill(e3);
  await settledCount(page, 'a', cliRecipe({ recipe: 1, subsets: { s: { where: e3 } }, result: 's' }, 'e3').kept);
});

test('a bad expression shows its error inline, pointing at the character of the problem', async () => {
  const { page } = browser;
  const file = await ParquetFile.open(new Uint8Array(readFileSync(join(metadataDir, pool.metadataFiles[0]!))), 'metadata');
  const fields = file.schema.fields;
  for (const bad of ['original_width >= and words(text) > 2', 'original_width >= 200 and orignal_height > 3', 'text >= 3']) {
    let at = -1;
    let problem = '';
    try {
      compileExpression(bad, fields, 'bool');
    } catch (err) {
      assert.ok(err instanceof ExpressionError);
      at = err.at;
      problem = err.message.replace(/^.*?at character \d+: /, '');
    }
    assert.ok(at >= 0, `${bad} compiled`);
    await page.getByTestId('a-where').fill(bad);
    const caret = page.getByTestId('a-caret');
    await page.locator(`[data-testid="a-caret"][data-at="${at}"]`).waitFor({ timeout: 10_000 });
    assert.equal(await caret.textContent(), `${' '.repeat(at)}^`);
    assert.ok(((await page.getByTestId('a-error').textContent()) ?? '').includes(problem), `${bad}: ${problem}`);
    assert.equal(await page.getByTestId('a-where').getAttribute('aria-invalid'), 'true');
    // The caret sits under the character: same monospace line, same x as the character.
    const x = await page.evaluate((at) => {
      const pre = document.querySelector('[data-testid="a-error"] pre')!;
      const [text, mark] = [pre.firstElementChild!, pre.lastElementChild!];
      const range = document.createRange();
      range.setStart(text.firstChild!, at);
      range.setEnd(text.firstChild!, at + 1);
      const m = document.createRange();
      m.setStart(mark.firstChild!, at);
      m.setEnd(mark.firstChild!, at + 1);
      return [range.getBoundingClientRect().left, m.getBoundingClientRect().left];
    }, at);
    assert.ok(Math.abs(x[0]! - x[1]!) < 1, `caret at x=${x[1]}, character at x=${x[0]}`);
  }
  await page.screenshot({ path: join(SHOTS, 'ui-filter-error.png') });
});

test('two filters compared: overlap and each side, with pictures; a subset made elsewhere is imported', async () => {
  const { page } = browser;
  const ea = E1;
  const eb = 'original_width >= 384';
  await page.getByTestId('a-where').fill(ea);
  await page.getByTestId('b-mode-where').check();
  await page.getByTestId('b-where').fill(eb);
  const inA = new Set(decodeSubset(cliE1.bytes, 'a'));
  const inB = new Set(decodeSubset(cliRecipe({ recipe: 1, subsets: { b: { where: eb } }, result: 'b' }, 'b').bytes, 'b'));
  const both = [...inA].filter((u) => inB.has(u)).length;
  const onlyA = inA.size - both;
  const onlyB = inB.size - both;
  assert.ok(both > 0 && onlyA > 0 && onlyB > 0, `${both} ${onlyA} ${onlyB}`);
  await settledCount(page, 'a', both + onlyA);
  await settledCount(page, 'b', both + onlyB);
  await page.getByTestId('compare').click();
  await page.getByTestId('comparison').waitFor();
  assert.equal(Number(await page.getByTestId('compare-both').getAttribute('data-count')), both);
  assert.equal(Number(await page.getByTestId('compare-onlyA').getAttribute('data-count')), onlyA);
  assert.equal(Number(await page.getByTestId('compare-onlyB').getAttribute('data-count')), onlyB);
  for (const side of ['onlyA', 'both', 'onlyB']) {
    const thumbs = page.getByTestId(`thumb-${side}`);
    await thumbs.first().waitFor();
    await page.waitForFunction((side) => [...document.querySelectorAll(`[data-testid="thumb-${side}"]`)].every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0), side);
    assert.ok((await thumbs.count()) > 0);
  }
  await page.screenshot({ path: join(SHOTS, 'ui-filter.png') });

  // Import: the CLI's subset for A, plus two uids from outside the pool.
  const poolUids = decodeSubset(cliAll.bytes, 'pool');
  const mine = [...inA];
  const foreign = ['0'.repeat(32), 'f'.repeat(32)].filter((u) => !poolUids.includes(u));
  const file = join(tmp, 'theirs.npy');
  writeFileSync(file, encodeSubset([...mine, ...foreign]));
  await page.getByTestId('import-npy').setInputFiles(file);
  const imported = page.getByTestId('imported');
  await imported.waitFor();
  assert.equal(Number(await imported.getAttribute('data-count')), mine.length + foreign.length);
  assert.equal(Number(await imported.getAttribute('data-in-pool')), new Set(mine).size);
  assert.match((await imported.textContent()) ?? '', new RegExp(`the pool has ${new Set(poolUids).size}`));

  // Not a subset file: its problem, naming the file.
  const junk = join(tmp, 'junk.npy');
  writeFileSync(junk, 'not a subset');
  await page.getByTestId('import-npy').setInputFiles(junk);
  await page.getByTestId('import-error').filter({ hasText: 'junk.npy' }).waitFor();
  await page.getByTestId('import-npy').setInputFiles(file);
  await imported.waitFor();
  // The view's own scroll area holds it all at this height (fullPage does not reach into an inner scroller).
  await page.setViewportSize({ width: 1280, height: 940 });
  await page.screenshot({ path: join(SHOTS, 'ui-filter-compare.png') });
  await page.setViewportSize({ width: 1280, height: 800 });
});
