// Broken and hostile parquet: every one must end in a one-line FormatError naming the file, quickly and
// without allocating what the file asks for — never a hang, another exception, or a silently short table.
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { FormatError } from '../../src/core/formats/errors.ts';
import { ParquetFile, readParquet, type ParquetLimits } from '../../src/core/formats/parquet.ts';
import { fuzzReader } from '../helpers/fuzz.ts';
import {
  concatBytes, handmadeParquet, int64s, levels, parquetFixture, tableJson, varint,
} from '../fixtures/parquet/helpers.ts';

const NAME = 'hostile.parquet';

async function refused(bytes: Uint8Array, pattern: RegExp, limits?: Partial<ParquetLimits>): Promise<FormatError> {
  const started = performance.now();
  let caught: unknown;
  try {
    await readParquet(bytes, NAME, { limits });
  } catch (err) {
    caught = err;
  }
  const took = performance.now() - started;
  assert.ok(caught instanceof FormatError, `expected a FormatError, got ${String(caught)}`);
  assert.equal(caught.file, NAME);
  assert.match(caught.problem, pattern);
  assert.ok(!caught.message.includes('\n'), 'one line');
  assert.ok(took < 1000, `took ${took.toFixed(0)} ms`);
  return caught;
}

const good = parquetFixture('commonpool-50.snappy.parquet');

/** A valid hand-made file: optional int64 column "n" = [1, 2, 3] in one uncompressed page. */
const defsAllPresent = levels([...varint(3 << 1), 1]);
const control = handmadeParquet({ pages: [{ numValues: 3, body: concatBytes(defsAllPresent, int64s([1n, 2n, 3n])) }] });

test('the hand-made control file is valid: DuckDB and the reader both read [1, 2, 3]', async () => {
  const table = await readParquet(control, NAME);
  assert.deepEqual(tableJson(table), [{ n: '1' }, { n: '2' }, { n: '3' }]);
  const dir = mkdtempSync(join(tmpdir(), 'dcw-parquet-'));
  try {
    writeFileSync(join(dir, 'control.parquet'), control);
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    const rows = (await db.runAndReadAll(`SELECT n FROM read_parquet('${join(dir, 'control.parquet')}')`)).getRows();
    assert.deepEqual(rows, [[1n], [2n], [3n]]);
    db.closeSync();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('wrong magic, truncation and lying footer lengths', async () => {
  const wrongHead = good.slice();
  wrongHead.set([0x50, 0x4b, 0x03, 0x04], 0); // a zip
  await refused(wrongHead, /does not start with "PAR1"/);
  await refused(new TextEncoder().encode('hello'), /too short/);
  await refused(new Uint8Array(0), /too short/);
  await refused(good.subarray(0, good.length - 1), /does not end with "PAR1"/);
  await refused(good.subarray(0, good.length - 100), /does not end with "PAR1"/);
  // truncated footer: the tail is intact but the metadata before it is cut short
  const cut = concatBytes(good.subarray(0, 4), good.subarray(good.length - 200));
  await refused(cut, /metadata|footer/);

  const footerLength = (bytes: Uint8Array, n: number) => {
    const out = bytes.slice();
    new DataView(out.buffer).setUint32(out.length - 8, n, true);
    return out;
  };
  await refused(footerLength(good, good.length), /claims \d+ bytes of metadata/);
  await refused(footerLength(good, 0xfffffff0), /claims 4294967280 bytes of metadata/);
  await refused(footerLength(good, 0), /empty metadata/);
  await refused(footerLength(good, 300), /damaged parquet metadata/);
  await refused(good, /exceeds the limit/, { maxMetadataBytes: 100 });

  const encrypted = good.slice();
  encrypted.set(new TextEncoder().encode('PARE'), encrypted.length - 4);
  await refused(encrypted, /encrypted/);
});

test('corrupted pages and column chunks', async () => {
  const pq = await ParquetFile.open(good, NAME);
  const meta = pq.metadata.row_groups[0]!.columns[0]!.meta_data!;
  const start = Number(meta.dictionary_page_offset || meta.data_page_offset);
  const size = Number(meta.total_compressed_size);
  // garbage over the page header of the first column
  const garbageHeader = good.slice();
  garbageHeader.fill(0xff, start, start + 16);
  await refused(garbageHeader, /column "uid"/);
  // garbage inside the snappy data of the first column
  const garbageData = good.slice();
  garbageData.fill(0x07, start + size - 40, start + size - 8);
  await refused(garbageData, /column "uid"/);
  // a column chunk that claims to lie beyond the end of the file
  const footer = handmadeParquet({ pages: [{ numValues: 3, body: concatBytes(defsAllPresent, int64s([1n, 2n, 3n])) }] });
  const wrongRows = handmadeParquet({ rows: 4, pages: [{ numValues: 3, body: concatBytes(defsAllPresent, int64s([1n, 2n, 3n])) }] });
  await refused(wrongRows, /holds 3 rows, its metadata says 4/);
  const wrongFileRows = handmadeParquet({ fileRows: 9, pages: [{ numValues: 3, body: concatBytes(defsAllPresent, int64s([1n, 2n, 3n])) }] });
  await refused(wrongFileRows, /row groups hold 3 rows, the footer says 9/);
  assert.equal((await readParquet(footer, NAME)).numRows, 3);
});

test('lying counts and sizes inside pages are refused before anything is allocated for them', async () => {
  const values = int64s([1n, 2n, 3n]);
  // a run of a billion present values in a 3-value page
  await refused(handmadeParquet({ rows: 3, pages: [{ numValues: 3, body: concatBytes(levels([...varint(1e9 * 2), 1]), values) }] }),
    /run longer than its page/);
  // the page claims a billion values and its run agrees: the value limit refuses it, and lowering
  // the limit shows the same check with a small count
  const billion = handmadeParquet({ rows: 3, pages: [{ numValues: 1e9, body: concatBytes(levels([...varint(1e9 * 2), 1]), values) }] });
  await refused(billion, /more than \d+ values in one read/);
  // a bit-packed run that claims 2^27 groups of bytes that are not there
  await refused(handmadeParquet({ rows: 3, pages: [{ numValues: 3, body: concatBytes(levels([...varint((1 << 27) * 2 + 1), 0xff]), values) }] }),
    /bit-packed run/);
  // levels say 3 present values, the value section holds 2
  await refused(handmadeParquet({ pages: [{ numValues: 3, body: concatBytes(defsAllPresent, int64s([1n, 2n])) }] }),
    /do not fit/);
  // a level section longer than its page
  const longLevels = levels([...varint(3 << 1), 1]);
  new DataView(longLevels.buffer).setUint32(0, 1 << 30, true);
  await refused(handmadeParquet({ pages: [{ numValues: 3, body: concatBytes(longLevels, values) }] }), /level section/);
  // a definition level above the column's maximum
  await refused(handmadeParquet({ pages: [{ numValues: 3, body: concatBytes(levels([...varint(3 << 1), 5]), values) }] }),
    /level 5 above the maximum 1/);
  // uncompressed page that claims another size, snappy page that claims 2 GB
  await refused(handmadeParquet({ pages: [{ numValues: 3, uncompressedSize: 99, body: concatBytes(defsAllPresent, values) }] }),
    /claims 99/);
  await refused(handmadeParquet({ codec: 1, pages: [{ numValues: 3, uncompressedSize: 2 ** 31 - 1, body: new Uint8Array(40) }] }),
    /cannot hold|exceeds the limit/);
  await refused(handmadeParquet({ codec: 1, pages: [{ numValues: 3, uncompressedSize: 1000, body: new Uint8Array(100) }] }),
    /snappy/);
  // a page that claims more stored bytes than its column chunk has, or a negative size
  await refused(handmadeParquet({ pages: [{ numValues: 3, compressedSize: 1 << 30, body: concatBytes(defsAllPresent, values) }] }),
    /runs past the end of its column chunk/);
  await refused(handmadeParquet({ pages: [{ numValues: 3, compressedSize: -5, body: concatBytes(defsAllPresent, values) }] }),
    /runs past the end of its column chunk/);
  // a dictionary index past the dictionary
  const dictionary = { type: 2, numValues: 2, body: int64s([10n, 20n]) };
  const indices = concatBytes(defsAllPresent, Uint8Array.from([2, ...varint(3 << 1), 7]));
  await refused(handmadeParquet({ rows: 3, pages: [dictionary, { numValues: 3, encoding: 8, body: indices }] }), /dictionary index 7 out of range/);
  const fine = concatBytes(defsAllPresent, Uint8Array.from([1, ...varint(3 << 1), 1]));
  assert.deepEqual(tableJson(await readParquet(handmadeParquet({ rows: 3, pages: [dictionary, { numValues: 3, encoding: 8, body: fine }] }), NAME)),
    [{ n: '20' }, { n: '20' }, { n: '20' }]);
  // dictionary-encoded values without a dictionary
  await refused(handmadeParquet({ rows: 3, pages: [{ numValues: 3, encoding: 8, body: fine }] }), /without a dictionary/);
});

test('row and value limits refuse reads that would be too large, and say how to narrow them', async () => {
  await refused(good, /50 rows exceed the limit of 10 rows per read/, { maxRows: 10 });
  const partial = await readParquet(good, NAME, { limits: { maxRows: 10 }, rowStart: 5, rowEnd: 15 });
  assert.equal(partial.numRows, 10);
  await refused(good, /more than 20 values/, { maxValues: 20 });
  await refused(good, /exceeds the limit of 100/, { maxPageBytes: 100 });
});

test('seeded fuzzing over the DuckDB fixtures: FormatError or a table, never anything else', async () => {
  const seeds = [
    'commonpool-50.snappy.parquet', 'commonpool-50.rowgroups.parquet', 'commonpool-50.gzip.parquet',
    'commonpool-50.v2.parquet', 'other-types.parquet', 'encodings-v2.parquet',
  ].map(parquetFixture);
  seeds.push(control);
  const started = performance.now();
  const report = await fuzzReader(seeds, async (bytes) => {
    const table = await readParquet(bytes, 'fuzz.parquet');
    // touch every value, so a table that only looks whole is caught too
    tableJson(table);
  }, { seed: 0x5eed, cases: 1500, perCaseMs: 2000 });
  const took = performance.now() - started;
  assert.equal(report.cases, 1500);
  assert.ok(report.rejected > 300, `only ${report.rejected} rejected`);
  assert.ok(report.accepted > 50, `only ${report.accepted} accepted`);
  assert.ok(took < 15000, `fuzzing took ${took.toFixed(0)} ms`);
});
