// Expressions, set algebra, top-k and recipes on the metadata fixture, checked against the numpy
// reference's subsets (test/fixtures/filters/expected) and against set algebra done independently.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Command } from 'commander';
import { compileExpression } from '../../src/core/filters/expr.ts';
import { parseRecipe, runRecipe, type Recipe } from '../../src/core/filters/recipe.ts';
import { metadataSchema } from '../../src/core/filters/scan.ts';
import { decodeSubset, encodeSubsetWords } from '../../src/core/formats/uid.ts';
import { tableDetector } from '../../src/core/text/langid.ts';
import { registerFilter } from '../../server/cli/commands/filter.ts';
import { listMetadataFiles } from '../../server/filters/metadata-dir.ts';

const FIX = join(import.meta.dirname, '../fixtures/filters');
const META = join(FIX, 'metadata');
const langs = JSON.parse(readFileSync(join(FIX, 'langs.json'), 'utf8')) as { detector: string; labels: Record<string, string> };
const detector = tableDetector('fasttext-lid.176 (recorded labels)', langs.detector, new Map(Object.entries(langs.labels)));
const expected = (name: string) => new Uint8Array(readFileSync(join(FIX, 'expected', name)));
const tmp = mkdtempSync(join(tmpdir(), 'dcw-recipe-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function run(recipe: Recipe): Promise<Uint8Array> {
  const { files, close } = await listMetadataFiles(META);
  try {
    return encodeSubsetWords((await runRecipe(files, recipe, { detector })).words, { sorted: true });
  } finally {
    await close();
  }
}

const BASIC = "lang(text) == 'en' and words(text) > 2 and len(text) > 5 and min(original_width, original_height) >= 200 and max(original_width, original_height) / min(original_width, original_height) <= 3.0";

describe('expressions reproduce the official rules', () => {
  test('basic_filter written as an expression gives the reference bytes', async () => {
    assert.deepEqual(await run({ recipe: 1, subsets: { b: { where: BASIC } }, result: 'b' }), expected('basic_filter.npy'));
  });
  test('a float32 score column against a literal compares in float32 (keeps float32(0.29))', async () => {
    assert.deepEqual(await run({ recipe: 1, subsets: { c: { where: 'clip_b32_similarity_score >= 0.29' } }, result: 'c' }), expected('clip_b32_t0.29.npy'));
  });
  test('top fraction follows the official rule (ties and nulls included)', async () => {
    assert.deepEqual(await run({ recipe: 1, subsets: { t: { top: 'clip_l14_similarity_score', fraction: 0.3 } }, result: 't' }), expected('clip_l14_f0.3.npy'));
    assert.deepEqual(await run({ recipe: 1, subsets: { t: { top: 'clip_b32_similarity_score', fraction: 0.5 } }, result: 't' }), expected('clip_b32_f0.5.npy'));
  });
  test('top k keeps k plus ties', async () => {
    const got = decodeSubset(await run({ recipe: 1, subsets: { t: { top: 'clip_b32_similarity_score', k: 1 } }, result: 't' }), 'x');
    assert.deepEqual(got, decodeSubset(expected('clip_b32_f0.npy'), 'x')); // the single best score
  });
});

describe('set algebra', () => {
  const basic = new Set(decodeSubset(expected('basic_filter.npy'), 'basic'));
  const clip = new Set(decodeSubset(expected('clip_l14_t0.28.npy'), 'clip'));
  const recipe = (result: string): Recipe => ({
    recipe: 1,
    subsets: { basic: { baseline: 'basic_filter' }, clip: { baseline: 'clip_score', arch: 'l14', threshold: 0.28 } },
    result,
  });
  for (const [expr, want] of [
    ['basic & clip', [...basic].filter((u) => clip.has(u))],
    ['basic ∪ clip', [...new Set([...basic, ...clip])]],
    ['clip - basic', [...clip].filter((u) => !basic.has(u))],
    ['(clip − basic) | (basic ∩ clip)', [...clip]],
  ] as const) {
    test(expr, async () => {
      assert.deepEqual(decodeSubset(await run(recipe(expr)), 'got'), [...want].sort());
    });
  }
});

describe('errors are one line and point at the problem', () => {
  test('expression errors name the position and the column', async () => {
    const pq = (await listMetadataFiles(META));
    const fields = (await metadataSchema(pq.files))!.schema.fields;
    await pq.close();
    const msg = (src: string) => {
      try {
        compileExpression(src, fields, 'bool');
      } catch (err) {
        return (err as Error).message;
      }
      return 'no error';
    };
    assert.match(msg('widht > 3'), /at character 1: unknown column "widht" \(columns: uid, url, text,/);
    assert.match(msg('original_width > "a"'), /at character 18: ">" needs a number, got a string/);
    assert.match(msg('text ~ "("'), /at character 8: bad regular expression/);
    assert.match(msg('len(face_bboxes) > 0 and'), /unexpected end of expression/);
    assert.match(msg('clip_b32_similarity_score'), /a filter needs a condition, got a number/);
    assert.match(msg('face_bboxes > 1'), /needs a number, got a list/);
    for (const src of ['widht > 3', 'text ~ "("']) assert.ok(!msg(src).includes('\n'));
  });
  test('recipe structure errors', () => {
    const bad = (r: unknown) => () => parseRecipe(JSON.stringify(r), 'r.json');
    assert.throws(bad({ recipe: 1, subsets: { a: { where: 'true' } }, result: 'a & b' }), /r.json: "result" "a & b": no subset named "b"/);
    assert.throws(bad({ recipe: 1, subsets: { a: { baseline: 'clip_score', arch: 'l14' } }, result: 'a' }), /subsets.a: clip_score needs exactly one of/);
    assert.throws(bad({ recipe: 1, subsets: { a: { top: 'x', k: 0 } }, result: 'a' }), /subsets.a.k: must be a positive integer/);
    assert.throws(bad({ recipe: 1, subsets: { a: { where: 'true', extra: 1 } }, result: 'a' }), /unknown key "extra"/);
  });
  // is_null() is pandas' isnull(): a NaN score counts as null
  test('regex, is_null and string functions evaluate per row', async () => {
    const got = decodeSubset(await run({ recipe: 1, subsets: { a: { where: 'text ~ "(?i)^a " and not is_null(clip_b32_similarity_score) and contains(lower(text), "photo")' } }, result: 'a' }), 'x');
    const rows = JSON.parse(readFileSync(join(FIX, 'rows.json'), 'utf8').replace(/:NaN/g, ':"NaN"')) as { uid: string; text: string; b32: number | string | null }[];
    const want = rows.filter((r) => /^a /i.test(r.text) && r.b32 !== null && r.b32 !== 'NaN' && r.text.toLowerCase().includes('photo')).map((r) => r.uid.toLowerCase()).sort();
    assert.ok(want.length > 0);
    assert.deepEqual(got, want);
  });
});

describe('dcw filter --recipe', () => {
  const cli = async (...args: string[]) => {
    const program = new Command().exitOverride();
    registerFilter(program);
    await program.parseAsync(['node', 'dcw', 'filter', ...args]);
  };
  test('same recipe + same pool → same bytes, with a record of what decided the result', async () => {
    const recipeFile = join(tmp, 'r.json');
    writeFileSync(recipeFile, JSON.stringify({ recipe: 1, subsets: { big: { where: 'min(original_width, original_height) >= 300' }, top: { top: 'clip_b32_similarity_score', fraction: 0.4 } }, result: 'big & top' }));
    const out1 = join(tmp, 'a.npy');
    const out2 = join(tmp, 'b.npy');
    await cli('--metadata_dir', META, '--save_path', out1, '--recipe', recipeFile);
    await cli('--metadata_dir', META, '--save_path', out2, '--recipe', recipeFile);
    assert.deepEqual(readFileSync(out1), readFileSync(out2));
    assert.deepEqual(readFileSync(`${out1}.recipe.json`), readFileSync(`${out2}.recipe.json`));
    const record = JSON.parse(readFileSync(`${out1}.recipe.json`, 'utf8'));
    assert.equal(record.pool.files.length, 2);
    assert.match(record.pool.digest, /^[0-9a-f]{64}$/);
    assert.equal(record.detector, null);
    assert.equal(typeof record.subsets.top.threshold, 'number');
    assert.equal(record.result.uids, (readFileSync(out1).length - 128) / 16);
  });
  test('an error writes nothing', async () => {
    const recipeFile = join(tmp, 'bad.json');
    writeFileSync(recipeFile, JSON.stringify({ recipe: 1, subsets: { a: { where: 'original_widht > 3' } }, result: 'a' }));
    const out = join(tmp, 'never.npy');
    await assert.rejects(cli('--metadata_dir', META, '--save_path', out, '--recipe', recipeFile), /subsets.a.where: expression "original_widht > 3": at character 1: unknown column "original_widht"/);
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(`${out}.recipe.json`), false);
    await assert.rejects(cli('--metadata_dir', META, '--save_path', out, '--name', 'clip_score', '--arch', 'l14'), /exactly one of --threshold and --fraction/);
    assert.equal(existsSync(out), false);
  });
  test('a baseline through the CLI writes the reference bytes', async () => {
    const out = join(tmp, 'clip.npy');
    await cli('--metadata_dir', META, '--save_path', out, '--name', 'clip_score', '--arch', 'l14', '--fraction', '0.3');
    assert.deepEqual(new Uint8Array(readFileSync(out)), expected('clip_l14_f0.3.npy'));
  });
});
