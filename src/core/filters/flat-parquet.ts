/**
 * A fast path for the flat metadata columns the filters read (strings, integers, floats at the top level
 * of the schema): a column chunk is decoded page by page straight into typed arrays — strings as start/end
 * offsets into one buffer of decompressed pages (no per-row object), numbers as float64 (null → NaN) — in
 * place of ParquetFile.read's general Dremel assembly into Arrow, which costs a JS object per value.
 *
 * It gives the same values as ParquetFile.read (test/unit/filter-flat.test.ts compares the two on files
 * with plain, dictionary and mixed pages, v1 and v2 pages, nulls and every codec). It is deliberately
 * narrow: anything unusual — another encoding or type, a page that does not add up, damaged compressed
 * data, a limit reached — throws NotFast, and the caller reads that chunk with ParquetFile.read instead,
 * which then either gives the values or the FormatError it always gave. So the checks here only decide
 * when to hand over, never what the user sees.
 */
import { gunzipSync } from 'fflate';
import { decompressZstd } from 'hyparquet-compressors';
import { snappyUncompressor } from 'hysnappy';
import type { ColumnMetaData, FileMetaData, PageHeader, SchemaElement } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { Type, type DataType, type Field } from 'apache-arrow';
import { DEFAULT_PARQUET_LIMITS, snappyDecompressInto } from '../formats/parquet.ts';

/** The fast path does not handle this chunk: read it with ParquetFile.read. */
export class NotFast extends Error {}
const notFast = (why: string): never => {
  throw new NotFast(why);
};

/** How the fast path reads one top-level column. */
export interface FlatPlan {
  name: string;
  chunkIndex: number;
  element: SchemaElement;
  optional: boolean;
  kind: 'str' | 'num';
  /** How an INT32/INT64 value is stored in the Arrow type ParquetFile.read gives (wrap to its width). */
  int: 'i8' | 'u8' | 'i16' | 'u16' | 'i32' | 'u32' | 'i64' | 'u64' | undefined;
  /** The Arrow type ParquetFile.read gives the column, as String(type) prints it (for error messages). */
  typeName: string;
  float32: boolean;
}

/** Strings of one row group: row i is bytes[start[i], end[i]), or null where valid[i] is 0. */
export interface FlatStrings {
  kind: 'str';
  typeName: string;
  length: number;
  bytes: Uint8Array;
  start: Int32Array;
  end: Int32Array;
  /** 1 = present; undefined when no row is null. */
  valid: Uint8Array | undefined;
  /**
   * Where the chunk has a dictionary: the dictionary entry of each row (-1 for rows stored plain, and for
   * nulls), so per-string work can be done once per entry. Rows of one entry have equal bytes.
   */
  entry?: { of: Int32Array; count: number };
}

/**
 * The uid column of one row group already checked and parsed (4 uid words a row: f0 low, f0 high, f1 low,
 * f1 high): what scanMetadata gives, when asked, where every row is a 32-hex-digit uid.
 */
export interface UidWords {
  kind: 'uid';
  length: number;
  words: Uint32Array;
}

/** Numbers of one row group as float64, null → NaN (as pandas reads a null int64 or float). */
export interface FlatNumbers {
  kind: 'num';
  typeName: string;
  float32: boolean;
  values: Float64Array;
}

/** The fast-path plan of a top-level column, or undefined when it is not a flat string/number column. */
export function flatPlan(metadata: FileMetaData, fields: readonly Field[], name: string): FlatPlan | undefined {
  const field = fields.find((f) => f.name === name);
  if (!field) return undefined;
  // top-level leaves of the schema, in column chunk order
  const schema = metadata.schema;
  let leaf = 0;
  let at = 1;
  let element: SchemaElement | undefined;
  let chunkIndex = -1;
  const skip = (): number => {
    // the number of leaves under schema[at], moving `at` past the subtree
    const el = schema[at++];
    if (!el) return notFast('schema');
    const kids = el.num_children ?? 0;
    if (!kids) return 1;
    let n = 0;
    for (let k = 0; k < kids; k++) n += skip();
    return n;
  };
  try {
    const top = schema[0]?.num_children ?? 0;
    for (let k = 0; k < top; k++) {
      const el = schema[at];
      if (el && !el.num_children && el.name === name) {
        element = el;
        chunkIndex = leaf;
      }
      leaf += skip();
    }
  } catch {
    return undefined;
  }
  if (!element || element.repetition_type === 'REPEATED') return undefined;
  const ctype = element.converted_type;
  const ltype = element.logical_type;
  const type: DataType = field.type;
  const base = { name, chunkIndex, element, optional: element.repetition_type === 'OPTIONAL', typeName: String(type) };
  if (ctype === 'DECIMAL' || ltype?.type === 'DECIMAL') return undefined;
  if (element.type === 'BYTE_ARRAY' && type.typeId === Type.Utf8) return { ...base, kind: 'str', int: undefined, float32: false };
  if (element.type === 'FLOAT' && type.typeId === Type.Float && !ltype) return { ...base, kind: 'num', int: undefined, float32: true };
  if (element.type === 'DOUBLE' && type.typeId === Type.Float && !ltype) return { ...base, kind: 'num', int: undefined, float32: false };
  if (type.typeId === Type.Int) {
    const { bitWidth, isSigned } = type as unknown as { bitWidth: number; isSigned: boolean };
    if (element.type === 'INT32' && bitWidth <= 32) {
      const int = (isSigned ? `i${bitWidth}` : `u${bitWidth}`) as FlatPlan['int'];
      return { ...base, kind: 'num', int, float32: false };
    }
    if (element.type === 'INT64' && bitWidth === 64) return { ...base, kind: 'num', int: isSigned ? 'i64' : 'u64', float32: false };
  }
  return undefined;
}

// ───────────────────────────── decompression ─────────────────────────────

/** The checked JS snappy decoder (parquet.ts), falling back to the full reader on damaged data. */
function snappyInto(input: Uint8Array, out: Uint8Array, at0: number, size: number): void {
  snappyDecompressInto(input, out, at0, size, (problem) => new NotFast(problem));
}

let wasmSnappy: ((input: Uint8Array, size: number) => Uint8Array) | undefined | null;

/**
 * Snappy through hysnappy's WebAssembly build of the reference decoder (2–3× the JS loop on the short
 * copies hex uids compress into); it refuses damaged input as the reference decoder does. Where
 * WebAssembly is unavailable, the checked JS decoder.
 */
function snappyWasmInto(input: Uint8Array, out: Uint8Array, at: number, size: number): void {
  if (wasmSnappy === undefined) {
    try {
      wasmSnappy = snappyUncompressor();
    } catch {
      wasmSnappy = null;
    }
  }
  if (!wasmSnappy) return snappyInto(input, out, at, size);
  // the declared length must be the page's (the decoder writes what the stream declares)
  let pos = 0;
  let declared = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= input.length || shift > 28) notFast('snappy length');
    const b = input[pos++]!;
    declared += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (declared !== size) notFast('snappy size');
  let got: Uint8Array;
  try {
    got = wasmSnappy(input, size);
  } catch {
    return notFast('snappy');
  }
  if (got.length !== size) notFast('snappy size');
  out.set(got, at);
}

/** Decompresses `input` into out[at, at + size). */
function decompressInto(codec: string, input: Uint8Array, out: Uint8Array, at: number, size: number): void {
  if (!(Number.isSafeInteger(size) && size >= 0) || size > DEFAULT_PARQUET_LIMITS.maxPageBytes) notFast('page size');
  const dest = out.subarray(at, at + size);
  switch (codec) {
    case 'UNCOMPRESSED':
      if (size !== input.length) notFast('uncompressed size');
      dest.set(input);
      return;
    case 'SNAPPY':
      if (size > input.length * 22 + 32) notFast('snappy ratio');
      snappyWasmInto(input, out, at, size);
      return;
    case 'GZIP': {
      if (size > input.length * 1032 + 1024 || input.length < 18) notFast('gzip size');
      let got: Uint8Array;
      try {
        got = gunzipSync(input, { out: dest });
      } catch {
        return notFast('gzip');
      }
      if (got.length !== size) notFast('gzip size');
      if (got.buffer !== dest.buffer || got.byteOffset !== dest.byteOffset) dest.set(got);
      return;
    }
    case 'ZSTD': {
      let got: Uint8Array;
      try {
        got = decompressZstd(input, dest);
      } catch {
        return notFast('zstd');
      }
      if (got.length !== size) notFast('zstd size');
      if (got.buffer !== dest.buffer || got.byteOffset !== dest.byteOffset) dest.set(got);
      return;
    }
    default:
      notFast(`codec ${codec}`);
  }
}

// ───────────────────────────── RLE / bit-packed hybrid ─────────────────────────────

/**
 * Decodes `count` values of width `width` from the hybrid runs in bytes[pos, end) into out[0, count),
 * with the same run rules the general reader checks (an RLE run may not pass the count, a bit-packed run
 * may not pass the bytes). Returns the position after the last run used.
 */
function decodeHybrid(bytes: Uint8Array, pos: number, end: number, width: number, count: number, out: Int32Array): number {
  if (width > 32) notFast('bit width');
  const valueBytes = (width + 7) >> 3;
  const mask = width >= 32 ? 0xffffffff : (1 << width) - 1;
  let seen = 0;
  while (seen < count) {
    let header = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= end || shift > 28) notFast('runs');
      const b = bytes[pos++]!;
      header |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (header & 1) {
      const groups = header >> 1;
      const n = groups * 8;
      if (groups <= 0 || (width === 0 ? n > count - seen + 7 : pos + groups * width > end)) notFast('bit-packed run');
      const take = Math.min(n, count - seen);
      if (width === 0) {
        out.fill(0, seen, seen + take);
      } else if (width === 1) {
        // definition levels of an optional column: a byte is eight rows
        const full = take >> 3;
        let o = seen;
        for (let k = 0; k < full; k++, o += 8) {
          const b = bytes[pos + k]!;
          out[o] = b & 1; out[o + 1] = (b >> 1) & 1; out[o + 2] = (b >> 2) & 1; out[o + 3] = (b >> 3) & 1;
          out[o + 4] = (b >> 4) & 1; out[o + 5] = (b >> 5) & 1; out[o + 6] = (b >> 6) & 1; out[o + 7] = b >> 7;
        }
        for (let i = full * 8; i < take; i++) out[seen + i] = (bytes[pos + (i >> 3)]! >> (i & 7)) & 1;
      } else if (width <= 24) {
        // a 4-byte window holds any value of ≤ 25 bits; windows that would pass the buffer's end read bit by bit
        const safe = bytes.length - 3;
        for (let i = 0; i < take; i++) {
          const bit = i * width;
          const p = pos + (bit >> 3);
          if (p < safe) {
            const word = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24);
            out[seen + i] = (word >>> (bit & 7)) & mask;
          } else {
            let v = 0;
            for (let b = 0; b < width; b++) v |= ((bytes[pos + ((bit + b) >> 3)]! >> ((bit + b) & 7)) & 1) << b;
            out[seen + i] = v;
          }
        }
      } else {
        for (let i = 0; i < take; i++) {
          let v = 0;
          for (let b = 0; b < width; b++) {
            const bit = i * width + b;
            v += ((bytes[pos + (bit >> 3)]! >> (bit & 7)) & 1) * 2 ** b;
          }
          out[seen + i] = v;
        }
      }
      pos += groups * width;
      seen += n;
    } else {
      const n = header >>> 1;
      if (n > count - seen) notFast('rle run');
      if (pos + valueBytes > end) notFast('rle value');
      let v = 0;
      for (let i = 0; i < valueBytes; i++) v += bytes[pos + i]! * 2 ** (8 * i);
      pos += valueBytes;
      out.fill(v, seen, seen + n);
      seen += n;
    }
  }
  return pos;
}

// ───────────────────────────── chunks ─────────────────────────────

/** Scratch buffers reused between chunks (one decode at a time). */
let scratchInts = new Int32Array(1 << 16);
let scratchBytes = new Uint8Array(1 << 20);
const ints = (n: number): Int32Array => (scratchInts.length >= n ? scratchInts : (scratchInts = new Int32Array(Math.max(n, scratchInts.length * 2))));
const bytesOf = (n: number): Uint8Array => (scratchBytes.length >= n ? scratchBytes : (scratchBytes = new Uint8Array(Math.max(n, scratchBytes.length * 2))));

interface Sink {
  /**
   * `present` plain values, for the rows listed in `rows` (or, when `rows` is undefined, for the rows
   * first, first + 1, … : a page without nulls).
   */
  plain(page: Uint8Array, pos: number, present: number, rows: Int32Array | undefined, first: number): void;
  dictionary(page: Uint8Array, pos: number, n: number): void;
  /** `present` dictionary indices, rows as for plain(). */
  indexed(indices: Int32Array, present: number, rows: Int32Array | undefined, first: number): void;
  /** Marks a row as null. */
  null(row: number): void;
  /** Where decompressed page bytes go (strings keep them; numbers use scratch). */
  arena(size: number): { buf: Uint8Array; at: number };
  keep(size: number): void;
}

/**
 * Decodes one column chunk of a flat column (`rows` rows) into the sink. Throws NotFast for anything the
 * fast path does not handle or that does not add up.
 */
function decodeFlatChunk(chunk: Uint8Array, meta: ColumnMetaData, plan: FlatPlan, rows: number, sink: Sink): void {
  if (meta.type !== plan.element.type) notFast('type');
  if (rows > DEFAULT_PARQUET_LIMITS.maxRows) notFast('rows');
  const reader = { view: new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength), offset: 0 };
  let row = 0;
  let spent = 0;
  let hasDictionary = false;
  // rows (within the group) of the present values of the current page
  let presentRows = new Int32Array(0);
  while (reader.offset < chunk.byteLength - 1) {
    if (row === rows) notFast('bytes after the last row');
    let header: PageHeader;
    try {
      header = parquetHeader(reader) as PageHeader;
    } catch {
      return notFast('page header');
    }
    const compressed = header.compressed_page_size;
    const pageStart = reader.offset;
    if (!(Number.isSafeInteger(compressed) && compressed >= 0) || pageStart + compressed > chunk.byteLength) notFast('page size');
    const raw = chunk.subarray(pageStart, pageStart + compressed);
    reader.offset += compressed;
    const size = header.uncompressed_page_size;
    if (header.type === 'DICTIONARY_PAGE') {
      const n = header.dictionary_page_header?.num_values;
      if (hasDictionary || !(Number.isSafeInteger(n) && n! >= 0)) notFast('dictionary');
      spent += n!;
      if (spent > DEFAULT_PARQUET_LIMITS.maxValues) notFast('values');
      const { buf, at } = sink.arena(size);
      decompressInto(meta.codec, raw, buf, at, size);
      sink.keep(size);
      sink.dictionary(buf.subarray(at, at + size), 0, n!);
      hasDictionary = true;
    } else if (header.type === 'DATA_PAGE' || header.type === 'DATA_PAGE_V2') {
      const v2 = header.type === 'DATA_PAGE_V2';
      const h = v2 ? header.data_page_header_v2 : header.data_page_header;
      if (!h) return notFast('data page header');
      const n = h.num_values;
      if (!(Number.isSafeInteger(n) && n >= 0) || row + n > rows) notFast('value count');
      spent += n;
      if (spent > DEFAULT_PARQUET_LIMITS.maxValues) notFast('values');
      const encoding = h.encoding;
      const dict = encoding === 'PLAIN_DICTIONARY' || encoding === 'RLE_DICTIONARY';
      if (encoding !== 'PLAIN' && !dict) notFast(`encoding ${encoding}`);
      if (dict && !hasDictionary) notFast('no dictionary');
      let page: Uint8Array;
      let pos = 0;
      let levels: Uint8Array;
      let levelsAt = 0;
      let levelsEnd = 0;
      if (!v2) {
        const d1 = header.data_page_header!;
        const { buf, at } = sink.arena(size);
        decompressInto(meta.codec, raw, buf, at, size);
        sink.keep(size);
        page = buf.subarray(at, at + size);
        levels = page;
        if (plan.optional) {
          if (d1.definition_level_encoding !== 'RLE' || page.length < 4) notFast('levels');
          const length = (page[0]! | (page[1]! << 8) | (page[2]! << 16) | (page[3]! << 24)) >>> 0;
          levelsAt = 4;
          levelsEnd = 4 + length;
          if (levelsEnd > page.length) notFast('levels');
          pos = levelsEnd;
        }
      } else {
        const d2 = header.data_page_header_v2!;
        const repLength = d2.repetition_levels_byte_length;
        const defLength = d2.definition_levels_byte_length;
        if (!(Number.isSafeInteger(d2.num_nulls) && d2.num_nulls >= 0 && d2.num_nulls <= n && d2.num_rows === n)) notFast('v2 counts');
        if (repLength !== 0 || !(Number.isSafeInteger(defLength) && defLength >= 0) || defLength > raw.length) notFast('v2 levels');
        if (!plan.optional && defLength) notFast('v2 levels');
        levels = raw;
        levelsAt = 0;
        levelsEnd = defLength;
        const valueSize = size - defLength;
        if (!(valueSize >= 0)) notFast('v2 size');
        const { buf, at } = sink.arena(valueSize);
        if (d2.is_compressed !== false && valueSize > 0) decompressInto(meta.codec, raw.subarray(defLength), buf, at, valueSize);
        else {
          if (raw.length - defLength !== valueSize) notFast('v2 size');
          buf.set(raw.subarray(defLength), at);
        }
        sink.keep(valueSize);
        page = buf.subarray(at, at + valueSize);
        pos = 0;
      }
      // definition levels → the rows that hold a value
      if (presentRows.length < n) presentRows = new Int32Array(Math.max(n, presentRows.length * 2));
      let present = n;
      if (plan.optional) {
        const defs = ints(n);
        decodeHybrid(levels, levelsAt, levelsEnd, 1, n, defs);
        let ones = 0;
        let above = 0;
        for (let k = 0; k < n; k++) {
          ones += defs[k]!;
          above |= defs[k]! >>> 1;
        }
        if (above) notFast('level');
        if (ones < n) {
          // some nulls: list the rows with values
          present = 0;
          for (let k = 0; k < n; k++) {
            if (defs[k] === 1) presentRows[present++] = row + k;
            else sink.null(row + k);
          }
        }
        if (v2 && n - present !== header.data_page_header_v2!.num_nulls) notFast('v2 nulls');
      }
      const rowsOf = present === n ? undefined : presentRows;
      if (dict) {
        if (present > 0) {
          if (pos >= page.length) notFast('index width');
          const w = page[pos]!;
          if (w > 32) notFast('index width');
          const idx = ints(present);
          if (w) decodeHybrid(page, pos + 1, page.length, w, present, idx);
          else idx.fill(0, 0, present);
          sink.indexed(idx, present, rowsOf, row);
        }
      } else {
        sink.plain(page, pos, present, rowsOf, row);
      }
      row += n;
    } else if (header.type !== 'INDEX_PAGE') {
      notFast('page type');
    }
  }
  if (row !== rows) notFast('row count');
}

/** The strings of a flat BYTE_ARRAY (UTF8) column chunk. */
export function decodeFlatStrings(chunk: Uint8Array, meta: ColumnMetaData, plan: FlatPlan, rows: number): FlatStrings {
  // decompressed pages live in one buffer; strings are offsets into it
  let buf = new Uint8Array(Math.max(1024, Math.min(Number(meta.total_uncompressed_size) || 0, chunk.length * 22 + 1024)));
  let used = 0;
  const start = new Int32Array(rows);
  const end = new Int32Array(rows);
  let valid: Uint8Array | undefined;
  let dictStart = new Int32Array(0);
  let dictEnd = new Int32Array(0);
  let dictSize = 0;
  let entryOf: Int32Array | undefined;
  let pageBase = 0;
  const sink: Sink = {
    arena(size) {
      if (used + size > buf.length) {
        if (used + size > 0x7fffffff) notFast('2 GiB');
        const grown = new Uint8Array(Math.min(0x7fffffff, Math.max(used + size, buf.length * 2)));
        grown.set(buf.subarray(0, used));
        buf = grown;
      }
      pageBase = used;
      return { buf, at: used };
    },
    keep(size) {
      used += size;
    },
    dictionary(page, pos, n) {
      dictStart = new Int32Array(n);
      dictEnd = new Int32Array(n);
      dictSize = n;
      entryOf = new Int32Array(rows).fill(-1);
      eachByteArray(page, pos, n, (i, at, l) => {
        dictStart[i] = pageBase + at;
        dictEnd[i] = pageBase + at + l;
      });
    },
    plain(page, pos, present, rowsOf, first) {
      const len = page.length;
      for (let k = 0; k < present; k++) {
        if (pos + 4 > len) notFast('values');
        const l = (page[pos]! | (page[pos + 1]! << 8) | (page[pos + 2]! << 16) | (page[pos + 3]! << 24)) >>> 0;
        pos += 4;
        if (pos + l > len) notFast('values');
        const r = rowsOf ? rowsOf[k]! : first + k;
        start[r] = pageBase + pos;
        end[r] = pageBase + pos + l;
        pos += l;
      }
    },
    indexed(idx, present, rowsOf, first) {
      for (let k = 0; k < present; k++) {
        const i = idx[k]!;
        if (i >= dictSize) notFast('dictionary index');
        const r = rowsOf ? rowsOf[k]! : first + k;
        start[r] = dictStart[i]!;
        end[r] = dictEnd[i]!;
        entryOf![r] = i;
      }
    },
    null(r) {
      if (!valid) valid = new Uint8Array(rows).fill(1);
      valid[r] = 0;
    },
  };
  decodeFlatChunk(chunk, meta, plan, rows, sink);
  const out: FlatStrings = { kind: 'str', typeName: plan.typeName, length: rows, bytes: buf.subarray(0, used), start, end, valid };
  if (entryOf) out.entry = { of: entryOf, count: dictSize };
  return out;
}

/** The numbers of a flat INT32/INT64/FLOAT/DOUBLE column chunk, as float64 with null → NaN. */
export function decodeFlatNumbers(chunk: Uint8Array, meta: ColumnMetaData, plan: FlatPlan, rows: number): FlatNumbers {
  const values = new Float64Array(rows);
  let dict = new Float64Array(0);
  const width = plan.element.type === 'INT32' || plan.element.type === 'FLOAT' ? 4 : 8;
  const read = readerFor(plan);
  const sink: Sink = {
    arena(size) {
      return { buf: bytesOf(size), at: 0 };
    },
    keep() {},
    dictionary(page, pos, n) {
      if (pos + n * width > page.length) notFast('dictionary values');
      dict = new Float64Array(n);
      const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
      for (let i = 0; i < n; i++) dict[i] = read(view, pos + i * width);
    },
    plain(page, pos, present, rowsOf, first) {
      if (pos + present * width > page.length) notFast('values');
      const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
      if (rowsOf) for (let k = 0; k < present; k++) values[rowsOf[k]!] = read(view, pos + k * width);
      else for (let k = 0; k < present; k++) values[first + k] = read(view, pos + k * width);
    },
    indexed(idx, present, rowsOf, first) {
      const n = dict.length;
      for (let k = 0; k < present; k++) if (idx[k]! >= n) notFast('dictionary index');
      if (rowsOf) for (let k = 0; k < present; k++) values[rowsOf[k]!] = dict[idx[k]!]!;
      else for (let k = 0; k < present; k++) values[first + k] = dict[idx[k]!]!;
    },
    null(r) {
      values[r] = NaN;
    },
  };
  decodeFlatChunk(chunk, meta, plan, rows, sink);
  return { kind: 'num', typeName: plan.typeName, float32: plan.float32, values };
}

/** Visits n PLAIN byte arrays (a 4-byte little-endian length, then the bytes) from `pos`; NotFast past the page. */
function eachByteArray(page: Uint8Array, pos: number, n: number, visit: (i: number, at: number, length: number) => void): void {
  const len = page.length;
  for (let i = 0; i < n; i++) {
    if (pos + 4 > len) notFast('dictionary values');
    const l = (page[pos]! | (page[pos + 1]! << 8) | (page[pos + 2]! << 16) | (page[pos + 3]! << 24)) >>> 0;
    pos += 4;
    if (pos + l > len) notFast('dictionary values');
    visit(i, pos, l);
    pos += l;
  }
}

/** Two hex digits (as the 16-bit big-endian pair of their bytes) → their byte value, or -1. */
export const HEX_PAIR = new Int16Array(65536).fill(-1);
{
  const digits: [number, number][] = [];
  for (let i = 0; i < 10; i++) digits.push([0x30 + i, i]);
  for (let i = 0; i < 6; i++) digits.push([0x61 + i, 10 + i], [0x41 + i, 10 + i]);
  for (const [a, va] of digits) for (const [b, vb] of digits) HEX_PAIR[(a << 8) | b] = (va << 4) | vb;
}

/**
 * Parses the 32 hex digits at bytes[p, p + 32) into words[o, o + 4) (text order f0 high, f0 low, f1 high,
 * f1 low → record order f0 low, f0 high, f1 low, f1 high); false where a byte is not a hex digit.
 */
function parseUidAt(bytes: Uint8Array, p: number, words: Uint32Array, o: number): boolean {
  let bad = 0;
  for (let part = 0; part < 4; part++, p += 8) {
    const a = HEX_PAIR[(bytes[p]! << 8) | bytes[p + 1]!]!;
    const b = HEX_PAIR[(bytes[p + 2]! << 8) | bytes[p + 3]!]!;
    const c = HEX_PAIR[(bytes[p + 4]! << 8) | bytes[p + 5]!]!;
    const d = HEX_PAIR[(bytes[p + 6]! << 8) | bytes[p + 7]!]!;
    bad |= a | b | c | d;
    words[o + (part ^ 1)] = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
  }
  return bad >= 0;
}

/**
 * The uid column chunk parsed straight from its decompressed pages into uid words, without keeping the
 * pages or a start/end per row: the filters' uid check and parse in one pass while the page is in cache.
 * Any row that is not a 32-hex-digit uid (a null, another length, another byte) throws NotFast like
 * anything else unusual, so the caller takes the string path, whose check (checkedUids) reports it.
 */
export function decodeFlatUids(chunk: Uint8Array, meta: ColumnMetaData, plan: FlatPlan, rows: number): UidWords {
  if (plan.kind !== 'str') notFast('uid type');
  const words = new Uint32Array(rows * 4);
  let dict = new Uint32Array(0);
  let dictSize = 0;
  const sink: Sink = {
    arena(size) {
      return { buf: bytesOf(size), at: 0 };
    },
    keep() {},
    dictionary(page, pos, n) {
      dict = new Uint32Array(n * 4);
      dictSize = n;
      // an entry that is not a uid hands the chunk to the string path, which reports it if a row uses it
      eachByteArray(page, pos, n, (i, at, l) => {
        if (l !== 32 || !parseUidAt(page, at, dict, i * 4)) notFast('uid');
      });
    },
    plain(page, pos, present, rowsOf, first) {
      const len = page.length;
      for (let k = 0; k < present; k++) {
        if (pos + 36 > len) notFast('values');
        if (page[pos] !== 32 || page[pos + 1] !== 0 || page[pos + 2] !== 0 || page[pos + 3] !== 0) notFast('uid');
        const r = rowsOf ? rowsOf[k]! : first + k;
        if (!parseUidAt(page, pos + 4, words, r * 4)) notFast('uid');
        pos += 36;
      }
    },
    indexed(idx, present, rowsOf, first) {
      for (let k = 0; k < present; k++) {
        const i = idx[k]!;
        if (i >= dictSize) notFast('dictionary index');
        const o = (rowsOf ? rowsOf[k]! : first + k) * 4;
        words[o] = dict[i * 4]!;
        words[o + 1] = dict[i * 4 + 1]!;
        words[o + 2] = dict[i * 4 + 2]!;
        words[o + 3] = dict[i * 4 + 3]!;
      }
    },
    null() {
      notFast('uid null');
    },
  };
  decodeFlatChunk(chunk, meta, plan, rows, sink);
  return { kind: 'uid', length: rows, words };
}

/** A value as ParquetFile.read's Arrow buffer would hold it, then as float64 (numberColumn's Number(v)). */
function readerFor(plan: FlatPlan): (view: DataView, at: number) => number {
  switch (plan.element.type) {
    case 'FLOAT':
      return (v, at) => v.getFloat32(at, true);
    case 'DOUBLE':
      return (v, at) => v.getFloat64(at, true);
    case 'INT32':
      switch (plan.int) {
        case 'i8': return (v, at) => (v.getInt32(at, true) << 24) >> 24;
        case 'u8': return (v, at) => v.getInt32(at, true) & 0xff;
        case 'i16': return (v, at) => (v.getInt32(at, true) << 16) >> 16;
        case 'u16': return (v, at) => v.getInt32(at, true) & 0xffff;
        case 'u32': return (v, at) => v.getUint32(at, true);
        default: return (v, at) => v.getInt32(at, true);
      }
    default:
      // hi · 2^32 is exact and one addition rounds once: the same double as Number(bigint)
      return plan.int === 'u64'
        ? (v, at) => v.getUint32(at + 4, true) * 4294967296 + v.getUint32(at, true)
        : (v, at) => v.getInt32(at + 4, true) * 4294967296 + v.getUint32(at, true);
  }
}
/** The two snappy decoders (checked JS, WebAssembly), exported for the test that compares them. */
export const decodeSnappyChecked = snappyInto;
export const decodeSnappyWasm = snappyWasmInto;
