// Parquet → Arrow on files DuckDB wrote, and Arrow → parquet checked by reading it back with DuckDB.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { asyncBufferFromFile } from 'hyparquet';
import {
  Binary, Bool, DateDay, Field, Float32, Float64, Int8, Int16, Int32, Int64, List, Schema, Table, TimestampMicrosecond,
  Type, Uint8, Uint64, Utf8, tableFromArrays, vectorFromArray,
} from 'apache-arrow';
import { FormatError } from '../../src/core/formats/errors.ts';
import {
  COMMONPOOL_SCHEMA, ParquetFile, parquetSchemaSummary, readCommonPoolMetadata, readParquet, writeParquet,
} from '../../src/core/formats/parquet.ts';
import { PARQUET_FIXTURES, duckJson, expectedRows, parquetFixture, tableJson } from '../fixtures/parquet/helpers.ts';

const SNAPPY = 'commonpool-50.snappy.parquet';
const expected = expectedRows('commonpool-50.snappy.expected.json');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-parquet-'));
let duck: DuckDBConnection | undefined;
after(() => {
  duck?.closeSync();
  rmSync(tmp, { recursive: true, force: true });
});

async function duckdb(): Promise<DuckDBConnection> {
  duck ??= await (await DuckDBInstance.create(':memory:')).connect();
  return duck;
}

/** Writes `bytes` to a temp file and returns DuckDB's view of it: column types and rows. */
async function duckRead(name: string, bytes: Uint8Array) {
  const path = join(tmp, name);
  writeFileSync(path, bytes);
  const db = await duckdb();
  const described = await db.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${path}')`);
  const rows = await db.runAndReadAll(`SELECT * FROM read_parquet('${path}')`);
  const schema = await db.runAndReadAll(`SELECT name, type, converted_type, logical_type, repetition_type FROM parquet_schema('${path}')`);
  return {
    types: Object.fromEntries(described.getRowObjects().map((r) => [r.column_name as string, r.column_type as string])),
    rows: rows.getRowObjects().map((r) => duckJson(r) as Record<string, unknown>),
    schema: schema.getRowObjects(),
  };
}

test('reads the CommonPool columns of a DuckDB file into the CommonPool Arrow types', async () => {
  const table = await readParquet(parquetFixture(SNAPPY), SNAPPY);
  assert.equal(table.numRows, 50);
  assert.deepEqual(table.schema.fields.map((f) => f.name), COMMONPOOL_SCHEMA.fields.map((f) => f.name));
  assert.deepEqual(table.schema.fields.map((f) => String(f.type)),
    ['Utf8', 'Utf8', 'Utf8', 'Int64', 'Int64', 'Float32', 'Float32', 'List<List<Float64>>', 'Utf8']);
  // int64 stays int64: the values array is a BigInt64Array, not floats
  assert.ok(table.getChild('original_width')!.data[0]!.values instanceof BigInt64Array);
  assert.ok(table.getChild('clip_b32_similarity_score')!.data[0]!.values instanceof Float32Array);
  assert.deepEqual(tableJson(table), expected.rows);

  // what pandas would show: None captions, a None face list, empty face lists, unicode kept byte for byte
  const text = table.getChild('text')!;
  assert.equal(text.nullCount, 2);
  assert.equal(text.get(11), null);
  assert.equal(text.get(2), '東京タワーの夜景');
  assert.equal(text.get(4), '🐶🐱 best friends forever');
  const faces = table.getChild('face_bboxes')!;
  assert.equal(faces.nullCount, 1);
  assert.equal(faces.get(20), null);
  assert.equal(faces.get(0)!.length, 0);
  assert.deepEqual(Array.from(faces.get(3)!.get(0)!.toArray()), [0.03041, 0.632643, 0.165786, 0.695358]);
  assert.match(table.getChild('uid')!.get(0)!, /^[0-9a-f]{32}$/);
});

test('gzip, zstd, uncompressed multi-row-group and V2-encoded files read to the same table', async () => {
  for (const name of ['commonpool-50.gzip.parquet', 'commonpool-50.zstd.parquet', 'commonpool-50.rowgroups.parquet', 'commonpool-50.v2.parquet']) {
    const table = await readParquet(parquetFixture(name), name);
    assert.deepEqual(tableJson(table), expected.rows, name);
  }
  const groups = await ParquetFile.open(parquetFixture('commonpool-50.rowgroups.parquet'), 'rowgroups.parquet');
  assert.deepEqual(groups.rowGroups, [{ start: 0, rows: 17 }, { start: 17, rows: 17 }, { start: 34, rows: 16 }]);
});

test('damaged zstd pages are refused with a FormatError that names the file', async () => {
  const bytes = parquetFixture('commonpool-50.zstd.parquet');
  const summary = await parquetSchemaSummary(bytes, 'pool.zstd.parquet');
  assert.deepEqual(summary.codecs, ['ZSTD']);
  // Overwrite the zstd frame magic of every page (28 b5 2f fd) so each page's data is no longer zstd.
  const damaged = new Uint8Array(bytes);
  let hits = 0;
  for (let i = 4; i + 4 < damaged.length; i++) {
    if (damaged[i] === 0x28 && damaged[i + 1] === 0xb5 && damaged[i + 2] === 0x2f && damaged[i + 3] === 0xfd) {
      damaged[i + 1] = 0x00;
      hits++;
    }
  }
  assert.ok(hits > 0, 'the fixture should hold zstd frames');
  await assert.rejects(readParquet(damaged, 'pool.zstd.parquet'), (err: unknown) =>
    err instanceof FormatError && err.file === 'pool.zstd.parquet' && /zstd/.test(err.problem));
});

test('selects columns and row ranges, across row-group boundaries, in the order asked', async () => {
  const pq = await ParquetFile.open(parquetFixture('commonpool-50.rowgroups.parquet'), 'rowgroups.parquet');
  for (const [start, end] of [[0, 50], [15, 36], [17, 34], [16, 17], [49, 50], [20, 20], [0, 1]] as const) {
    const part = await pq.read({ columns: ['face_bboxes', 'uid', 'original_height'], rowStart: start, rowEnd: end });
    assert.deepEqual(part.schema.fields.map((f) => f.name), ['face_bboxes', 'uid', 'original_height']);
    const want = expected.rows.slice(start, end).map((r) => ({ face_bboxes: r.face_bboxes, uid: r.uid, original_height: r.original_height }));
    assert.deepEqual(tableJson(part), want, `rows ${start}–${end}`);
  }
  // rowEnd past the end is clamped; a column that is not there is named in the error
  assert.equal((await pq.read({ rowStart: 40, rowEnd: 1000 })).numRows, 10);
  await assert.rejects(pq.read({ columns: ['nope'] }), (err: unknown) => err instanceof FormatError && /no column "nope"/.test(err.problem));
});

test('reads by byte ranges: a column read fetches only its chunks, from an AsyncBuffer or a Blob', async () => {
  const bytes = parquetFixture('commonpool-50.rowgroups.parquet');
  const fetched: [number, number][] = [];
  const source = {
    byteLength: bytes.byteLength,
    async slice(start: number, end: number): Promise<ArrayBuffer> {
      fetched.push([start, end]);
      return bytes.slice(start, end).buffer;
    },
  };
  const pq = await ParquetFile.open(source, 'ranged.parquet');
  const footerReads = fetched.length;
  const uids = await pq.read({ columns: ['uid'], rowStart: 20, rowEnd: 30 });
  assert.deepEqual(tableJson(uids).map((r) => r.uid), expected.rows.slice(20, 30).map((r) => r.uid));
  const read = fetched.slice(footerReads);
  assert.equal(read.length, 1, 'one row group, one column: one range');
  const total = read.reduce((n, [s, e]) => n + e - s, 0);
  assert.ok(total < bytes.byteLength / 10, `read ${total} of ${bytes.byteLength} bytes`);

  const fromBlob = await readParquet(new Blob([bytes as Uint8Array<ArrayBuffer>]), 'blob.parquet');
  assert.deepEqual(tableJson(fromBlob), expected.rows);
  const fromArrayBuffer = await readParquet(bytes.slice().buffer, 'buffer.parquet');
  assert.equal(fromArrayBuffer.numRows, 50);
  // hyparquet's own AsyncBuffer over a file on disk
  const onDisk = await asyncBufferFromFile(join(PARQUET_FIXTURES, 'commonpool-50.rowgroups.parquet'));
  assert.deepEqual(tableJson(await readParquet(onDisk, 'disk.parquet', { rowStart: 33, rowEnd: 35 })), expected.rows.slice(33, 35));
});

test('parquetSchemaSummary lists names, Arrow and parquet types, rows and row groups', async () => {
  const summary = await parquetSchemaSummary(parquetFixture('commonpool-50.rowgroups.parquet'), 'rowgroups.parquet');
  assert.equal(summary.rows, 50);
  assert.equal(summary.file, 'rowgroups.parquet');
  assert.match(summary.createdBy ?? '', /DuckDB/);
  assert.deepEqual(summary.codecs, ['UNCOMPRESSED']);
  assert.deepEqual(summary.rowGroups.map((g) => g.rows), [17, 17, 16]);
  assert.ok(summary.rowGroups.every((g) => g.compressedBytes > 0 && g.uncompressedBytes >= g.compressedBytes));
  assert.deepEqual(summary.columns.map((c) => [c.name, c.arrowType, c.parquetType]), [
    ['uid', 'Utf8', 'BYTE_ARRAY (UTF8)'],
    ['url', 'Utf8', 'BYTE_ARRAY (UTF8)'],
    ['text', 'Utf8', 'BYTE_ARRAY (UTF8)'],
    ['original_width', 'Int64', 'INT64'],
    ['original_height', 'Int64', 'INT64'],
    ['clip_b32_similarity_score', 'Float32', 'FLOAT'],
    ['clip_l14_similarity_score', 'Float32', 'FLOAT'],
    ['face_bboxes', 'List<List<Float64>>', 'LIST<LIST<DOUBLE>>'],
    ['sha256', 'Utf8', 'BYTE_ARRAY (UTF8)'],
  ]);
});

test('other parquet types map to sensible Arrow types with DuckDB\'s values', async () => {
  const table = await readParquet(parquetFixture('other-types.parquet'), 'other-types.parquet');
  const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
  assert.deepEqual(types, {
    flag: 'Bool', tiny: 'Int8', small: 'Int16', int32: 'Int32', int64: 'Int64', utiny: 'Uint8', ubig: 'Uint64',
    dbl: 'Float64', day: 'Date32<DAY>', ts: 'Timestamp<MICROSECOND>', bin: 'Binary', tags: 'List<Utf8>', pair: 'List<Int32>',
  });
  assert.deepEqual(tableJson(table), expectedRows('other-types.expected.json').rows);

  const v2 = await readParquet(parquetFixture('encodings-v2.parquet'), 'encodings-v2.parquet');
  assert.deepEqual(tableJson(v2), expectedRows('encodings-v2.expected.json').rows);
});

test('struct, map and list-of-struct columns are named as unsupported; the other columns still read', async () => {
  const bytes = parquetFixture('structs.parquet');
  const summary = await parquetSchemaSummary(bytes, 'structs.parquet');
  assert.deepEqual(summary.columns.map((c) => [c.name, c.arrowType, c.problem]), [
    ['id', 'Int32', undefined],
    ['s', 'unsupported', 'struct columns are not supported'],
    ['m', 'unsupported', 'map columns are not supported'],
    ['ls', 'unsupported', 'struct columns are not supported'],
  ]);
  assert.deepEqual(tableJson(await readParquet(bytes, 'structs.parquet', { columns: ['id'] })), [{ id: 0 }, { id: 1 }, { id: 2 }, { id: 3 }]);
  await assert.rejects(readParquet(bytes, 'structs.parquet'),
    (err: unknown) => err instanceof FormatError && err.message === 'structs.parquet: column "s": struct columns are not supported');
});

test('readCommonPoolMetadata reads exactly the CommonPool columns and refuses other files', async () => {
  const table = await readCommonPoolMetadata(parquetFixture(SNAPPY), SNAPPY, { rowStart: 5, rowEnd: 9 });
  assert.deepEqual(tableJson(table), expected.rows.slice(5, 9));
  await assert.rejects(readCommonPoolMetadata(parquetFixture('other-types.parquet'), 'other.parquet'),
    (err: unknown) => err instanceof FormatError && /not a CommonPool metadata file/.test(err.message) && err.file === 'other.parquet');

  // int32 sizes (a pool someone wrote with narrower ints) widen to int64; a string where a number belongs does not
  const full = await readParquet(parquetFixture(SNAPPY), SNAPPY);
  const columns = Object.fromEntries(full.schema.fields.map((f) => [f.name, full.getChild(f.name)!]));
  const widths = [...columns.original_width!].map((v) => (v === null ? null : Number(v)));
  const narrow = new Table({ ...columns, original_width: vectorFromArray(widths, new Int32()) });
  assert.equal(String(narrow.getChild('original_width')!.type), 'Int32');
  const widened = await readCommonPoolMetadata(writeParquet(narrow), 'narrow.parquet');
  assert.equal(String(widened.getChild('original_width')!.type), 'Int64');
  assert.deepEqual(tableJson(widened), expected.rows);
  const wrong = new Table({ ...columns, clip_b32_similarity_score: vectorFromArray(widths.map(String), new Utf8()) });
  await assert.rejects(readCommonPoolMetadata(writeParquet(wrong), 'wrong.parquet'),
    (err: unknown) => err instanceof FormatError && /column "clip_b32_similarity_score" is Utf8, CommonPool metadata has Float32/.test(err.message));
});

test('written CommonPool parquet reads back in DuckDB with the same types, layout and values', async () => {
  const table = await readParquet(parquetFixture(SNAPPY), SNAPPY);
  const bytes = writeParquet(table);
  const back = await duckRead('pool-written.parquet', bytes);
  assert.deepEqual(back.types, Object.fromEntries(expected.columns.map((c) => [c.name, c.duckdbType])));
  assert.deepEqual(back.types, {
    uid: 'VARCHAR', url: 'VARCHAR', text: 'VARCHAR', original_width: 'BIGINT', original_height: 'BIGINT',
    clip_b32_similarity_score: 'FLOAT', clip_l14_similarity_score: 'FLOAT', face_bboxes: 'DOUBLE[][]', sha256: 'VARCHAR',
  });
  assert.deepEqual(back.rows, expected.rows);

  // the physical layout pandas/pyarrow expect: BYTE_ARRAY+UTF8/String, INT64, FLOAT, 3-level LIST of LIST of DOUBLE
  const layout = back.schema.map((r) => [r.name, r.type, r.converted_type, r.repetition_type]);
  assert.deepEqual(layout, [
    ['schema', null, null, 'REQUIRED'],
    ['uid', 'BYTE_ARRAY', 'UTF8', 'OPTIONAL'],
    ['url', 'BYTE_ARRAY', 'UTF8', 'OPTIONAL'],
    ['text', 'BYTE_ARRAY', 'UTF8', 'OPTIONAL'],
    ['original_width', 'INT64', null, 'OPTIONAL'],
    ['original_height', 'INT64', null, 'OPTIONAL'],
    ['clip_b32_similarity_score', 'FLOAT', null, 'OPTIONAL'],
    ['clip_l14_similarity_score', 'FLOAT', null, 'OPTIONAL'],
    ['face_bboxes', null, 'LIST', 'OPTIONAL'],
    ['list', null, null, 'REPEATED'],
    ['element', null, 'LIST', 'OPTIONAL'],
    ['list', null, null, 'REPEATED'],
    ['element', 'DOUBLE', null, 'OPTIONAL'],
    ['sha256', 'BYTE_ARRAY', 'UTF8', 'OPTIONAL'],
  ]);
  assert.match(String(back.schema[1]!.logical_type), /String/i);
  assert.match(String(back.schema[8]!.logical_type), /List/i);

  // and our own reader gives the same table back, from every codec
  for (const codec of ['SNAPPY', 'GZIP', 'UNCOMPRESSED'] as const) {
    const again = writeParquet(table, { codec, rowGroupSize: 16 });
    const summary = await parquetSchemaSummary(again, `pool-${codec}.parquet`);
    assert.deepEqual(summary.codecs, [codec]);
    assert.deepEqual(summary.rowGroups.map((g) => g.rows), [16, 16, 16, 2]);
    assert.deepEqual(tableJson(await readParquet(again, `pool-${codec}.parquet`)), expected.rows, codec);
    assert.deepEqual((await duckRead(`pool-${codec}.parquet`, again)).rows, expected.rows, `DuckDB, ${codec}`);
  }
});

test('int64 beyond 2^53 and other Arrow types survive Arrow → parquet → DuckDB and back', async () => {
  const big = [2n ** 62n + 1n, -(2n ** 63n), 9007199254740993n, null, 0n];
  const table = new Table({
    big: vectorFromArray(big, new Int64()),
    flag: vectorFromArray([true, false, null, true, false], new Bool()),
    tiny: vectorFromArray([-128, 127, 0, null, 5], new Int8()),
    small: vectorFromArray([-32768, 32767, 1, 2, null], new Int16()),
    int32: vectorFromArray([-(2 ** 31), 2 ** 31 - 1, 0, 7, 8], new Int32()),
    byte: vectorFromArray([0, 255, 1, 2, 3], new Uint8()),
    ubig: vectorFromArray([0n, 2n ** 64n - 1n, 1n, 2n, 3n], new Uint64()),
    f32: vectorFromArray([0.1, -1.5, NaN, null, 3.25], new Float32()),
    f64: vectorFromArray([Math.PI, -0, Infinity, null, 1e-300], new Float64()),
    day: vectorFromArray([new Date(Date.UTC(2023, 3, 27)), null, new Date(0), new Date(Date.UTC(1999, 11, 31)), new Date(Date.UTC(2100, 0, 1))], new DateDay()),
    ts: vectorFromArray([1682596800000, 0, null, 1, 2], new TimestampMicrosecond()),
    blob: vectorFromArray([new Uint8Array([0, 255]), new Uint8Array(0), null, new Uint8Array([1]), new Uint8Array([2, 3, 4])], new Binary()),
    words: vectorFromArray([['a', null, 'ü'], [], null, ['x'], ['🐶', 'b']], new List(new Field('element', new Utf8(), true))),
  });
  const bytes = writeParquet(table);
  const back = await readParquet(bytes, 'types.parquet');
  assert.deepEqual(back.schema.fields.map((f) => String(f.type)), table.schema.fields.map((f) => String(f.type)));
  assert.deepEqual(tableJson(back), tableJson(table));
  assert.deepEqual(Array.from(back.getChild('big')!.data[0]!.values as BigInt64Array).filter((_, i) => i !== 3), big.filter((v) => v !== null));

  const duck = await duckRead('types.parquet', bytes);
  assert.deepEqual(duck.types, {
    big: 'BIGINT', flag: 'BOOLEAN', tiny: 'TINYINT', small: 'SMALLINT', int32: 'INTEGER', byte: 'UTINYINT', ubig: 'UBIGINT',
    f32: 'FLOAT', f64: 'DOUBLE', day: 'DATE', ts: 'TIMESTAMP', blob: 'BLOB', words: 'VARCHAR[]',
  });
  const ours = tableJson(table);
  for (const column of ['big', 'flag', 'tiny', 'small', 'int32', 'byte', 'ubig', 'f64', 'day', 'ts', 'blob', 'words']) {
    assert.deepEqual(duck.rows.map((r) => r[column]), ours.map((r) => r[column]), column);
  }
  // float32 as DuckDB prints it is the same float32
  assert.deepEqual(duck.rows.map((r) => r.f32), ours.map((r) => r.f32));
});

test('dictionary-encoded Arrow columns (what tableFromArrays makes of strings) are written as their values', async () => {
  const table = tableFromArrays({ caption: ['a cat', 'a dog', 'a cat', 'ü'], n: Int32Array.from([1, 2, 3, 4]) });
  assert.equal(table.getChild('caption')!.type.typeId, Type.Dictionary);
  const back = await readParquet(writeParquet(table), 'dict.parquet');
  assert.equal(String(back.getChild('caption')!.type), 'Utf8');
  assert.deepEqual(tableJson(back), [{ caption: 'a cat', n: 1 }, { caption: 'a dog', n: 2 }, { caption: 'a cat', n: 3 }, { caption: 'ü', n: 4 }]);
});

test('writeParquet refuses Arrow types it has no parquet mapping for', () => {
  const schema = new Schema([new Field('s', new Float32(), true)]);
  assert.equal(new Table(schema).numRows, 0);
  const struct = tableWithStruct();
  assert.throws(() => writeParquet(struct), /no parquet mapping/);
});

function tableWithStruct(): Table {
  const vec = vectorFromArray([{ a: 1 }, { a: 2 }]);
  assert.equal(vec.type.typeId, Type.Struct);
  return new Table({ s: vec });
}
