// .npy reader and writer against files numpy 2.4.6 wrote (test/fixtures/numpy/make_fixtures.py).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import {
  NUMERIC_DTYPES, encodeNpy, encodeNpyHeader, float16ToFloat32, float32ToFloat16, formatNpySummary, readNpy,
  readNpyHeader, summarizeNpy, type NpyArray, type NpyData, type NpyDtype,
} from '../../src/core/formats/npy.ts';
import { fuzzReader } from '../helpers/fuzz.ts';

const DIR = join(import.meta.dirname, '../fixtures/numpy/npy');
interface Expected { descr: string; shape: number[]; values: string[]; bits?: number[] }
const EXPECTED: Record<string, Expected> = JSON.parse(readFileSync(join(DIR, 'values.json'), 'utf8'));
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(join(DIR, name)));

function parseFloatText(s: string): number {
  return s === 'nan' ? NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s);
}

/** The dtype our reader gives for a descr numpy wrote (big-endian files become little-endian). */
function readDtype(descr: string): NpyDtype {
  const code = descr.slice(1);
  return (code.endsWith('1') ? `|${code}` : `<${code}`) as NpyDtype;
}

/** Builds the typed array numpy's values stand for, as our reader returns it. */
function expectedData(e: Expected): NpyData {
  const v = e.values;
  switch (readDtype(e.descr)) {
    case '<f2': return Uint16Array.from(e.bits!);
    case '<f4': return Float32Array.from(v, parseFloatText);
    case '<f8': return Float64Array.from(v, parseFloatText);
    case '|i1': return Int8Array.from(v, Number);
    case '<i2': return Int16Array.from(v, Number);
    case '<i4': return Int32Array.from(v, Number);
    case '<i8': return BigInt64Array.from(v, BigInt);
    case '|u1': case '|b1': return Uint8Array.from(v, Number);
    case '<u2': return Uint16Array.from(v, Number);
    case '<u4': return Uint32Array.from(v, Number);
    case '<u8': return BigUint64Array.from(v, BigInt);
    default: throw new Error(`no expectation for ${e.descr}`);
  }
}

/** Element-wise equality that treats NaN as equal to NaN and tells -0 from 0. */
function assertSameElements(actual: NpyData, expected: NpyData, what: string): void {
  assert.equal(actual.constructor.name, expected.constructor.name, `${what}: array type`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Object.is(actual[i], expected[i]), `${what}[${i}]: ${actual[i]} != ${expected[i]}`);
  }
}

const SHAPES_BY_NAME = ['5', '3x4', '2x3x4', '0d', 'empty', '2x0x3'];
const CODES = ['f2', 'f4', 'f8', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'b1'];

test('the fixtures cover every supported dtype in 1-d, 2-d, 3-d, 0-d and empty shapes', () => {
  for (const code of CODES) for (const s of SHAPES_BY_NAME) assert.ok(EXPECTED[`${code}_${s}.npy`], `${code}_${s}.npy`);
  assert.deepEqual(new Set(CODES.map((c) => readDtype(EXPECTED[`${c}_5.npy`]!.descr))), new Set(NUMERIC_DTYPES));
});

test('numpy-written files decode to numpy\'s values (all versions, big-endian, Fortran order)', () => {
  const names = readdirSync(DIR).filter((n) => n.endsWith('.npy') && EXPECTED[n]);
  assert.ok(names.length >= 72 + 9);
  for (const name of names) {
    const e = EXPECTED[name]!;
    const array = readNpy(fixture(name), name);
    assert.equal(array.dtype, readDtype(e.descr), name);
    assert.deepEqual(array.shape, e.shape, name);
    assertSameElements(array.data, expectedData(e), name);
    if (e.bits) {
      const decoded = readNpy(fixture(name), name, { float16: 'float32' }).data;
      assertSameElements(decoded, Float32Array.from(e.values, parseFloatText), `${name} as float32`);
    }
  }
});

test('header fields: version, descr as written, Fortran order, 64-byte aligned data', () => {
  const be = readNpyHeader(fixture('be_f4_3x4.npy'), 'be');
  assert.equal(be.descr, "'>f4'");
  assert.equal(be.dtype, '<f4');
  assert.equal(be.bigEndian, true);
  const f = readNpyHeader(fixture('fortran_i4_2x3x4.npy'), 'f');
  assert.equal(f.fortranOrder, true);
  assert.deepEqual(f.shape, [2, 3, 4]);
  assert.deepEqual(readNpyHeader(fixture('v2_f4_3x4.npy'), 'v2').version, [2, 0]);
  assert.deepEqual(readNpyHeader(fixture('v3_f4_3x4.npy'), 'v3').version, [3, 0]);
  for (const name of ['f4_3x4.npy', 'v2_f4_3x4.npy', 'v3_f4_3x4.npy', 'u8_0d.npy']) {
    assert.equal(readNpyHeader(fixture(name), name).dataOffset % 64, 0, name);
  }
});

test('encodeNpy writes exactly np.save\'s bytes for every dtype and shape', () => {
  let checked = 0;
  for (const code of CODES) {
    for (const s of SHAPES_BY_NAME) {
      const name = `${code}_${s}.npy`;
      const e = EXPECTED[name]!;
      const array: NpyArray = { dtype: readDtype(e.descr), shape: e.shape, data: expectedData(e) };
      assert.deepEqual(encodeNpy(array), fixture(name), name);
      checked++;
    }
  }
  const e = EXPECTED['v2_f4_3x4.npy']!;
  assert.deepEqual(encodeNpy({ dtype: '<f4', shape: e.shape, data: expectedData(e) }, { version: 2 }), fixture('v2_f4_3x4.npy'));
  assert.equal(checked, 72);
});

test('encodeNpyHeader matches numpy\'s spacing, e.g. shape (3, 4)', () => {
  const text = new TextDecoder().decode(encodeNpyHeader('<f4', [3, 4]).subarray(10));
  assert.equal(text, `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }${' '.repeat(117 - 59)}\n`);
  assert.equal(encodeNpyHeader('<f4', []).length % 64, 0);
  assert.equal(encodeNpyHeader('u8,u8', [12_800_000]).length, 128);
});

test('round trip through the writer and reader for every dtype', () => {
  for (const code of CODES) {
    const name = `${code}_2x3x4.npy`;
    const original = readNpy(fixture(name), name);
    const again = readNpy(encodeNpy(original), 'again');
    assert.deepEqual(again.shape, original.shape);
    assertSameElements(again.data, original.data, name);
  }
});

test('float16: conversion from float32 rounds exactly as numpy\'s astype(float16)', () => {
  const f32 = readNpy(fixture('f32_for_f16.npy'), 'f32').data as Float32Array;
  const f16 = readNpy(fixture('f16_from_f32.npy'), 'f16').data as Uint16Array;
  assert.deepEqual(float32ToFloat16(f32), f16);
  // and writing a Float32Array as <f2 applies that rounding
  const bytes = encodeNpy({ dtype: '<f2', shape: [f32.length], data: f32 });
  assert.deepEqual(bytes, fixture('f16_from_f32.npy'));
});

test('float16: every one of the 65536 bit patterns survives decode and re-encode', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = float32ToFloat16(float16ToFloat32(all));
  assert.deepEqual(back, all);
  assert.equal(float16ToFloat32(Uint16Array.of(0x3c00))[0], 1);
  assert.equal(float16ToFloat32(Uint16Array.of(0x0001))[0], 2 ** -24);
  assert.equal(float16ToFloat32(Uint16Array.of(0x7bff))[0], 65504);
});

test('summary for dcw inspect', () => {
  const s = summarizeNpy(fixture('be_f4_3x4.npy'), 'x.npy');
  assert.equal(s.dtype, '<f4');
  assert.deepEqual(s.shape, [3, 4]);
  assert.equal(s.dataBytes, 48);
  assert.equal(formatNpySummary(s), "npy 1.0  <f4  shape (3, 4)  48 data bytes  (stored as '>f4')");
  assert.equal(formatNpySummary(summarizeNpy(fixture('u1_5.npy'), 'u')), 'npy 1.0  |u1  shape (5,)  5 data bytes');
  // only the beginning of a big file is needed
  const big = encodeNpyHeader('<f2', [500_000, 768]);
  assert.equal(summarizeNpy(big, 'big.npy', { fileSize: big.length + 500_000 * 768 * 2 }).dataBytes, 768_000_000);
});

// ---------------------------------------------------------------- hostile inputs

function npyWithHeader(dict: string, data: Uint8Array = new Uint8Array(0), version = 1): Uint8Array {
  const text = new TextEncoder().encode(dict + '\n');
  const lengthBytes = version === 1 ? 2 : 4;
  const out = new Uint8Array(8 + lengthBytes + text.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const v = new DataView(out.buffer);
  if (version === 1) v.setUint16(8, text.length, true);
  else v.setUint32(8, text.length, true);
  out.set(text, 8 + lengthBytes);
  out.set(data, 8 + lengthBytes + text.length);
  return out;
}

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  const started = performance.now();
  assert.throws(() => readNpy(bytes, 'bad.npy'), (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
    assert.match(err.message, /^bad\.npy: /);
    assert.ok(!err.message.includes('\n'), 'one line');
    assert.match(err.problem, pattern);
    return true;
  });
  assert.ok(performance.now() - started < 500);
}

test('hostile .npy files are refused with a one-line FormatError', () => {
  const ok = (shape: string, descr = "'<f4'", fortran = 'False') => `{'descr': ${descr}, 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
  const four = new Uint8Array(16);
  rejects(new Uint8Array(0), /truncated/);
  rejects(new TextEncoder().encode('PK\x03\x04 not numpy at all'), /not an npy file/);
  rejects(fixture('f4_3x4.npy').slice(0, 9), /truncated/);
  rejects(fixture('f4_3x4.npy').slice(0, 100), /runs past the end/);
  rejects(fixture('f4_3x4.npy').slice(0, -1), /needs 48 data bytes but the file has 47/);
  rejects(new Uint8Array([...fixture('f4_3x4.npy'), 0]), /1 bytes after the data/);
  rejects(Object.assign(fixture('f4_3x4.npy'), { 6: 4 }), /version 4\.0/);
  // absurd header length (format 2.0 allows 4 GiB) must not be believed
  const huge = npyWithHeader(ok('(4,)'), four, 2);
  new DataView(huge.buffer).setUint32(8, 0xfffffff0, true);
  rejects(huge, /header length \d+ is larger/);
  // lying sizes: products that overflow or exceed the bytes present
  rejects(npyWithHeader(ok('(1099511627776, 1099511627776, 1099511627776)'), four), /needs \d+ data bytes but the file has 16/);
  rejects(npyWithHeader(ok('(99999999999999999999999,)'), four), /invalid dimension/);
  rejects(npyWithHeader(ok('(5,)'), four), /needs 20 data bytes but the file has 16/);
  rejects(npyWithHeader(ok('(-4,)'), four), /invalid dimension -4/);
  rejects(npyWithHeader(ok('(4.0,)'), four), /malformed number/);
  rejects(npyWithHeader(ok('[4]'), four), /shape is not a tuple/);
  rejects(npyWithHeader(ok(`(${Array(65).fill(1).join(', ')})`), four), /65 dimensions/);
  // dictionary shape and content
  rejects(npyWithHeader("{'descr': '<f4', 'shape': (4,)}", four), /lacks the key 'fortran_order'/);
  rejects(npyWithHeader(ok('(4,)').replace('}', "'extra': 1, }"), four), /unexpected key 'extra'/);
  rejects(npyWithHeader("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", four), /repeats the key/);
  rejects(npyWithHeader(ok('(4,)', "'<f4'", '0'), four), /fortran_order is not True or False/);
  rejects(npyWithHeader('[1, 2]', four), /not a dictionary/);
  rejects(npyWithHeader("{'descr': '<f4", four), /unterminated string/);
  rejects(npyWithHeader(ok('(4,)') + ' __import__("os")', four), /after the header dictionary/);
  rejects(npyWithHeader(ok('(4,)').replace("'<f4'", '__import__("os").system("x")'), four), /unexpected "_"/);
  rejects(npyWithHeader(`{'descr': ${'['.repeat(5000)}`, four), /nested too deeply/);
  rejects(npyWithHeader(ok('(4,)', "'<c8'"), new Uint8Array(32)), /dtype '<c8' is not supported/);
  rejects(npyWithHeader(ok('(4,)', "'|O'"), new Uint8Array(32)), /dtype '\|O' is not supported/);
  rejects(npyWithHeader(ok('(4,)', "'<U1'"), four), /not supported/);
  rejects(npyWithHeader(ok('(4,)', "'|f4'"), four), /no byte order/);
  rejects(npyWithHeader(ok('(1,)', "[('a', '<u8'), ('b', '<u8')]"), four), /structured dtype is not supported/);
  // a 3.0 header must be valid UTF-8
  const v3 = npyWithHeader(ok('(4,)', "'<f4Z'"), four, 3);
  v3[v3.indexOf(0x5a)] = 0xff;
  rejects(v3, /not valid UTF-8/);
});

test('hostile headers parse without eval and within bounds', () => {
  // the literal parser reads only Python literals; these are still valid numpy headers
  const spaced = npyWithHeader("{ \"descr\" : '<i2' ,'fortran_order':False,\n'shape':( 2 , ) }", new Uint8Array(4));
  assert.deepEqual(readNpy(spaced, 's').data, new Int16Array(2));
  const py2 = npyWithHeader("{'descr': '<i2', 'fortran_order': False, 'shape': (2L,), }", new Uint8Array(4));
  assert.deepEqual(readNpy(py2, 'p').shape, [2]);
  // numpy accepts '<' and '>' on one-byte types
  assert.equal(readNpy(npyWithHeader("{'descr': '<u1', 'fortran_order': False, 'shape': (4,), }", new Uint8Array(4)), 'u').dtype, '|u1');
});

test('fuzzing the .npy reader: only FormatErrors, never a hang', async () => {
  const seeds = ['f4_3x4.npy', 'f2_2x3x4.npy', 'u8_0d.npy', 'b1_empty.npy', 'be_f8_2x3x4.npy', 'fortran_f8_3x5.npy', 'v3_f4_3x4.npy', 'v2_f4_3x4.npy']
    .map(fixture);
  seeds.push(new Uint8Array(readFileSync(join(DIR, '../uids/uids_100.npy'))));
  const report = await fuzzReader(seeds, (bytes) => readNpy(bytes, 'fuzz.npy', { float16: 'float32' }), { seed: 1, cases: 4000 });
  assert.equal(report.cases, 4000);
  assert.ok(report.rejected > 1000 && report.accepted > 100, JSON.stringify(report));
});
