/**
 * DataComp uids and subset files (facts §2).
 *
 * A uid is 32 lowercase hex digits, a 128-bit id. A subset file is `np.save` of a sorted structured array
 * of dtype `[('f0', '<u8'), ('f1', '<u8')]` with f0 = the first 16 hex digits and f1 = the last 16,
 * duplicates kept (they mean repeats); the resharder also accepts the same records without a header.
 *
 * Millions of uids are handled as "uid words": a Uint32Array with 4 words per uid in the record layout of
 * the file, `[f0 low, f0 high, f1 low, f1 high]`. On a little-endian host that is the file's data bytes
 * as they are, and `new BigUint64Array(words.buffer)` gives `[f0, f1, f0, f1, …]`.
 */
import { FormatError } from './errors.ts';
import { HOST_LITTLE_ENDIAN, UID_DTYPE, encodeNpyHeader, formatShape, npyDataBytes, readNpyHeader } from './npy.ts';

export const UID_HEX_DIGITS = 32;
const RECORD_BYTES = 16;
const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

/** Hex digit value of each byte, or -1; upper-case letters count (they are lowercased). */
const HEX_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEX_VALUE[0x61 + i] = HEX_VALUE[0x41 + i] = 10 + i;
const HEX_DIGIT = new TextEncoder().encode('0123456789abcdef');

// ---------------------------------------------------------------- single uids

/** The uid in lower case, or undefined unless it is exactly 32 hex digits. */
export function normalizeUid(text: string): string | undefined {
  if (text.length !== UID_HEX_DIGITS) return undefined;
  for (let i = 0; i < UID_HEX_DIGITS; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || HEX_VALUE[c]! < 0) return undefined;
  }
  return text.toLowerCase();
}

export function isUid(text: string): boolean {
  return normalizeUid(text) !== undefined;
}

/** uid → (hi, lo) = (f0, f1): the first and last 16 hex digits as unsigned 64-bit integers. */
export function uidToPair(uid: string): [hi: bigint, lo: bigint] {
  const u = normalizeUid(uid);
  if (u === undefined) throw new RangeError(`not a uid (32 hex digits): ${JSON.stringify(uid.slice(0, 40))}`);
  return [BigInt('0x' + u.slice(0, 16)), BigInt('0x' + u.slice(16))];
}

/** (hi, lo) → uid, zero-padded lower-case hex. */
export function pairToUid(hi: bigint, lo: bigint): string {
  if (hi < 0n || lo < 0n || hi >= 1n << 64n || lo >= 1n << 64n) throw new RangeError('uid halves must be unsigned 64-bit integers');
  return hi.toString(16).padStart(16, '0') + lo.toString(16).padStart(16, '0');
}

/**
 * numpy's order for the records (f0, then f1, as unsigned integers). For normalised uids that is plain
 * string order, which this is.
 */
export function compareUids(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

// ---------------------------------------------------------------- uid words

/** Parses 32 hex digits at `text[at…]` into words[4k…4k+3]; false if any is not a hex digit. */
function parseHexInto(text: Uint8Array, at: number, words: Uint32Array, k: number): boolean {
  // f0 = digits 0..15 (high word first in the text), f1 = digits 16..31
  let bad = 0;
  for (let part = 0; part < 4; part++) {
    let w = 0;
    const from = at + part * 8;
    for (let i = 0; i < 8; i++) {
      const v = HEX_VALUE[text[from + i]!]!;
      bad |= v;
      w = (w << 4) | (v & 0xf);
    }
    // text order: f0 high, f0 low, f1 high, f1 low → record order: f0 low, f0 high, f1 low, f1 high
    words[k * 4 + (part ^ 1)] = w >>> 0;
  }
  return bad >= 0;
}

/** Writes uid k of `words` as 32 hex digits at `out[at…]`. */
function formatHexInto(words: Uint32Array, k: number, out: Uint8Array, at: number): void {
  for (let part = 0; part < 4; part++) {
    const w = words[k * 4 + (part ^ 1)]!;
    const base = at + part * 8;
    for (let i = 0; i < 8; i++) out[base + i] = HEX_DIGIT[(w >>> (28 - 4 * i)) & 0xf]!;
  }
}

/**
 * uid strings → uid words (in the given order). `source` names where the uids came from, for the error
 * that reports the first invalid one.
 */
export function uidsToWords(uids: Iterable<string>, source = 'uid list'): Uint32Array {
  let words = new Uint32Array(4 * (Array.isArray(uids) ? uids.length : 1024));
  const scratch = new Uint8Array(UID_HEX_DIGITS);
  let n = 0;
  for (const uid of uids) {
    if (n * 4 === words.length) {
      const grown = new Uint32Array(words.length * 2);
      grown.set(words);
      words = grown;
    }
    let ok = typeof uid === 'string' && uid.length === UID_HEX_DIGITS;
    if (ok) {
      for (let i = 0; i < UID_HEX_DIGITS; i++) {
        const c = uid.charCodeAt(i);
        scratch[i] = c > 0xff ? 0x20 : c;
      }
      ok = parseHexInto(scratch, 0, words, n);
    }
    if (!ok) {
      throw new FormatError(source, `uid #${n + 1} ${JSON.stringify(String(uid).slice(0, 40))} is not 32 hex digits`);
    }
    n++;
  }
  return words.length === n * 4 ? words : words.slice(0, n * 4);
}

/** uid words → lower-case uid strings. */
export function wordsToUids(words: Uint32Array): string[] {
  const n = uidCount(words);
  if (n === 0) return [];
  const text = new TextDecoder().decode(formatUidText(words));
  const uids = text.split('\n');
  uids.pop(); // after the final newline
  return uids;
}

/** uid k of `words` as a string. */
export function uidAt(words: Uint32Array, k: number): string {
  const out = new Uint8Array(UID_HEX_DIGITS);
  formatHexInto(words, k, out, 0);
  return String.fromCharCode(...out);
}

export function uidCount(words: Uint32Array): number {
  if (words.length % 4 !== 0) throw new RangeError(`uid words come in fours, got ${words.length}`);
  return words.length / 4;
}

/** The same memory as `[f0, f1, f0, f1, …]` unsigned 64-bit pairs (little-endian hosts, as every browser is). */
export function wordsAsPairs(words: Uint32Array): BigUint64Array {
  if (!HOST_LITTLE_ENDIAN) throw new Error('wordsAsPairs needs a little-endian host');
  if (words.byteOffset % 8 !== 0) words = words.slice();
  return new BigUint64Array(words.buffer, words.byteOffset, uidCount(words) * 2);
}

// Radix digits from least to most significant: (word index, shift) for f1 low, f1 high, f0 low, f0 high.
const RADIX_PASSES: ReadonlyArray<readonly [number, number]> = [[2, 0], [2, 16], [3, 0], [3, 16], [0, 0], [0, 16], [1, 0], [1, 16]];

/** Whether the uids are in numpy's order (f0, then f1, unsigned), duplicates allowed. */
export function isSortedWords(words: Uint32Array): boolean {
  const n = uidCount(words);
  for (let i = 1; i < n; i++) if (compareWordsAt(words, i - 1, i) > 0) return false;
  return true;
}

function compareWordsAt(w: Uint32Array, a: number, b: number): number {
  for (const k of [1, 0, 3, 2]) {
    const x = w[a * 4 + k]!;
    const y = w[b * 4 + k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * Sorts uid words in place into numpy's structured order (f0, then f1, unsigned): a stable LSD radix
 * sort over 16-bit digits, all histograms counted in one pass, digits that never vary skipped.
 * Returns `words`.
 */
export function sortUidWords(words: Uint32Array): Uint32Array {
  const n = uidCount(words);
  if (n < 2 || isSortedWords(words)) return words;
  const counts = new Uint32Array(RADIX_PASSES.length * 65536);
  for (let i = 0; i < n; i++) {
    const b = i * 4;
    const w0 = words[b]!, w1 = words[b + 1]!, w2 = words[b + 2]!, w3 = words[b + 3]!;
    counts[w2 & 0xffff]!++;
    counts[65536 + (w2 >>> 16)]!++;
    counts[2 * 65536 + (w3 & 0xffff)]!++;
    counts[3 * 65536 + (w3 >>> 16)]!++;
    counts[4 * 65536 + (w0 & 0xffff)]!++;
    counts[5 * 65536 + (w0 >>> 16)]!++;
    counts[6 * 65536 + (w1 & 0xffff)]!++;
    counts[7 * 65536 + (w1 >>> 16)]!++;
  }
  let src: Uint32Array = words;
  let dst: Uint32Array = new Uint32Array(words.length);
  for (let p = 0; p < RADIX_PASSES.length; p++) {
    const [word, shift] = RADIX_PASSES[p]!;
    const offsets = counts.subarray(p * 65536, (p + 1) * 65536);
    if (offsets[(src[word]! >>> shift) & 0xffff] === n) continue; // every uid has the same digit here
    let sum = 0;
    for (let d = 0; d < 65536; d++) {
      const c = offsets[d]!;
      offsets[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const b = i * 4;
      const o = offsets[(src[b + word]! >>> shift) & 0xffff]!++ * 4;
      dst[o] = src[b]!;
      dst[o + 1] = src[b + 1]!;
      dst[o + 2] = src[b + 2]!;
      dst[o + 3] = src[b + 3]!;
    }
    [src, dst] = [dst, src];
  }
  if (src !== words) words.set(src);
  return words;
}

/** Sorted uids → how many are distinct. */
export function countDistinctSorted(words: Uint32Array): number {
  const n = uidCount(words);
  let distinct = n > 0 ? 1 : 0;
  for (let i = 1; i < n; i++) if (compareWordsAt(words, i - 1, i) !== 0) distinct++;
  return distinct;
}

// ---------------------------------------------------------------- subset files

/**
 * The bytes of `np.save(path, arr)` for the subset of these uids, sorted, duplicates kept: what
 * `baselines/apply_filter.py` writes and the resharder reads.
 */
export function encodeSubset(uids: Iterable<string>, source?: string): Uint8Array {
  return encodeSubsetWords(uidsToWords(uids, source), { sorted: false });
}

/**
 * The subset file for uid words. Sorts a copy unless `sorted: true` says they already are in order
 * (checked: unsorted words with `sorted: true` are a RangeError, since the resharder's binary search
 * would silently miss uids).
 */
export function encodeSubsetWords(words: Uint32Array, options: { sorted?: boolean } = {}): Uint8Array {
  const n = uidCount(words);
  const header = encodeNpyHeader(UID_DTYPE, [n]);
  const out = new Uint8Array(header.length + n * RECORD_BYTES);
  out.set(header);
  // the header is a multiple of 64 bytes long, so the body is 4-byte aligned in `out`
  const body = new Uint32Array(out.buffer, header.length, n * 4);
  body.set(words);
  if (options.sorted) {
    if (!isSortedWords(body)) throw new RangeError('encodeSubsetWords: the uids are not sorted');
  } else {
    sortUidWords(body);
  }
  if (!HOST_LITTLE_ENDIAN) swapWords(body);
  return out;
}

function swapWords(words: Uint32Array): void {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    words[i] = (((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24)) >>> 0;
  }
}

export type SubsetForm = 'npy' | 'raw';

/**
 * Reads a subset file in either form: `.npy` of dtype u8,u8 (1-d), or the raw headerless records.
 * Returns fresh uid words in file order (not re-sorted; see isSortedWords).
 */
export function decodeSubsetWords(bytes: Uint8Array, file: string): Uint32Array {
  return readSubset(bytes, file).words;
}

function readSubset(bytes: Uint8Array, file: string): { words: Uint32Array; form: SubsetForm } {
  let data: Uint8Array;
  let form: SubsetForm;
  if (NPY_MAGIC.every((b, i) => bytes[i] === b)) {
    const header = readNpyHeader(bytes, file);
    if (header.dtype !== UID_DTYPE) {
      throw new FormatError(file, `subset .npy has dtype ${header.descr}, expected [('f0', '<u8'), ('f1', '<u8')]`);
    }
    if (header.shape.length !== 1) throw new FormatError(file, `subset .npy has shape ${formatShape(header.shape)}, expected one dimension`);
    data = npyDataBytes(bytes, header);
    form = 'npy';
  } else {
    if (bytes.length % RECORD_BYTES !== 0) {
      throw new FormatError(file, `not an npy file, and ${bytes.length} bytes is not a whole number of 16-byte uid records`);
    }
    data = bytes;
    form = 'raw';
  }
  const words = new Uint32Array(data.length / 4);
  new Uint8Array(words.buffer).set(data);
  if (!HOST_LITTLE_ENDIAN) swapWords(words);
  return { words, form };
}

/** Reads a subset file in either form into uid strings, in file order. */
export function decodeSubset(bytes: Uint8Array, file: string): string[] {
  return wordsToUids(decodeSubsetWords(bytes, file));
}

export interface SubsetSummary {
  form: SubsetForm;
  count: number;
  distinct: number;
  sorted: boolean;
}

/** What `dcw inspect` prints for a subset file. */
export function summarizeSubset(bytes: Uint8Array, file: string): SubsetSummary {
  const { words, form } = readSubset(bytes, file);
  const sorted = isSortedWords(words);
  return { form, count: uidCount(words), distinct: countDistinctSorted(sorted ? words : sortUidWords(words)), sorted };
}

export function formatSubsetSummary(s: SubsetSummary): string {
  const kind = s.form === 'npy' ? "subset .npy [('f0', '<u8'), ('f1', '<u8')]" : 'subset, raw headerless u8,u8 records';
  return `${kind}  ${s.count} uids (${s.distinct} distinct)  ${s.sorted ? 'sorted' : 'NOT sorted (the resharder needs sorted uids)'}`;
}

// ---------------------------------------------------------------- text lists

/**
 * Parses a text file of one uid per line into uid words, in file order. Upper-case digits are
 * lowercased; spaces, tabs and '\r' around a uid and blank lines are ignored; anything else is a
 * FormatError naming the line.
 */
export function parseUidText(text: string | Uint8Array, file: string): Uint32Array {
  const bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text;
  // every uid but the last takes at least 33 bytes (digits + '\n'), so this bounds the count
  const words = new Uint32Array(4 * Math.floor((bytes.length + 1) / (UID_HEX_DIGITS + 1)));
  let n = 0;
  let line = 0;
  let pos = 0;
  while (pos < bytes.length) {
    line++;
    let end = bytes.indexOf(0x0a, pos);
    if (end < 0) end = bytes.length;
    let a = pos;
    let b = end;
    while (a < b && isBlank(bytes[a]!)) a++;
    while (b > a && isBlank(bytes[b - 1]!)) b--;
    if (b > a) {
      if (b - a !== UID_HEX_DIGITS || n * 4 >= words.length || !parseHexInto(bytes, a, words, n)) {
        const shown = new TextDecoder().decode(bytes.subarray(a, Math.min(b, a + 40)));
        throw new FormatError(file, `line ${line}: ${JSON.stringify(shown)}${b - a > 40 ? '…' : ''} is not a uid (32 hex digits)`);
      }
      n++;
    }
    pos = end + 1;
  }
  return words.length === n * 4 ? words : words.slice(0, n * 4);
}

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d;
}

/** Parses a text file of one uid per line into lower-case uid strings (see parseUidText). */
export function parseUidList(text: string | Uint8Array, file: string): string[] {
  return wordsToUids(parseUidText(text, file));
}

/** One lower-case uid per line, each followed by '\n', as bytes. */
export function formatUidText(words: Uint32Array): Uint8Array {
  const n = uidCount(words);
  const out = new Uint8Array(n * (UID_HEX_DIGITS + 1));
  for (let k = 0; k < n; k++) {
    const at = k * (UID_HEX_DIGITS + 1);
    formatHexInto(words, k, out, at);
    out[at + UID_HEX_DIGITS] = 0x0a;
  }
  return out;
}

/** One lower-case uid per line, each followed by '\n'. Invalid uids are a FormatError naming `source`. */
export function formatUidList(uids: Iterable<string>, source?: string): string {
  return new TextDecoder().decode(formatUidText(uidsToWords(uids, source)));
}
