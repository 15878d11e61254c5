/**
 * Columns of a row group as the filters use them, whichever reader produced them (the flat fast path of
 * flat-parquet.ts, or an Arrow vector from ParquetFile.read): numbers as Float64Array (null → NaN, as pandas
 * turns a null int64/float into NaN), strings as byte ranges (FlatStrings; a JS string is made only where a
 * rule needs one), uids as uid words parsed straight from the UTF-8 bytes (no string per row).
 */
import { Type, type Data, type Vector } from 'apache-arrow';
import { FormatError } from '../formats/errors.ts';
import { HEX_PAIR, type FlatNumbers, type FlatStrings, type UidWords } from './flat-parquet.ts';
import { isPySpace, pyLen, pyWordCount } from './pystr.ts';

export type { FlatNumbers, FlatStrings, UidWords } from './flat-parquet.ts';

/** One column of a row group (UidWords only for the uid column, where the scan was asked for them). */
export type ColumnData = FlatStrings | FlatNumbers | UidWords | Vector;

const isUidWords = (c: ColumnData): c is UidWords => 'kind' in c && c.kind === 'uid';
/** Parsed uid words are no text: a caller that reads the uid column as a value scans without uidWords. */
const noText = (name: string): never => {
  throw new Error(`column "${name}" was scanned as parsed uid words (scan without uidWords to use its text)`);
};

const isFlat = (c: ColumnData): c is FlatStrings | FlatNumbers => 'kind' in c && (c.kind === 'str' || c.kind === 'num');

function isValid(d: Data, i: number): boolean {
  if (!d.nullBitmap || d.nullCount === 0) return true;
  const j = d.offset + i;
  return ((d.nullBitmap[j >> 3]! >> (j & 7)) & 1) === 1;
}

/** Any numeric column (ints, int64, float32/64) as float64, null → NaN. */
export function numberColumn(column: ColumnData, file: string, name: string): Float64Array {
  if (isUidWords(column)) throw new FormatError(file, `column "${name}" is Utf8, not a number`);
  if (isFlat(column)) {
    if (column.kind === 'num') return column.values;
    throw new FormatError(file, `column "${name}" is ${column.typeName}, not a number`);
  }
  const out = new Float64Array(column.length);
  let at = 0;
  for (const d of column.data) {
    const t = d.type.typeId;
    if (t !== Type.Int && t !== Type.Float) throw new FormatError(file, `column "${name}" is ${String(d.type)}, not a number`);
    const values = d.values as ArrayLike<number | bigint>;
    for (let i = 0; i < d.length; i++) {
      const v = values[d.offset + i]!;
      out[at + i] = isValid(d, i) ? Number(v) : NaN;
    }
    at += d.length;
  }
  return out;
}

/** Whether a numeric column holds float32 values (comparisons with a Python float then happen in float32). */
export function isFloat32Column(column: ColumnData): boolean {
  if (isUidWords(column)) return false;
  if (isFlat(column)) return column.kind === 'num' && column.float32;
  return column.type.typeId === Type.Float && (column.type as { precision: number }).precision === 1;
}

/** A string column as byte ranges (an Arrow vector's bytes are used as they are). */
export function stringsOf(column: ColumnData, file: string, name: string): FlatStrings {
  if (isUidWords(column)) return noText(name);
  if (isFlat(column)) {
    if (column.kind === 'str') return column;
    throw new FormatError(file, `column "${name}" is ${column.typeName}, not a string`);
  }
  const chunks = column.data;
  for (const d of chunks) {
    if (d.type.typeId !== Type.Utf8 && d.type.typeId !== Type.LargeUtf8) throw new FormatError(file, `column "${name}" is ${String(d.type)}, not a string`);
  }
  const length = column.length;
  const start = new Int32Array(length);
  const end = new Int32Array(length);
  let valid: Uint8Array | undefined;
  let bytes: Uint8Array;
  if (chunks.length === 1) bytes = chunks[0]!.values as Uint8Array;
  else {
    let total = 0;
    for (const d of chunks) total += d.length ? Number((d.valueOffsets as ArrayLike<number | bigint>)[d.offset + d.length]!) - Number((d.valueOffsets as ArrayLike<number | bigint>)[d.offset]!) : 0;
    bytes = new Uint8Array(total);
  }
  let at = 0;
  let base = 0;
  for (const d of chunks) {
    const offsets = d.valueOffsets as ArrayLike<number | bigint>;
    const values = d.values as Uint8Array;
    let shift = 0;
    if (chunks.length > 1 && d.length) {
      const lo = Number(offsets[d.offset]!);
      const hi = Number(offsets[d.offset + d.length]!);
      bytes.set(values.subarray(lo, hi), base);
      shift = base - lo;
      base += hi - lo;
    }
    for (let i = 0; i < d.length; i++) {
      if (!isValid(d, i)) {
        valid ??= new Uint8Array(length).fill(1);
        valid[at + i] = 0;
        continue;
      }
      start[at + i] = Number(offsets[d.offset + i]!) + shift;
      end[at + i] = Number(offsets[d.offset + i + 1]!) + shift;
    }
    at += d.length;
  }
  return { kind: 'str', typeName: chunks.length ? String(chunks[0]!.type) : 'Utf8', length, bytes, start, end, valid };
}

const decoder = new TextDecoder();

/** Row i as a JS string (TextDecoder, as the Arrow path always decoded it), null kept. */
export function textAt(s: FlatStrings, i: number): string | null {
  if (s.valid && !s.valid[i]) return null;
  return decoder.decode(s.bytes.subarray(s.start[i]!, s.end[i]!));
}

/** A string column as JS strings, null kept as null. */
export function stringColumn(column: ColumnData, file: string, name: string): (string | null)[] {
  const s = stringsOf(column, file, name);
  const out: (string | null)[] = new Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = textAt(s, i);
  return out;
}

/** A list column's lengths (null list → NaN). */
export function listLengthColumn(column: ColumnData, file: string, name: string): Float64Array {
  if (isUidWords(column)) throw new FormatError(file, `column "${name}" is Utf8, not a list`);
  if (isFlat(column)) throw new FormatError(file, `column "${name}" is ${column.typeName}, not a list`);
  const out = new Float64Array(column.length);
  let at = 0;
  for (const d of column.data) {
    if (d.type.typeId !== Type.List) throw new FormatError(file, `column "${name}" is ${String(d.type)}, not a list`);
    const offsets = d.valueOffsets as Int32Array;
    for (let i = 0; i < d.length; i++) out[at + i] = isValid(d, i) ? offsets[d.offset + i + 1]! - offsets[d.offset + i]! : NaN;
    at += d.length;
  }
  return out;
}

// ───────────────────────────── Python str rules on UTF-8 bytes ─────────────────────────────

/** ASCII bytes that Python's str.isspace() calls whitespace. */
const ASCII_SPACE = new Uint8Array(128);
for (let c = 0; c < 128; c++) ASCII_SPACE[c] = isPySpace(c) ? 1 : 0;

/**
 * Length in bytes of the well-formed UTF-8 sequence at b[i] (lead byte ≥ 0x80), or -1. Well-formed is
 * exactly what TextDecoder decodes without a replacement character.
 */
function sequenceLength(b: Uint8Array, i: number, to: number): number {
  const c = b[i]!;
  if (c >= 0xc2 && c <= 0xdf) return i + 1 < to && (b[i + 1]! & 0xc0) === 0x80 ? 2 : -1;
  if (c >= 0xe0 && c <= 0xef) {
    if (i + 2 >= to) return -1;
    const c1 = b[i + 1]!;
    if (c1 < (c === 0xe0 ? 0xa0 : 0x80) || c1 > (c === 0xed ? 0x9f : 0xbf)) return -1;
    return (b[i + 2]! & 0xc0) === 0x80 ? 3 : -1;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (i + 3 >= to) return -1;
    const c1 = b[i + 1]!;
    if (c1 < (c === 0xf0 ? 0x90 : 0x80) || c1 > (c === 0xf4 ? 0x8f : 0xbf)) return -1;
    return (b[i + 2]! & 0xc0) === 0x80 && (b[i + 3]! & 0xc0) === 0x80 ? 4 : -1;
  }
  return -1;
}

/** A leading byte-order mark, which TextDecoder drops: such values take the string path. */
const startsWithBom = (b: Uint8Array, from: number, to: number) => to - from >= 3 && b[from] === 0xef && b[from + 1] === 0xbb && b[from + 2] === 0xbf;

/**
 * Python's len() of row i's text (code points) from its bytes; NaN for null. Values that are not
 * well-formed UTF-8 (or start with a BOM) are decoded as before and measured with pyLen, so the result
 * is always pyLen(textAt(s, i)).
 */
export function pyLenAt(s: FlatStrings, i: number): number {
  if (s.valid && !s.valid[i]) return NaN;
  const b = s.bytes;
  const from = s.start[i]!;
  const to = s.end[i]!;
  if (startsWithBom(b, from, to)) return pyLen(textAt(s, i)!);
  let n = 0;
  for (let k = from; k < to; ) {
    if (b[k]! < 0x80) {
      k++;
    } else {
      const len = sequenceLength(b, k, to);
      if (len < 0) return pyLen(textAt(s, i)!);
      k += len;
    }
    n++;
  }
  return n;
}

/** Python's len(text.split()) of row i from its bytes; NaN for null. Always equals pyWordCount(textAt(s, i)). */
export function pyWordCountAt(s: FlatStrings, i: number): number {
  if (s.valid && !s.valid[i]) return NaN;
  const b = s.bytes;
  const from = s.start[i]!;
  const to = s.end[i]!;
  if (startsWithBom(b, from, to)) return pyWordCount(textAt(s, i)!);
  let words = 0;
  let inWord = false;
  for (let k = from; k < to; ) {
    const c = b[k]!;
    let space: boolean;
    if (c < 0x80) {
      space = ASCII_SPACE[c] === 1;
      k++;
    } else {
      const len = sequenceLength(b, k, to);
      if (len < 0) return pyWordCount(textAt(s, i)!);
      if (len === 2) space = isPySpace(((c & 0x1f) << 6) | (b[k + 1]! & 0x3f));
      else if (len === 3) space = isPySpace(((c & 0x0f) << 12) | ((b[k + 1]! & 0x3f) << 6) | (b[k + 2]! & 0x3f));
      else space = false; // no whitespace outside the BMP
      k += len;
    }
    if (!space && !inWord) words++;
    inWord = !space;
  }
  return words;
}

/**
 * measure(s, i) for every row (NaN for null; rows where `active` is 0 are left NaN), computed once per
 * dictionary entry where the chunk has a dictionary: equal bytes give equal results.
 */
export function perString(s: FlatStrings, measure: (s: FlatStrings, i: number) => number, active?: Uint8Array): Float64Array {
  const out = new Float64Array(s.length);
  const entry = s.entry;
  const memo = entry ? new Float64Array(entry.count).fill(-1) : undefined;
  for (let i = 0; i < s.length; i++) {
    if (active && !active[i]) {
      out[i] = NaN;
      continue;
    }
    const e = entry ? entry.of[i]! : -1;
    if (e < 0) out[i] = measure(s, i);
    else {
      let v = memo![e]!;
      if (v < 0) v = memo![e] = measure(s, i);
      out[i] = v;
    }
  }
  return out;
}

// ───────────────────────────── uids ─────────────────────────────

/**
 * The uid column as uid words (4 per row, record layout of the subset file: f0 low, f0 high, f1 low,
 * f1 high). `firstRow` numbers rows in errors. A uid that is not 32 hex digits is a FormatError: the
 * official `int(uid[:16], 16)` would fail on it too.
 */
export function uidWordsColumn(column: ColumnData, file: string, firstRow = 0): Uint32Array {
  if (isUidWords(column)) return column.words.slice();
  if (isFlat(column) && column.kind !== 'str') throw new FormatError(file, `column "uid" is ${column.typeName}, not a string`);
  if (!isFlat(column)) {
    for (const d of column.data) {
      if (d.type.typeId !== Type.Utf8 && d.type.typeId !== Type.LargeUtf8) throw new FormatError(file, `column "uid" is ${String(d.type)}, not a string`);
    }
  }
  const s = stringsOf(column, file, 'uid');
  const n = s.length;
  const words = new Uint32Array(n * 4);
  const { bytes, start, end, valid } = s;
  for (let i = 0; i < n; i++) {
    const from = start[i]!;
    let bad = (valid !== undefined && !valid[i]) || end[i]! - from !== 32;
    if (!bad) {
      const k = i * 4;
      // text order f0 high, f0 low, f1 high, f1 low → record order f0 low, f0 high, f1 low, f1 high
      for (let part = 0; part < 4; part++) {
        const p = from + part * 8;
        const a = HEX_PAIR[(bytes[p]! << 8) | bytes[p + 1]!]!;
        const b = HEX_PAIR[(bytes[p + 2]! << 8) | bytes[p + 3]!]!;
        const c = HEX_PAIR[(bytes[p + 4]! << 8) | bytes[p + 5]!]!;
        const d = HEX_PAIR[(bytes[p + 6]! << 8) | bytes[p + 7]!]!;
        if ((a | b | c | d) < 0) bad = true;
        words[k + (part ^ 1)] = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
      }
    }
    if (bad) {
      const isNull = valid !== undefined && !valid[i];
      const shown = isNull ? 'null' : JSON.stringify(decoder.decode(bytes.subarray(from, Math.min(end[i]!, from + 40))));
      throw new FormatError(file, `row ${firstRow + i}: uid ${shown} is not 32 hex digits`);
    }
  }
  return words;
}

/** 1 for the bytes of a hex digit. */
const IS_HEX = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') IS_HEX[c.charCodeAt(0)] = 1;

/**
 * The uid column, checked as uidWordsColumn checks it (same error, same row) but not yet parsed: filters
 * then parse only the rows they keep (pushUids).
 */
export function checkedUids(column: ColumnData, file: string, firstRow = 0): FlatStrings {
  if (isUidWords(column)) return uidStrings(column.words);
  if (!isFlat(column)) return uidStrings(uidWordsColumn(column, file, firstRow));
  if (column.kind !== 'str') throw new FormatError(file, `column "uid" is ${column.typeName}, not a string`);
  const { bytes, start, end, valid } = column;
  for (let i = 0; i < column.length; i++) {
    const from = start[i]!;
    let ok = (valid === undefined || valid[i] === 1) && end[i]! - from === 32 ? 1 : 0;
    for (let k = from; k < from + 32 && ok; k += 4) ok = IS_HEX[bytes[k]!]! & IS_HEX[bytes[k + 1]!]! & IS_HEX[bytes[k + 2]!]! & IS_HEX[bytes[k + 3]!]!;
    if (!ok) uidWordsColumn(column, file, firstRow); // throws the error for the first bad row
  }
  return column;
}

/** Parsed uid words (an Arrow column's, already checked) as 32-hex-digit byte ranges, for pushUids. */
function uidStrings(words: Uint32Array): FlatStrings {
  const n = words.length / 4;
  const bytes = new Uint8Array(n * 32);
  const start = new Int32Array(n);
  const end = new Int32Array(n);
  const hex = new TextEncoder().encode('0123456789abcdef');
  for (let i = 0; i < n; i++) {
    start[i] = i * 32;
    end[i] = i * 32 + 32;
    for (let part = 0; part < 4; part++) {
      const w = words[i * 4 + (part ^ 1)]!;
      for (let j = 0; j < 8; j++) bytes[i * 32 + part * 8 + j] = hex[(w >>> (28 - 4 * j)) & 15]!;
    }
  }
  return { kind: 'str', typeName: 'Utf8', length: n, bytes, start, end, valid: undefined };
}

/**
 * checkedUids, except that a column already parsed (UidWords: every row was checked as it was decoded)
 * is given back as it is, for pushUids.
 */
export function checkedUidColumn(column: ColumnData, file: string, firstRow = 0): FlatStrings | UidWords {
  return isUidWords(column) ? column : checkedUids(column, file, firstRow);
}

/** Appends the uid words of the rows of checked uids where mask is 1 (every row without a mask). */
export function pushUids(list: UidWordList, uids: FlatStrings | UidWords, mask?: Uint8Array): void {
  if (uids.kind === 'uid') {
    if (mask) list.pushMasked(uids.words, mask);
    else list.append(uids.words);
    return;
  }
  const { bytes, start } = uids;
  list.each(uids.length, mask, (out, o, i) => {
    const from = start[i]!;
    for (let part = 0; part < 4; part++) {
      const p = from + part * 8;
      const a = HEX_PAIR[(bytes[p]! << 8) | bytes[p + 1]!]!;
      const b = HEX_PAIR[(bytes[p + 2]! << 8) | bytes[p + 3]!]!;
      const c = HEX_PAIR[(bytes[p + 4]! << 8) | bytes[p + 5]!]!;
      const d = HEX_PAIR[(bytes[p + 6]! << 8) | bytes[p + 7]!]!;
      out[o + (part ^ 1)] = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
    }
  });
}

/** Growable uid word buffer. */
export class UidWordList {
  private words = new Uint32Array(4 * 1024);
  length = 0;

  private reserve(rows: number): void {
    if ((this.length + rows) * 4 <= this.words.length) return;
    const grown = new Uint32Array(Math.max(this.words.length * 2, (this.length + rows) * 4));
    grown.set(this.words.subarray(0, this.length * 4));
    this.words = grown;
  }

  /** Appends row i of `words` (4 words a row). */
  push(words: Uint32Array, i: number): void {
    this.reserve(1);
    const o = this.length * 4;
    const k = i * 4;
    this.words[o] = words[k]!;
    this.words[o + 1] = words[k + 1]!;
    this.words[o + 2] = words[k + 2]!;
    this.words[o + 3] = words[k + 3]!;
    this.length++;
  }

  /** Appends the rows where mask[i] is 1. */
  pushMasked(words: Uint32Array, mask: Uint8Array): void {
    this.reserve(mask.length);
    const out = this.words;
    let o = this.length * 4;
    for (let i = 0; i < mask.length; i++) {
      if (!mask[i]) continue;
      const k = i * 4;
      out[o] = words[k]!;
      out[o + 1] = words[k + 1]!;
      out[o + 2] = words[k + 2]!;
      out[o + 3] = words[k + 3]!;
      o += 4;
    }
    this.length = o / 4;
  }

  /** Appends one record per row where mask is 1 (every row without a mask), written by fill(out, offset, row). */
  each(rows: number, mask: Uint8Array | undefined, fill: (out: Uint32Array, offset: number, row: number) => void): void {
    this.reserve(rows);
    const out = this.words;
    let o = this.length * 4;
    for (let i = 0; i < rows; i++) {
      if (mask && !mask[i]) continue;
      fill(out, o, i);
      o += 4;
    }
    this.length = o / 4;
  }

  append(words: Uint32Array): void {
    this.reserve(words.length / 4);
    this.words.set(words, this.length * 4);
    this.length += words.length / 4;
  }

  finish(): Uint32Array {
    return this.words.slice(0, this.length * 4);
  }
}
