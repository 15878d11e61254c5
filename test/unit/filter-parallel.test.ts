// The parallel runner (server/filters/parallel.ts) gives the bytes of the single-thread run: baselines,
// the fraction rule over the whole pool and recipe expressions over several DuckDB-written files, and
// the error of the first damaged file in file order.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { runBaseline, subsetBytes, type BaselineSpec } from '../../src/core/filters/baselines.ts';
import { runRecipe } from '../../src/core/filters/recipe.ts';
import { listMetadataFiles } from '../../server/filters/metadata-dir.ts';
import { parallelRunner, splitRanges, type ParallelRunner } from '../../server/filters/parallel.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-par-'));
const meta = join(tmp, 'metadata');
let runner: ParallelRunner;
before(async () => {
  mkdirSync(meta);
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  for (let f = 0; f < 5; f++) {
    await db.run(`COPY (SELECT md5((i * 7 % 1500)::VARCHAR) AS uid, (['a dog on a mat', 'cat', 'two words here', NULL])[1 + i % 4] AS text,
      (64 + hash(i) % 900)::BIGINT AS original_width, (64 + hash(i * 3) % 900)::BIGINT AS original_height,
      CASE WHEN i % 31 = 0 THEN NULL ELSE ((hash(i * 5) % 1000) / 2000.0)::FLOAT END AS clip_b32_similarity_score,
      ((hash(i * 11) % 1000) / 2500.0)::FLOAT AS clip_l14_similarity_score
      FROM range(${f * 1000}, ${f * 1000 + 700 + f * 50}) t(i)) TO '${join(meta, `${f}.parquet`)}' (FORMAT PARQUET, ROW_GROUP_SIZE 256)`);
  }
  runner = await parallelRunner((await listMetadataFiles(meta)).files.map((f) => f.name), 3);
});
after(async () => {
  await runner?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function both<T>(fn: (opts: { runner?: ParallelRunner['run'] }) => Promise<T>): Promise<[T | Error, T | Error]> {
  const one = await fn({}).catch((err: Error) => err);
  const many = await fn({ runner: runner.run }).catch((err: Error) => err);
  return [one, many];
}

describe('parallel runner', () => {
  test('ranges: consecutive, balanced by bytes, never empty', () => {
    assert.deepEqual(splitRanges([1, 1, 1, 1], 2), [[0, 2], [2, 4]]);
    assert.deepEqual(splitRanges([5, 1, 1, 1, 1, 1], 2), [[0, 1], [1, 6]]);
    assert.deepEqual(splitRanges([1], 4), [[0, 1]]);
    assert.deepEqual(splitRanges([1, 1, 1], 3), [[0, 1], [1, 2], [2, 3]]);
  });

  for (const spec of [{ name: 'no_filter' }, { name: 'clip_score', arch: 'b32', threshold: 0.25 }, { name: 'clip_score', arch: 'l14', fraction: 0.3 }, { name: 'clip_score', arch: 'b32', fraction: 0.97 }] as BaselineSpec[]) {
    test(`${JSON.stringify(spec)}: same bytes and threshold as one thread`, async () => {
      const { files, close } = await listMetadataFiles(meta);
      const [one, many] = await both((o) => runBaseline(files, spec, o));
      await close();
      assert.ok(!(one instanceof Error), String(one));
      assert.ok(!(many instanceof Error), String(many));
      assert.deepEqual(subsetBytes(many as Awaited<ReturnType<typeof runBaseline>>), subsetBytes(one as Awaited<ReturnType<typeof runBaseline>>));
      assert.equal((many as { threshold?: number }).threshold, (one as { threshold?: number }).threshold);
      assert.equal((many as { rows: number }).rows, 700 + 750 + 800 + 850 + 900);
    });
  }

  test('a recipe expression: same uids and record', async () => {
    const { files, close } = await listMetadataFiles(meta);
    const recipe = { recipe: 1 as const, subsets: { a: { where: 'min(original_width, original_height) >= 300 and words(text) > 2' }, b: { baseline: 'clip_score' as const, arch: 'b32' as const, threshold: 0.2 } }, result: 'a | b' };
    const [one, many] = await both((o) => runRecipe(files, recipe, o));
    await close();
    assert.deepEqual((many as { words: Uint32Array }).words, (one as { words: Uint32Array }).words);
    assert.deepEqual((many as { record: unknown }).record, (one as { record: unknown }).record);
  });

  test('a where over files of mixed float widths compiles against the first file, as one pass does', async () => {
    const dir = join(tmp, 'mixed');
    mkdirSync(dir);
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    for (const [f, type] of [[0, 'FLOAT'], [1, 'DOUBLE'], [2, 'DOUBLE']] as const) {
      // 0.29 and float32(0.29) = 0.28999999165534973…: a float32 comparison keeps both, a float64 one only the first
      await db.run(`COPY (SELECT md5((i + ${f * 100})::VARCHAR) AS uid, (CASE i % 3 WHEN 0 THEN 0.29 WHEN 1 THEN 0.28999999165534973144531250 ELSE 0.1 END)::${type} AS clip_b32_similarity_score
        FROM range(90) t(i)) TO '${join(dir, `${f}.parquet`)}' (FORMAT PARQUET)`);
    }
    const { files, close } = await listMetadataFiles(dir);
    const mixed = await parallelRunner(files.map((f) => f.name), 3);
    try {
      const recipe = { recipe: 1 as const, subsets: { a: { where: 'clip_b32_similarity_score >= 0.29' } }, result: 'a' };
      const one = await runRecipe(files, recipe);
      const many = await runRecipe(files, recipe, { runner: mixed.run });
      assert.equal(one.record.result.uids, 60 * 3); // every file compared in float32, as the first file's type says
      assert.deepEqual(many.words, one.words);
    } finally {
      await mixed.close();
      await close();
    }
  });

  test('damaged files: the error of the first one in file order, as one thread gives', async () => {
    for (const f of ['3.parquet', '1.parquet']) {
      const path = join(meta, f);
      const good = readFileSync(path);
      const bad = Buffer.from(good);
      bad.write('XXXX', bad.length - 4); // the closing magic
      writeFileSync(path, bad);
    }
    const { files, close } = await listMetadataFiles(meta);
    const [one, many] = await both((o) => runBaseline(files, { name: 'no_filter' }, o));
    await close();
    assert.ok(one instanceof Error && many instanceof Error);
    assert.match(one.message, /1\.parquet/);
    assert.equal(many.message, one.message);
    assert.equal(many.name, one.name);
  });
});
