// The filters' fast column path (flat-parquet.ts through scanMetadata) against ParquetFile.read on the
// same row groups: files written by DuckDB (every codec, v1 and v2 pages, plain and dictionary, nulls,
// every integer width, int64 beyond 2^53, NaN, non-ASCII and damaged UTF-8) and by hyparquet-writer
// (v2 pages, dictionaries, many small pages); then the byte-level Python str rules, the uid sort, the
// WebAssembly snappy decoder and damaged files.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { parquetWrite, ByteWriter } from 'hyparquet-writer';
import {
  numberColumn, perString, pyLenAt, pyWordCountAt, stringColumn, stringsOf, textAt, uidWordsColumn, type ColumnData, type FlatStrings,
} from '../../src/core/filters/columns.ts';
import { decodeSnappyChecked, decodeSnappyWasm } from '../../src/core/filters/flat-parquet.ts';
import { scanMetadata, type MetadataFile } from '../../src/core/filters/scan.ts';
import { sortUids } from '../../src/core/filters/sort.ts';
import { pyLen, pyWordCount } from '../../src/core/filters/pystr.ts';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { sortUidWords } from '../../src/core/formats/uid.ts';
import { Rng } from '../../src/core/util/random.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-flat-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let db: DuckDBConnection;
before(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
});

const isFast = (c: ColumnData) => 'kind' in c;

// strings: ASCII, every kind of Python whitespace, non-BMP, a leading BOM, empty, null
const TEXTS = ['a photo of a dog', '  two\u3000words ', 'x\u0085y\u00a0z', '\u2028line\u2029sep', 'emoji 😀 here', '\ufeffbom first',
  'tab\tand\nnewline', '', 'über café', '\u001c\u001dsep', 'zero\u200bwidth', 'ab\u180ecd', 'one'];
const DUCK_ROWS = 2500;
const duckSql = (opts: string, file: string) => `COPY (SELECT
    md5(i::VARCHAR) AS uid,
    CASE WHEN i % 11 = 0 THEN NULL ELSE (${`[${TEXTS.map((t) => `'${t}'`).join(', ')}]`})[1 + i % ${TEXTS.length}] || repeat('w ', i % 5) END AS text,
    CASE WHEN i % 13 = 0 THEN NULL ELSE (['red', 'green', 'blue'])[1 + i % 3] END AS low,
    (i % 200 - 100)::TINYINT AS i8, (i % 250)::UTINYINT AS u8, (i * 7 % 60000 - 30000)::SMALLINT AS i16, (i * 7 % 65000)::USMALLINT AS u16,
    CASE WHEN i % 7 = 0 THEN NULL ELSE (i * 104729 - 50000000)::INTEGER END AS i32, (i * 2654435761 % 4294967295)::UINTEGER AS u32,
    CASE WHEN i % 5 = 0 THEN NULL ELSE (i::BIGINT * 3674946301 * 1000003 - 4611686018427387904) END AS i64,
    (18446744073709551615 - i * 1000000007)::UBIGINT AS u64,
    CASE WHEN i % 17 = 0 THEN 'NaN'::FLOAT WHEN i % 19 = 0 THEN NULL ELSE (i / 7.0)::FLOAT END AS f32,
    CASE WHEN i % 23 = 0 THEN NULL ELSE i / 3.0 END AS f64,
    (1000 + i % 3)::BIGINT AS dict64,
    CASE WHEN i % 3 = 0 THEN NULL ELSE [i, i + 1] END AS lst
  FROM range(${DUCK_ROWS}) t(i)) TO '${file}' (FORMAT PARQUET, ${opts})`;

const COLUMNS = ['uid', 'text', 'low', 'i8', 'u8', 'i16', 'u16', 'i32', 'u32', 'i64', 'u64', 'f32', 'f64', 'dict64', 'lst'];
const STRING_COLUMNS = new Set(['uid', 'text', 'low']);

/** Every requested column of every row group, fast path vs ParquetFile.read; returns how many chunks were fast. */
async function compareFile(path: string, columns = COLUMNS): Promise<{ fast: number; flat: number; entries: number }> {
  const bytes = new Uint8Array(readFileSync(path));
  const file: MetadataFile = { name: path, source: bytes };
  const pq = await ParquetFile.open(bytes, path);
  let fast = 0;
  let flat = 0;
  let entries = 0;
  for await (const chunk of scanMetadata([file], columns)) {
    const table = await pq.read({ columns, rowStart: chunk.firstRow, rowEnd: chunk.firstRow + chunk.rows });
    for (const name of columns) {
      const got = chunk.column(name);
      const want = table.getChild(name)!;
      if (name === 'lst') continue;
      flat++;
      if (isFast(got)) fast++;
      const where = `${path} ${name} rows ${chunk.firstRow}+`;
      if (STRING_COLUMNS.has(name)) {
        assert.deepEqual(stringColumn(got, path, name), stringColumn(want, path, name), where);
        const s = stringsOf(got, path, name);
        if (s.entry) entries++;
        const words = perString(s, pyWordCountAt);
        const lens = perString(s, pyLenAt);
        for (let i = 0; i < s.length; i++) {
          const t = textAt(s, i);
          assert.equal(words[i], t === null ? NaN : pyWordCount(t), `${where} words (per entry) row ${i}`);
          assert.equal(lens[i], t === null ? NaN : pyLen(t), `${where} len (per entry) row ${i}`);
          assert.equal(pyLenAt(s, i), t === null ? NaN : pyLen(t), `${where} len row ${i}`);
          assert.equal(pyWordCountAt(s, i), t === null ? NaN : pyWordCount(t), `${where} words row ${i}`);
        }
      } else {
        assert.deepEqual([...numberColumn(got, path, name)], [...numberColumn(want, path, name)], where);
      }
    }
    assert.deepEqual(uidWordsColumn(chunk.column('uid'), path, chunk.firstRow), uidWordsColumn(table.getChild('uid')!, path, chunk.firstRow));
  }
  return { fast, flat, entries };
}

describe('fast columns equal ParquetFile.read', () => {
  for (const codec of ['snappy', 'zstd', 'gzip', 'uncompressed']) {
    test(`DuckDB v1 pages, ${codec}: every flat column on the fast path, same values`, async () => {
      const path = join(tmp, `duck-v1-${codec}.parquet`);
      await db.run(duckSql(`COMPRESSION ${codec}, ROW_GROUP_SIZE 1000`, path));
      const { fast, flat, entries } = await compareFile(path);
      assert.equal(fast, flat, `${flat - fast} of ${flat} chunks left the fast path`);
      assert.ok(entries > 0, 'no dictionary-encoded string chunk');
    });
  }
  test('DuckDB v2 pages: same values (delta encodings take the general reader)', async () => {
    const path = join(tmp, 'duck-v2.parquet');
    await db.run(duckSql('COMPRESSION snappy, ROW_GROUP_SIZE 1000, PARQUET_VERSION V2', path));
    await compareFile(path);
  });

  test('hyparquet-writer: v2 pages, dictionaries and many small pages, same values on the fast path', async () => {
    const rng = new Rng(3);
    const n = 3000;
    const hex = () => Array.from({ length: 32 }, () => rng.int(16).toString(16)).join('');
    const columnData = [
      { name: 'uid', data: Array.from({ length: n }, hex) },
      { name: 'text', data: Array.from({ length: n }, (_, i) => (i % 9 === 0 ? null : `${TEXTS[i % TEXTS.length]} ${i}`)) },
      { name: 'low', data: Array.from({ length: n }, (_, i) => (i % 4 === 0 ? null : ['a', 'b c', 'd e f'][i % 3]!)) },
      { name: 'i64', data: Array.from({ length: n }, (_, i) => (i % 6 === 0 ? null : BigInt(i) * 2999999999999999n - 3n)) },
      { name: 'f32', data: Array.from({ length: n }, (_, i) => (i % 8 === 0 ? null : i / 9)) },
      { name: 'dict64', data: Array.from({ length: n }, (_, i) => BigInt(i % 5)) },
    ];
    const schema = [
      { name: 'schema', num_children: columnData.length },
      { name: 'uid', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'low', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'i64', type: 'INT64', repetition_type: 'OPTIONAL' },
      { name: 'f32', type: 'FLOAT', repetition_type: 'OPTIONAL' },
      { name: 'dict64', type: 'INT64', repetition_type: 'REQUIRED' },
    ];
    for (const pageSize of [1_048_576, 2_000]) {
      const writer = new ByteWriter();
      parquetWrite({ writer, columnData, schema, rowGroupSize: 1200, pageSize } as unknown as Parameters<typeof parquetWrite>[0]);
      const path = join(tmp, `hyparquet-${pageSize}.parquet`);
      writeFileSync(path, writer.getBytes());
      const cols = columnData.map((c) => c.name);
      const { fast, flat } = await compareFile(path, cols);
      assert.equal(fast, flat, `page size ${pageSize}: ${flat - fast} of ${flat} chunks left the fast path`);
    }
  });

  test('damaged pages leave the fast path and give the general reader\'s error', async () => {
    const path = join(tmp, 'duck-damaged.parquet');
    await db.run(duckSql('COMPRESSION snappy, ROW_GROUP_SIZE 1000', path));
    const good = new Uint8Array(readFileSync(path));
    const pq = await ParquetFile.open(good, path);
    const meta = pq.metadata.row_groups[1]!.columns[1]!.meta_data!; // text, second row group
    let sawError = 0;
    for (const [offset, delta] of [[0, 1], [2, 0x55], [3, 7], [5, 0xff], [8, 1], [13, 0x55], [24, 1], [40, 7], [90, 0x55]] as const) {
      const at = Number(meta.data_page_offset) + offset;
      const bad = good.slice();
      bad[at] = (bad[at]! + delta) & 0xff;
      let general: unknown;
      try {
        const p = await ParquetFile.open(bad, path);
        for (const g of p.rowGroups) await p.read({ columns: ['uid', 'text'], rowStart: g.start, rowEnd: g.start + g.rows });
      } catch (err) {
        general = err;
      }
      let ours: unknown;
      const texts: (string | null)[] = [];
      try {
        for await (const c of scanMetadata([{ name: path, source: bad }], ['uid', 'text'])) texts.push(...stringColumn(c.column('text'), path, 'text'));
      } catch (err) {
        ours = err;
      }
      assert.equal((ours as Error | undefined)?.message, (general as Error | undefined)?.message);
      if (general) sawError++;
      else {
        // the damage still decodes: then both readers give the same strings
        const p = await ParquetFile.open(bad, path);
        const all: (string | null)[] = [];
        for (const g of p.rowGroups) all.push(...stringColumn((await p.read({ columns: ['text'], rowStart: g.start, rowEnd: g.start + g.rows })).getChild('text')!, path, 'text'));
        assert.deepEqual(texts, all);
      }
    }
    assert.ok(sawError > 0, 'no damage was noticed');
  });
});

describe('Python str rules on UTF-8 bytes', () => {
  test('len() and len(split()) from bytes equal pyLen/pyWordCount of the decoded text, damaged UTF-8 included', () => {
    const enc = new TextEncoder();
    const values: Uint8Array[] = TEXTS.map((t) => enc.encode(t));
    // damaged or unusual sequences: lone continuation, overlong, surrogate, truncated, 5-byte lead, BOM twice
    for (const bytes of [[0x61, 0x80, 0x20, 0x62], [0xc0, 0xaf, 0x20, 0x41], [0xed, 0xa0, 0x80, 0x20, 0x7a], [0x61, 0x20, 0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80],
      [0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x20, 0x61], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x80, 0xa8], [0xc2, 0x85, 0x61, 0xc2, 0xa0, 0x62]]) values.push(new Uint8Array(bytes));
    const rng = new Rng(9);
    for (let k = 0; k < 400; k++) values.push(rng.bytes(new Uint8Array(1 + rng.int(12))).map((b) => (b % 3 === 0 ? 0x20 : b)));
    const total = values.reduce((n, v) => n + v.length, 0);
    const s: FlatStrings = { kind: 'str', typeName: 'Utf8', length: values.length, bytes: new Uint8Array(total), start: new Int32Array(values.length), end: new Int32Array(values.length), valid: undefined };
    let at = 0;
    values.forEach((v, i) => {
      s.bytes.set(v, at);
      s.start[i] = at;
      at += v.length;
      s.end[i] = at;
    });
    for (let i = 0; i < values.length; i++) {
      const t = textAt(s, i)!;
      assert.equal(pyLenAt(s, i), pyLen(t), `len of ${JSON.stringify([...values[i]!])}`);
      assert.equal(pyWordCountAt(s, i), pyWordCount(t), `words of ${JSON.stringify([...values[i]!])}`);
    }
  });
});

describe('uid sort', () => {
  test('sortUids gives sortUidWords\' order on random, duplicate-heavy and shared-prefix uids', () => {
    const rng = new Rng(11);
    for (const [n, kind] of [[0, 'random'], [1, 'random'], [31, 'random'], [1000, 'random'], [70_000, 'random'], [20_000, 'duplicates'], [20_000, 'prefix'], [5_000, 'sorted']] as const) {
      const words = new Uint32Array(n * 4);
      for (let i = 0; i < words.length; i++) {
        words[i] = kind === 'duplicates' ? [0, 0xffffffff, 0x80000000][rng.int(3)]! : kind === 'prefix' && i % 4 !== 2 ? 0x12345678 + rng.int(2) : rng.int(0x10000) * 0x10000 + rng.int(0x10000);
      }
      if (kind === 'sorted') sortUidWords(words);
      assert.deepEqual(sortUids(words.slice()), sortUidWords(words.slice()), `${n} ${kind}`);
    }
  });
});

describe('snappy', () => {
  test('the WebAssembly decoder and the checked JS decoder agree on real and damaged pages', async () => {
    const path = join(tmp, 'duck-snappy.parquet');
    await db.run(duckSql('COMPRESSION snappy, ROW_GROUP_SIZE 1000', path));
    const bytes = new Uint8Array(readFileSync(path));
    const pq = await ParquetFile.open(bytes, path);
    const meta = pq.metadata.row_groups[0]!.columns[0]!.meta_data!;
    // the uid chunk's single page: header bytes skipped by finding the snappy stream of the declared size
    const chunk = bytes.subarray(Number(meta.data_page_offset), Number(meta.data_page_offset) + Number(meta.total_compressed_size));
    const { parquetHeader } = await import('hyparquet/src/column.js');
    const reader = { view: new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength), offset: 0 };
    const header = parquetHeader(reader) as { compressed_page_size: number; uncompressed_page_size: number };
    const page = chunk.subarray(reader.offset, reader.offset + header.compressed_page_size);
    const size = header.uncompressed_page_size;
    const run = (fn: typeof decodeSnappyChecked, input: Uint8Array) => {
      const out = new Uint8Array(size);
      try {
        fn(input, out, 0, size);
        return out;
      } catch {
        return 'refused';
      }
    };
    assert.deepEqual(run(decodeSnappyWasm, page), run(decodeSnappyChecked, page));
    assert.notEqual(run(decodeSnappyChecked, page), 'refused');
    const rng = new Rng(5);
    let refused = 0;
    for (let t = 0; t < 300; t++) {
      const bad = page.slice();
      for (let j = 0; j < 1 + rng.int(3); j++) bad[1 + rng.int(bad.length - 1)] = rng.int(256);
      const a = run(decodeSnappyChecked, bad);
      assert.deepEqual(run(decodeSnappyWasm, bad), a);
      if (a === 'refused') refused++;
    }
    assert.ok(refused > 0);
  });
});

describe('uid checks', () => {
  test('checkedUids + pushUids give uidWordsColumn\'s words, and its error for the first bad row', async () => {
    const { checkedUids, pushUids, UidWordList } = await import('../../src/core/filters/columns.ts');
    const enc = new TextEncoder();
    const make = (uids: (string | null)[]): FlatStrings => {
      const bytes = enc.encode(uids.map((u) => u ?? '').join(''));
      const start = new Int32Array(uids.length);
      const end = new Int32Array(uids.length);
      let at = 0;
      uids.forEach((u, i) => {
        start[i] = at;
        at += enc.encode(u ?? '').length;
        end[i] = at;
      });
      const valid = uids.some((u) => u === null) ? Uint8Array.from(uids, (u) => (u === null ? 0 : 1)) : undefined;
      return { kind: 'str', typeName: 'Utf8', length: uids.length, bytes, start, end, valid };
    };
    const good = ['0123456789abcdefABCDEF0123456789', 'ffffffffffffffffffffffffffffffff', '00000000000000000000000000000000', 'deadbeef00000000cafebabe11111111'];
    const s = make(good);
    const list = new UidWordList();
    pushUids(list, checkedUids(s, 'f', 10), Uint8Array.from([1, 0, 1, 1]));
    const all = uidWordsColumn(s, 'f', 10);
    assert.deepEqual(list.finish(), Uint32Array.from([...all.subarray(0, 4), ...all.subarray(8, 16)]));
    for (const bad of ['0123456789abcdef0123456789abcdeg', '0123456789abcdef0123456789abcde', null, '0123456789abcdef0123456789abcdef0', 'é123456789abcdef0123456789abcde']) {
      const col = make([...good, bad, 'x']);
      const want = (() => { try { uidWordsColumn(col, 'f.parquet', 5); } catch (err) { return (err as Error).message; } return 'no error'; })();
      assert.match(want, /row 9: uid .* is not 32 hex digits/);
      assert.throws(() => checkedUids(col, 'f.parquet', 5), (err: Error) => err.message === want);
    }
  });
});
