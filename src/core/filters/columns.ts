/**
 * Plain arrays from the Arrow columns that ParquetFile.read returns, for vectorised filter passes:
 * numbers as Float64Array (null → NaN, as pandas turns a null int64/float into NaN), strings as
 * (string | null)[], uids as uid words parsed straight from the UTF-8 bytes (no string per row).
 */
import { Type, type Data, type Vector } from 'apache-arrow';
import { FormatError } from '../formats/errors.ts';

function isValid(d: Data, i: number): boolean {
  if (!d.nullBitmap || d.nullCount === 0) return true;
  const j = d.offset + i;
  return ((d.nullBitmap[j >> 3]! >> (j & 7)) & 1) === 1;
}

/** Any numeric column (ints, int64, float32/64) as float64, null → NaN. */
export function numberColumn(column: Vector, file: string, name: string): Float64Array {
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
export function isFloat32Column(column: Vector): boolean {
  return column.type.typeId === Type.Float && (column.type as { precision: number }).precision === 1;
}

/** A string column as JS strings, null kept as null. */
export function stringColumn(column: Vector, file: string, name: string): (string | null)[] {
  const out: (string | null)[] = new Array(column.length);
  const decoder = new TextDecoder();
  let at = 0;
  for (const d of column.data) {
    if (d.type.typeId !== Type.Utf8 && d.type.typeId !== Type.LargeUtf8) throw new FormatError(file, `column "${name}" is ${String(d.type)}, not a string`);
    const offsets = d.valueOffsets as ArrayLike<number | bigint>;
    const bytes = d.values as Uint8Array;
    for (let i = 0; i < d.length; i++) {
      out[at + i] = isValid(d, i) ? decoder.decode(bytes.subarray(Number(offsets[d.offset + i]!), Number(offsets[d.offset + i + 1]!))) : null;
    }
    at += d.length;
  }
  return out;
}

/** A list column's lengths (null list → NaN). */
export function listLengthColumn(column: Vector, file: string, name: string): Float64Array {
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

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEX[0x61 + i] = HEX[0x41 + i] = 10 + i;

/**
 * The uid column as uid words (4 per row, record layout of the subset file: f0 low, f0 high, f1 low,
 * f1 high). `firstRow` numbers rows in errors. A uid that is not 32 hex digits is a FormatError: the
 * official `int(uid[:16], 16)` would fail on it too.
 */
export function uidWordsColumn(column: Vector, file: string, firstRow = 0): Uint32Array {
  const words = new Uint32Array(column.length * 4);
  let at = 0;
  for (const d of column.data) {
    if (d.type.typeId !== Type.Utf8 && d.type.typeId !== Type.LargeUtf8) throw new FormatError(file, `column "uid" is ${String(d.type)}, not a string`);
    const offsets = d.valueOffsets as ArrayLike<number | bigint>;
    const bytes = d.values as Uint8Array;
    for (let i = 0; i < d.length; i++) {
      const from = Number(offsets[d.offset + i]!);
      const to = Number(offsets[d.offset + i + 1]!);
      let bad = !isValid(d, i) || to - from !== 32;
      const k = (at + i) * 4;
      for (let part = 0; part < 4 && !bad; part++) {
        let w = 0;
        for (let j = 0; j < 8; j++) {
          const v = HEX[bytes[from + part * 8 + j]!]!;
          if (v < 0) bad = true;
          w = (w << 4) | (v & 0xf);
        }
        // text order f0 high, f0 low, f1 high, f1 low → record order f0 low, f0 high, f1 low, f1 high
        words[k + (part ^ 1)] = w >>> 0;
      }
      if (bad) {
        const shown = isValid(d, i) ? JSON.stringify(new TextDecoder().decode(bytes.subarray(from, Math.min(to, from + 40)))) : 'null';
        throw new FormatError(file, `row ${firstRow + at + i}: uid ${shown} is not 32 hex digits`);
      }
    }
    at += d.length;
  }
  return words;
}

/** Growable uid word buffer. */
export class UidWordList {
  private words = new Uint32Array(4 * 1024);
  length = 0;

  /** Appends row i of `words` (4 words a row). */
  push(words: Uint32Array, i: number): void {
    if ((this.length + 1) * 4 > this.words.length) {
      const grown = new Uint32Array(this.words.length * 2);
      grown.set(this.words);
      this.words = grown;
    }
    this.words.set(words.subarray(i * 4, i * 4 + 4), this.length * 4);
    this.length++;
  }

  /** Appends the rows where mask[i] is 1. */
  pushMasked(words: Uint32Array, mask: Uint8Array): void {
    for (let i = 0; i < mask.length; i++) if (mask[i]) this.push(words, i);
  }

  append(words: Uint32Array): void {
    for (let i = 0; i < words.length / 4; i++) this.push(words, i);
  }

  finish(): Uint32Array {
    return this.words.slice(0, this.length * 4);
  }
}
