// The uid column parsed as it is decoded (scanMetadata's uidWords, flat-parquet.ts decodeFlatUids)
// against the straightforward path (the column's text, checked and parsed by uidWordsColumn) on files
// written by DuckDB (plain v1 and v2 pages, dictionary-encoded uids, every codec, upper-case hex) and by
// hyparquet-writer (optional uid column, many small pages); rows that are not uids (null, short, bad
// digit) leave the parsed path and give checkedUids' error. Then keep tasks with and without the parsed
// path, and the expression operators whose loops were rewritten against plain JS on the same columns.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { parquetWrite, ByteWriter } from 'hyparquet-writer';
import { checkedUidColumn, numberColumn, pushUids, uidWordsColumn, UidWordList } from '../../src/core/filters/columns.ts';
import { compileExpression } from '../../src/core/filters/expr.ts';
import { runKeepTask } from '../../src/core/filters/keep.ts';
import { scanMetadata, type MetadataFile } from '../../src/core/filters/scan.ts';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { Rng } from '../../src/core/util/random.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-uidwords-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let db: DuckDBConnection;
before(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
});

const ROWS = 3000;
/** uid expression per variant; `bad` puts one non-uid at row 2100 (third row group of 1000). */
const uidSql = (kind: 'md5' | 'upper' | 'dict' | 'bad-digit' | 'short' | 'null') => ({
  md5: 'md5(i::VARCHAR)',
  upper: 'upper(md5(i::VARCHAR))',
  dict: "md5((i % 7)::VARCHAR)",
  'bad-digit': "CASE WHEN i = 2100 THEN 'g' || md5(i::VARCHAR)[2:] ELSE md5(i::VARCHAR) END",
  short: "CASE WHEN i = 2100 THEN md5(i::VARCHAR)[2:] ELSE md5(i::VARCHAR) END",
  null: 'CASE WHEN i = 2100 THEN NULL ELSE md5(i::VARCHAR) END',
})[kind];

async function duckFile(name: string, uid: string, opts: string): Promise<MetadataFile> {
  const path = join(tmp, name);
  await db.run(`COPY (SELECT ${uid} AS uid, (i * 7 % 1500)::BIGINT AS original_width, (i * 13 % 1500)::BIGINT AS original_height,
      CASE WHEN i % 11 = 0 THEN NULL ELSE ((i * 17 % 3000) / 10000.0)::FLOAT END AS clip_l14_similarity_score,
      (['a photo of a dog', 'dog', 'two words'])[1 + i % 3] AS text
    FROM range(${ROWS}) t(i)) TO '${path}' (FORMAT PARQUET, ${opts})`);
  return { name: path, source: new Uint8Array(readFileSync(path)) };
}

/** Every row group: the parsed path's words and the straightforward words (or both errors). */
async function compareUids(file: MetadataFile): Promise<{ parsed: number; groups: number }> {
  const pq = await ParquetFile.open(file.source as Uint8Array, file.name);
  let parsed = 0;
  let groups = 0;
  const plain = scanMetadata([file], ['uid']);
  for await (const chunk of scanMetadata([file], ['uid'], { uidWords: true })) {
    const other = (await plain.next()).value!;
    groups++;
    const col = chunk.column('uid');
    if ('kind' in col && col.kind === 'uid') parsed++;
    const table = await pq.read({ columns: ['uid'], rowStart: chunk.firstRow, rowEnd: chunk.firstRow + chunk.rows });
    const attempt = (f: () => Uint32Array) => { try { return f(); } catch (err) { return (err as Error).message; } };
    const want = attempt(() => uidWordsColumn(table.getChild('uid')!, file.name, chunk.firstRow));
    const got = attempt(() => {
      const list = new UidWordList();
      pushUids(list, checkedUidColumn(col, file.name, chunk.firstRow));
      return list.finish();
    });
    assert.deepEqual(got, want, `${file.name} rows ${chunk.firstRow}+`);
    assert.deepEqual(attempt(() => uidWordsColumn(other.column('uid'), file.name, chunk.firstRow)), want);
  }
  return { parsed, groups };
}

describe('uid words parsed as the pages are decoded', () => {
  for (const codec of ['uncompressed', 'snappy', 'gzip', 'zstd']) {
    test(`DuckDB v1 pages, ${codec}: every row group parsed, same words as uidWordsColumn`, async () => {
      const { parsed, groups } = await compareUids(await duckFile(`v1-${codec}.parquet`, uidSql('md5'), `COMPRESSION ${codec}, ROW_GROUP_SIZE 1000`));
      assert.ok(groups >= 2, `${groups} row groups`);
      assert.equal(parsed, groups);
    });
  }

  test('DuckDB v2 pages, upper-case hex, and a dictionary-encoded uid column: same words', async () => {
    for (const [name, uid, opts] of [
      ['v2.parquet', uidSql('md5'), 'COMPRESSION snappy, ROW_GROUP_SIZE 1000, PARQUET_VERSION V2'],
      ['upper.parquet', uidSql('upper'), 'COMPRESSION snappy, ROW_GROUP_SIZE 1000'],
      ['dict.parquet', uidSql('dict'), 'COMPRESSION snappy, ROW_GROUP_SIZE 1000'],
    ] as const) {
      const file = await duckFile(name, uid, opts);
      const pq = await ParquetFile.open(file.source as Uint8Array, name);
      if (name === 'dict.parquet') assert.ok(pq.metadata.row_groups[0]!.columns[0]!.meta_data!.encodings.some((e) => e.includes('DICTIONARY')), 'uid not dictionary-encoded');
      const { parsed, groups } = await compareUids(file);
      // DuckDB's v2 uid pages may use a delta encoding, which takes the general reader: still equal
      if (name !== 'v2.parquet') assert.equal(parsed, groups, name);
    }
  });

  test('a null, short or bad-digit uid: that row group leaves the parsed path and gives checkedUids\' error', async () => {
    for (const kind of ['bad-digit', 'short', 'null'] as const) {
      const file = await duckFile(`${kind}.parquet`, uidSql(kind), 'COMPRESSION snappy, ROW_GROUP_SIZE 1000');
      const { parsed, groups } = await compareUids(file);
      assert.equal(groups - parsed, 1, kind);
      await assert.rejects(runKeepTask([file], { kind: 'all' }), /row 2100: uid .* is not 32 hex digits/);
    }
  });

  test('hyparquet-writer: optional uid column, small pages: same words', async () => {
    const rng = new Rng(5);
    const n = 2500;
    const hex = () => Array.from({ length: 32 }, () => '0123456789abcdefABCDEF'[rng.int(22)]).join('');
    const columnData = [{ name: 'uid', data: Array.from({ length: n }, hex) }];
    const schema = [{ name: 'schema', num_children: 1 }, { name: 'uid', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }];
    for (const pageSize of [1_048_576, 1_500]) {
      const writer = new ByteWriter();
      parquetWrite({ writer, columnData, schema, rowGroupSize: 1000, pageSize } as unknown as Parameters<typeof parquetWrite>[0]);
      const path = join(tmp, `hyparquet-${pageSize}.parquet`);
      writeFileSync(path, writer.getBytes());
      const { parsed, groups } = await compareUids({ name: path, source: new Uint8Array(readFileSync(path)) });
      assert.equal(parsed, groups, `page size ${pageSize}`);
    }
  });

  test('keep tasks give the straightforward words (every row, a threshold, an expression, one reading uid)', async () => {
    const file = await duckFile('keep.parquet', uidSql('md5'), 'COMPRESSION snappy, ROW_GROUP_SIZE 1000');
    const pq = await ParquetFile.open(file.source as Uint8Array, file.name);
    const table = await pq.read({ columns: ['uid', 'original_width', 'original_height', 'clip_l14_similarity_score', 'text'] });
    const words = uidWordsColumn(table.getChild('uid')!, file.name);
    const w = numberColumn(table.getChild('original_width')!, file.name, 'w');
    const h = numberColumn(table.getChild('original_height')!, file.name, 'h');
    const clip = numberColumn(table.getChild('clip_l14_similarity_score')!, file.name, 'c');
    const text = table.getChild('text')!.toArray() as string[];
    const pick = (keep: (i: number) => boolean) => {
      const list = new UidWordList();
      for (let i = 0; i < ROWS; i++) if (keep(i)) list.push(words, i);
      return list.finish();
    };
    assert.deepEqual((await runKeepTask([file], { kind: 'all' })).words, words);
    assert.deepEqual((await runKeepTask([file], { kind: 'atLeast', column: 'clip_l14_similarity_score', threshold: 0.25 })).words, pick((i) => clip[i]! >= Math.fround(0.25)));
    const where = 'min(original_width, original_height) >= 200 and clip_l14_similarity_score >= 0.25 and words(text) > 2';
    const expected = pick((i) => Math.min(w[i]!, h[i]!) >= 200 && clip[i]! >= Math.fround(0.25) && text[i]!.split(' ').length > 2);
    assert.ok(uidCountOf(expected) > 100);
    assert.deepEqual((await runKeepTask([file], { kind: 'where', where })).words, expected);
    // an expression that reads the uid's text scans it as text
    assert.deepEqual((await runKeepTask([file], { kind: 'where', where: "uid ~ '^[0-7]' and original_width > 100" })).words,
      pick((i) => /^[0-7]/.test(table.getChild('uid')!.get(i) as string) && w[i]! > 100));
  });

  test('not, unary minus, abs, and min/max of two and three columns against plain JS', async () => {
    const file = await duckFile('ops.parquet', uidSql('md5'), 'COMPRESSION snappy, ROW_GROUP_SIZE 1000');
    const pq = await ParquetFile.open(file.source as Uint8Array, file.name);
    const fields = pq.schema.fields;
    const cases: [string, (w: number, h: number, c: number) => number][] = [
      ['min(original_width, original_height)', (w, h) => Math.min(w, h)],
      ['max(original_width, original_height, clip_l14_similarity_score * 5000)', (w, h, c) => Math.max(w, h, c * 5000)],
      ['min(clip_l14_similarity_score, original_width, original_height)', (w, h, c) => Math.min(c, w, h)],
      ['-original_width + abs(clip_l14_similarity_score - 0.2)', (w, _h, c) => -w + Math.abs(c - Math.fround(0.2))], // a float32 column's literal is float32 (numpy),
      ['not (original_width > original_height)', (w, h) => (w > h ? 0 : 1)],
    ];
    for await (const chunk of scanMetadata([file], ['original_width', 'original_height', 'clip_l14_similarity_score'])) {
      const w = numberColumn(chunk.column('original_width'), file.name, 'w');
      const h = numberColumn(chunk.column('original_height'), file.name, 'h');
      const c = numberColumn(chunk.column('clip_l14_similarity_score'), file.name, 'c');
      for (const [src, js] of cases) {
        const got = await compileExpression(src, fields).evaluate(chunk) as Float64Array | Uint8Array;
        assert.deepEqual([...got], Array.from({ length: chunk.rows }, (_, i) => js(w[i]!, h[i]!, c[i]!)), src);
      }
    }
  });
});

const uidCountOf = (words: Uint32Array) => words.length / 4;
