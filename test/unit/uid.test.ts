// uid codec and subset files against the ones numpy wrote the way dc:baselines/apply_filter.py does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { encodeNpy } from '../../src/core/formats/npy.ts';
import {
  compareUids, countDistinctSorted, decodeSubset, decodeSubsetWords, encodeSubset, encodeSubsetWords, formatSubsetSummary,
  formatUidList, isSortedWords, isUid, normalizeUid, pairToUid, parseUidList, parseUidText, sortUidWords, summarizeSubset,
  uidAt, uidToPair, uidsToWords, wordsAsPairs, wordsToUids,
} from '../../src/core/formats/uid.ts';
import { Rng } from '../../src/core/util/random.ts';
import { fuzzReader } from '../helpers/fuzz.ts';

const DIR = join(import.meta.dirname, '../fixtures/numpy/uids');
const META: Record<string, { count: number; distinct: number }> = JSON.parse(readFileSync(join(DIR, 'uids.json'), 'utf8'));
const bytesOf = (name: string): Uint8Array => new Uint8Array(readFileSync(join(DIR, name)));
const textOf = (name: string): string => readFileSync(join(DIR, name), 'utf8');
const STEMS = Object.keys(META);

test('fixtures include 0, 1, duplicate-only and larger sets with duplicates', () => {
  assert.deepEqual(STEMS.sort(), ['uids_0', 'uids_1', 'uids_100', 'uids_1000', 'uids_2dup']);
  assert.ok(META.uids_1000!.count > META.uids_1000!.distinct);
});

test('encodeSubset writes exactly the bytes numpy wrote for the same uid list', () => {
  for (const stem of STEMS) {
    const uids = parseUidList(textOf(`${stem}.txt`), `${stem}.txt`);
    assert.equal(uids.length, META[stem]!.count, stem);
    assert.deepEqual(encodeSubset(uids), bytesOf(`${stem}.npy`), stem);
    assert.deepEqual(encodeSubsetWords(parseUidText(bytesOf(`${stem}.txt`), stem)), bytesOf(`${stem}.npy`), `${stem} (words)`);
  }
});

test('decodeSubset reads numpy\'s file back to the sorted list, duplicates kept', () => {
  for (const stem of STEMS) {
    const expected = parseUidList(textOf(`${stem}.txt`), stem).sort();
    const decoded = decodeSubset(bytesOf(`${stem}.npy`), `${stem}.npy`);
    assert.deepEqual(decoded, expected, stem);
    const words = decodeSubsetWords(bytesOf(`${stem}.npy`), stem);
    assert.ok(isSortedWords(words));
    assert.equal(countDistinctSorted(words), META[stem]!.distinct, stem);
  }
});

test('the raw headerless form (np.memmap records) and a big-endian .npy decode like the .npy', () => {
  assert.deepEqual(decodeSubset(bytesOf('uids_100.raw'), 'uids_100.raw'), decodeSubset(bytesOf('uids_100.npy'), 'uids_100.npy'));
  assert.deepEqual(decodeSubset(bytesOf('uids_100_be.npy'), 'uids_100_be.npy'), decodeSubset(bytesOf('uids_100.npy'), 'uids_100.npy'));
  assert.deepEqual(decodeSubset(new Uint8Array(0), 'empty.raw'), []);
  assert.equal(summarizeSubset(bytesOf('uids_100.raw'), 'r').form, 'raw');
});

test('(hi, lo) split: the facts file example and the u64 pairs view', () => {
  const uid = '139e4a9b22a614771f06c700a8ebe150';
  assert.deepEqual(uidToPair(uid), [0x139e4a9b22a61477n, 0x1f06c700a8ebe150n]);
  assert.equal(pairToUid(0x139e4a9b22a61477n, 0x1f06c700a8ebe150n), uid);
  assert.equal(pairToUid(1n, 0n), '0000000000000001' + '0'.repeat(16));
  const file = encodeSubset([uid]);
  assert.equal(Buffer.from(file.subarray(128)).toString('hex'), '7714a6229b4a9e13' + '50e1eba800c7061f');
  const pairs = wordsAsPairs(decodeSubsetWords(bytesOf('uids_1000.npy'), 'u'));
  const uids = decodeSubset(bytesOf('uids_1000.npy'), 'u');
  for (let i = 0; i < uids.length; i++) assert.deepEqual([pairs[2 * i], pairs[2 * i + 1]], uidToPair(uids[i]!));
  // the same records numpy's structured dtype holds, through the generic .npy writer
  assert.deepEqual(encodeNpy({ dtype: 'u8,u8', shape: [uids.length], data: pairs }), bytesOf('uids_1000.npy'));
});

test('validation: exactly 32 hex digits after lowercasing', () => {
  assert.equal(normalizeUid('139E4A9B22A614771F06C700A8EBE150'), '139e4a9b22a614771f06c700a8ebe150');
  for (const bad of ['', '139e4a9b22a614771f06c700a8ebe15', '139e4a9b22a614771f06c700a8ebe1500', '139e4a9b22a614771f06c700a8ebe15g',
    ' 39e4a9b22a614771f06c700a8ebe150', '0x9e4a9b22a614771f06c700a8ebe150', '139e4a9b22a614771f06c700a8ebe15\u0660']) {
    assert.equal(isUid(bad), false, bad);
    assert.throws(() => encodeSubset([bad]), FormatError, bad);
  }
  assert.throws(() => encodeSubset(['0'.repeat(32), 'nope'], 'filter output'), /^FormatError: filter output: uid #2 "nope" is not 32 hex digits$/m);
  assert.throws(() => uidToPair('xyz'), RangeError);
  assert.throws(() => pairToUid(1n << 64n, 0n), RangeError);
});

test('sort order equals numpy\'s (f0 then f1 unsigned), including top-bit and equal-f0 cases', () => {
  const rng = new Rng(7);
  const uids: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const words = new Uint32Array(4).map(() => rng.nextU32());
    let u = uidAt(words, 0);
    if (i % 7 === 0) u = uids[rng.int(uids.length)] ?? u; // duplicates
    if (i % 11 === 0 && uids.length) u = uids[rng.int(uids.length)]!.slice(0, 16) + u.slice(16); // shared f0
    if (i % 13 === 0) u = 'ffffffff' + u.slice(8); // top bits set
    uids.push(i % 3 ? u : u.toUpperCase());
  }
  const byBigInt = [...uids].map((u) => u.toLowerCase()).sort((a, b) => {
    const [a0, a1] = uidToPair(a);
    const [b0, b1] = uidToPair(b);
    return a0 !== b0 ? (a0 < b0 ? -1 : 1) : a1 !== b1 ? (a1 < b1 ? -1 : 1) : 0;
  });
  assert.deepEqual(wordsToUids(sortUidWords(uidsToWords(uids))), byBigInt);
  assert.deepEqual([...uids].sort(compareUids).map((u) => u.toLowerCase()), byBigInt);
});

test('text lists: parse with line numbers, print one uid per line', () => {
  const original = textOf('uids_1000.txt');
  assert.equal(formatUidList(parseUidList(original, 't')), original);
  assert.deepEqual(parseUidList(`  ${'A'.repeat(32)}\r\n\n${'b'.repeat(32)}\t\n`, 'crlf.txt'), ['a'.repeat(32), 'b'.repeat(32)]);
  assert.deepEqual(parseUidList('', 'empty'), []);
  assert.equal(formatUidList([]), '');
  const lines = original.split('\n');
  lines[41] = lines[41]!.slice(0, 31);
  assert.throws(() => parseUidText(lines.join('\n'), 'list.txt'), /^FormatError: list\.txt: line 42: "[0-9a-f]{31}" is not a uid \(32 hex digits\)$/m);
  lines[41] = lines[40]!.slice(0, 16) + ' ' + lines[40]!.slice(17);
  assert.throws(() => parseUidText(lines.join('\n'), 'list.txt'), /line 42: /);
  assert.throws(() => parseUidText('0'.repeat(32) + '\n' + 'x'.repeat(5000), 'long.txt'), /^FormatError: long\.txt: line 2: "x{40}"… is not a uid/m);
  assert.throws(() => parseUidText('0'.repeat(33), 'one.txt'), /line 1: /);
});

test('hostile subset files are refused with a FormatError', () => {
  const expectFormatError = (bytes: Uint8Array, pattern: RegExp) =>
    assert.throws(() => decodeSubset(bytes, 'bad.npy'), (e: unknown) => e instanceof FormatError && pattern.test(e.problem));
  expectFormatError(new Uint8Array(17), /not a whole number of 16-byte uid records/);
  expectFormatError(encodeNpy({ dtype: '<f4', shape: [4], data: new Float32Array(4) }), /dtype '<f4', expected/);
  expectFormatError(encodeNpy({ dtype: 'u8,u8', shape: [1, 1], data: new BigUint64Array(2) }), /shape \(1, 1\), expected one dimension/);
  expectFormatError(bytesOf('uids_100.npy').slice(0, -8), /needs 1600 data bytes but the file has 1592/);
  assert.throws(() => encodeSubsetWords(uidsToWords(['f'.repeat(32), '0'.repeat(32)]), { sorted: true }), RangeError);
});

test('summary for dcw inspect', () => {
  const s = summarizeSubset(bytesOf('uids_1000.npy'), 'u.npy');
  assert.deepEqual(s, { form: 'npy', count: META.uids_1000!.count, distinct: META.uids_1000!.distinct, sorted: true });
  assert.ok(formatSubsetSummary(s).endsWith(`  ${s.count} uids (${s.distinct} distinct)  sorted`));
  const unsorted = encodeNpy({ dtype: 'u8,u8', shape: [2], data: BigUint64Array.of(2n, 0n, 1n, 0n) });
  assert.match(formatSubsetSummary(summarizeSubset(unsorted, 'x')), /NOT sorted/);
});

test('fuzzing the subset reader: only FormatErrors, never a hang', async () => {
  const seeds = ['uids_0.npy', 'uids_1.npy', 'uids_100.npy', 'uids_100.raw', 'uids_2dup.npy'].map(bytesOf);
  const report = await fuzzReader(seeds, (bytes) => decodeSubset(bytes, 'fuzz.npy'), { seed: 3, cases: 3000 });
  assert.ok(report.rejected > 500 && report.accepted > 100, JSON.stringify(report));
  const text = await fuzzReader([bytesOf('uids_100.txt')], (bytes) => parseUidText(bytes, 'fuzz.txt'), { seed: 4, cases: 1000 });
  assert.ok(text.rejected > 100, JSON.stringify(text));
});

test('1M uids: strings to a sorted subset file in well under the time 12.8M may take', (t) => {
  const rng = new Rng(11);
  const words = new Uint32Array(4_000_000).map(() => rng.nextU32());
  const uids = wordsToUids(words);
  const started = performance.now();
  const file = encodeSubset(uids);
  const took = performance.now() - started;
  t.diagnostic(`encodeSubset(1M uid strings) took ${took.toFixed(0)} ms`);
  assert.equal(file.length, 128 + 16_000_000);
  assert.ok(isSortedWords(decodeSubsetWords(file, 'big.npy')));
  assert.ok(took < 5000, `${took} ms`);
});
