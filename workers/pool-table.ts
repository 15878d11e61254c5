/**
 * The Inspect view's table: the columns of a pool's metadata parquet files that a grid, a sort, a filter and
 * a histogram need, held as flat arrays (numbers as Float64Array with NaN for null), and the queries over
 * them. Plain TypeScript without DOM, so Node tests run it on the same Arrow tables the worker reads.
 *
 * Only `metadata/*.parquet` columns (and values derived from them) are columns here: the embedded pool's
 * ground truth is never loaded into the table, so no filter or sort can read it.
 */
import { Type, type Table, type Vector } from 'apache-arrow';
import { isSortedWords, sortUidWords, uidCount, uidsToWords } from '../src/core/formats/uid.ts';

export interface ColumnInfo {
  name: string;
  kind: 'number' | 'text';
  /** Computed from other columns (not in the parquet). */
  derived: boolean;
  /** What a derived column is. */
  description?: string;
  /** Finite range over all rows (numbers); 0 when there are none. */
  min: number;
  max: number;
  /** Rows without a value. */
  nulls: number;
  /** Every value is a whole number. */
  integer: boolean;
}

export interface PoolTable {
  rows: number;
  uid: string[];
  text: string[];
  /** The metadata `sha256` of each row's image bytes (null: none); absent when the parquet has no such column. */
  sha256?: (string | null)[];
  numbers: Map<string, Float64Array>;
  columns: ColumnInfo[];
  /** For each row: which metadata file (index into `files`) and which row of it. */
  fileOf: Uint32Array;
  rowInFile: Uint32Array;
  files: string[];
  /**
   * Keep/drop badges: bit `slot` of a row is set when badge filter `slot` (0: A, 1: B) keeps its uid;
   * `markSlots` has bit `slot` set while that filter is chosen (see `markRows`).
   */
  marks?: Uint8Array;
  markSlots?: number;
}

/** Badge filters A and B. */
export type MarkSlot = 0 | 1;

export type Range = [min: number | null, max: number | null];

export interface TableQuery {
  /** Words that must all occur in the caption (case-insensitive). */
  search?: string;
  /** Inclusive ranges on numeric columns; a row without a value fails a range on that column. */
  ranges?: Record<string, Range>;
  sort?: { column: string; descending: boolean } | null;
  /** Rows by the badge filters: `a: true` kept by A, `a: false` dropped by A; absent: either. */
  marks?: { a?: boolean; b?: boolean };
}

/** Rows in a view that the badge filters keep (null for a filter not chosen). */
export interface MarkCounts {
  a: number | null;
  b: number | null;
  /** Kept by both (null unless both are chosen). */
  both: number | null;
}

export interface RowView {
  row: number;
  uid: string;
  text: string;
  /** Values of the numeric columns, in `columns` order (null: no value). */
  values: (number | null)[];
  /** Cosine similarity to the sample a "more like this" ranking started from (only while one is shown). */
  similarity?: number | null;
  /** Badge bits (bit 0: kept by A, bit 1: kept by B), while a badge filter is chosen. */
  marks?: number;
}

export interface Histogram {
  column: string;
  /** Bin edges: bins[i] covers [edges[i], edges[i + 1]), the last bin includes its upper edge. */
  edges: number[];
  /** Rows per bin over the whole pool. */
  all: number[];
  /** Rows per bin that pass the search and every range except this column's own. */
  selected: number[];
  /** Rows without a value (not in any bin). */
  nulls: number;
  /** Smallest and largest value (the bins may reach past the largest). */
  min: number;
  max: number;
}

/**
 * The metadata columns read for the table: ids, captions and every numeric column, plus face_bboxes for a count
 * and sha256 for exact duplicates.
 */
export function wantedColumns(schemaFields: readonly { name: string; typeId: Type }[]): string[] {
  return schemaFields
    .filter((f) => f.name === 'uid' || f.name === 'text' || f.name === 'face_bboxes' || f.name === 'sha256' || f.typeId === Type.Int || f.typeId === Type.Float)
    .map((f) => f.name);
}

function toFloat64(vector: Vector): Float64Array {
  const out = new Float64Array(vector.length);
  let at = 0;
  for (const data of vector.data) {
    // Arrow slices value buffers to the data's own rows (only the validity bitmap keeps the offset).
    const values = data.values as ArrayLike<number | bigint>;
    const float16 = data.type.typeId === Type.Float && (data.type as { precision?: number }).precision === 0;
    for (let i = 0; i < data.length; i++) {
      out[at + i] = data.nullCount && !data.getValid(i) ? NaN : float16 ? Number(vector.get(at + i)) : Number(values[i]!);
    }
    at += data.length;
  }
  return out;
}

/** Python's len() of a str: code points, not UTF-16 units (the official caption-length filters count that way). */
export function codePointLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

function describeColumn(name: string, values: Float64Array, derived: boolean, description?: string): ColumnInfo {
  let min = Infinity;
  let max = -Infinity;
  let nulls = 0;
  let integer = true;
  for (const v of values) {
    if (Number.isNaN(v)) nulls++;
    else if (Number.isFinite(v)) {
      if (v < min) min = v;
      if (v > max) max = v;
      if (integer && !Number.isInteger(v)) integer = false;
    }
  }
  if (min > max) min = max = 0;
  return { name, kind: 'number', derived, description, min, max, nulls, integer };
}

/** Builds the table from metadata tables (one per parquet file, in the pool's file order). */
export function buildTable(parts: readonly { file: string; table: Table }[]): PoolTable {
  const rows = parts.reduce((n, p) => n + p.table.numRows, 0);
  const uid: string[] = new Array(rows);
  const text: string[] = new Array(rows);
  const fileOf = new Uint32Array(rows);
  const rowInFile = new Uint32Array(rows);
  const numericNames: string[] = [];
  for (const p of parts) {
    for (const f of p.table.schema.fields) {
      if ((f.typeId === Type.Int || f.typeId === Type.Float) && !numericNames.includes(f.name)) numericNames.push(f.name);
    }
  }
  const numbers = new Map<string, Float64Array>(numericNames.map((n) => [n, new Float64Array(rows).fill(NaN)]));
  const faces = new Float64Array(rows).fill(NaN);
  let hasFaces = false;
  const sha256: (string | null)[] = new Array(rows).fill(null);
  let hasSha256 = false;
  let at = 0;
  parts.forEach((p, fileIndex) => {
    const n = p.table.numRows;
    const uidCol = p.table.getChild('uid');
    const textCol = p.table.getChild('text');
    for (let i = 0; i < n; i++) {
      uid[at + i] = String(uidCol?.get(i) ?? '');
      text[at + i] = String(textCol?.get(i) ?? '');
      fileOf[at + i] = fileIndex;
      rowInFile[at + i] = i;
    }
    for (const name of numericNames) {
      const col = p.table.getChild(name);
      if (col) numbers.get(name)!.set(toFloat64(col), at);
    }
    const sha = p.table.getChild('sha256');
    if (sha) {
      hasSha256 = true;
      for (let i = 0; i < n; i++) {
        const v = sha.get(i) as string | null;
        sha256[at + i] = v === null ? null : String(v);
      }
    }
    const boxes = p.table.getChild('face_bboxes');
    if (boxes) {
      hasFaces = true;
      for (let i = 0; i < n; i++) {
        const list = boxes.get(i) as { length: number } | null;
        faces[at + i] = list === null ? NaN : list.length;
      }
    }
    at += n;
  });
  const columns = numericNames.map((name) => describeColumn(name, numbers.get(name)!, false));
  const captionLength = Float64Array.from(text, codePointLength);
  numbers.set('caption_length', captionLength);
  columns.push(describeColumn('caption_length', captionLength, true, 'characters in the caption (code points, as Python len)'));
  const w = numbers.get('original_width');
  const h = numbers.get('original_height');
  if (w && h) {
    const aspect = w.map((x, i) => (h[i]! > 0 ? x / h[i]! : NaN));
    numbers.set('aspect_ratio', aspect);
    columns.push(describeColumn('aspect_ratio', aspect, true, 'original_width / original_height'));
  }
  if (hasFaces) {
    numbers.set('face_count', faces);
    columns.push(describeColumn('face_count', faces, true, 'number of face_bboxes'));
  }
  columns.unshift(
    { name: 'uid', kind: 'text', derived: false, min: 0, max: 0, nulls: 0, integer: false },
    { name: 'text', kind: 'text', derived: false, min: 0, max: 0, nulls: 0, integer: false },
  );
  return { rows, uid, text, ...(hasSha256 ? { sha256 } : {}), numbers, columns, fileOf, rowInFile, files: parts.map((p) => p.file) };
}

/** Adds a derived numeric column (or replaces its values), e.g. each row's duplicate group size. */
export function setDerivedColumn(table: PoolTable, name: string, values: Float64Array, description: string): ColumnInfo {
  if (values.length !== table.rows) throw new Error(`${name}: ${values.length} values for ${table.rows} rows`);
  const existing = table.columns.findIndex((c) => c.name === name);
  if (existing >= 0 && !table.columns[existing]!.derived) throw new Error(`${name} is a metadata column`);
  const info = describeColumn(name, values, true, description);
  table.numbers.set(name, values);
  if (existing >= 0) table.columns[existing] = info;
  else table.columns.push(info);
  return info;
}

const lowered = new WeakMap<PoolTable, string[]>();

function lowerText(table: PoolTable): string[] {
  let out = lowered.get(table);
  if (!out) {
    out = table.text.map((t) => t.toLowerCase());
    lowered.set(table, out);
  }
  return out;
}

/** The mask and bits a row's marks must have for `marks`, or undefined when it asks nothing. */
function markTest(table: PoolTable, marks: TableQuery['marks']): { mask: number; value: number } | undefined {
  let mask = 0;
  let value = 0;
  for (const [slot, kept] of [[0, marks?.a], [1, marks?.b]] as const) {
    if (kept === undefined) continue;
    if (!table.marks || !((table.markSlots ?? 0) & (1 << slot))) throw new Error(`no filter ${slot ? 'B' : 'A'} is chosen for the keep/drop badges`);
    mask |= 1 << slot;
    if (kept) value |= 1 << slot;
  }
  return mask ? { mask, value } : undefined;
}

/** Whether the row passes the search, the ranges (all but `except`) and the badge filters. */
function rowFilter(table: PoolTable, query: TableQuery, except?: string): (row: number) => boolean {
  const terms = (query.search ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  const texts = terms.length ? lowerText(table) : [];
  const ranges = Object.entries(query.ranges ?? {})
    .filter(([name, [lo, hi]]) => name !== except && (lo !== null || hi !== null))
    .map(([name, [lo, hi]]) => {
      const values = table.numbers.get(name);
      if (!values) throw new Error(`no numeric column "${name}"`);
      return { values, lo: lo ?? -Infinity, hi: hi ?? Infinity };
    });
  const want = markTest(table, query.marks);
  return (row) => {
    if (want && (table.marks![row]! & want.mask) !== want.value) return false;
    for (const r of ranges) {
      const v = r.values[row]!;
      if (!(v >= r.lo && v <= r.hi)) return false; // NaN (no value) fails too
    }
    for (const t of terms) if (!texts[row]!.includes(t)) return false;
    return true;
  };
}

/** Row numbers that pass the query, in the query's order (stable: ties keep pool order; no value sorts last). */
export function runQuery(table: PoolTable, query: TableQuery): Uint32Array {
  const pass = rowFilter(table, query);
  const picked: number[] = [];
  for (let row = 0; row < table.rows; row++) if (pass(row)) picked.push(row);
  const sort = query.sort;
  if (sort) {
    const dir = sort.descending ? -1 : 1;
    const numbers = table.numbers.get(sort.column);
    if (numbers) {
      picked.sort((a, b) => {
        const x = numbers[a]!;
        const y = numbers[b]!;
        const xn = Number.isNaN(x);
        const yn = Number.isNaN(y);
        if (xn || yn) return xn === yn ? a - b : xn ? 1 : -1;
        return x === y ? a - b : (x < y ? -1 : 1) * dir;
      });
    } else if (sort.column === 'uid' || sort.column === 'text') {
      const strings = sort.column === 'uid' ? table.uid : table.text;
      picked.sort((a, b) => {
        const x = strings[a]!;
        const y = strings[b]!;
        return x === y ? a - b : (x < y ? -1 : 1) * dir;
      });
    } else {
      throw new Error(`no column "${sort.column}" to sort by`);
    }
  }
  return Uint32Array.from(picked);
}

/** Equal-width bins over the column's whole range (whole-number bins for whole-number columns). */
export function histogram(table: PoolTable, column: string, query: TableQuery, bins = 40): Histogram {
  const values = table.numbers.get(column);
  const info = table.columns.find((c) => c.name === column);
  if (!values || !info) throw new Error(`no numeric column "${column}"`);
  let { min, max } = info;
  let count = bins;
  let width: number;
  if (info.integer) {
    // Whole-number columns get whole-number bins [e, e + width): a brushed range snaps to integers exactly.
    const span = max - min + 1;
    width = Math.max(1, Math.ceil(span / bins));
    count = Math.ceil(span / width);
    max = min + count * width;
  } else if (max === min) {
    count = 1;
    width = 1;
    max = min + 1;
  } else {
    width = (max - min) / count;
  }
  const edges = Array.from({ length: count + 1 }, (_, i) => min + i * width);
  const all = new Array<number>(count).fill(0);
  const selected = new Array<number>(count).fill(0);
  const pass = rowFilter(table, query, column);
  let nulls = 0;
  for (let row = 0; row < table.rows; row++) {
    const v = values[row]!;
    if (!Number.isFinite(v)) {
      nulls++;
      continue;
    }
    const bin = Math.min(count - 1, Math.max(0, Math.floor((v - min) / width)));
    all[bin]!++;
    if (pass(row)) selected[bin]!++;
  }
  return { column, edges, all, selected, nulls, min: info.min, max: info.max };
}

/**
 * The rows at positions [start, end) of `order`, with the numeric columns in `columns` order (and each row's
 * similarity, when a ranking's scores are given).
 */
export function rowViews(table: PoolTable, order: Uint32Array, start: number, end: number, similarity?: Float64Array): RowView[] {
  const numeric = table.columns.filter((c) => c.kind === 'number').map((c) => table.numbers.get(c.name)!);
  const out: RowView[] = [];
  for (let i = Math.max(0, start); i < Math.min(end, order.length); i++) {
    const row = order[i]!;
    out.push({
      row,
      uid: table.uid[row]!,
      text: table.text[row]!,
      values: numeric.map((v) => (Number.isNaN(v[row]!) ? null : v[row]!)),
      ...(similarity ? { similarity: Number.isNaN(similarity[row]!) ? null : similarity[row]! } : {}),
      ...(table.markSlots ? { marks: table.marks![row]! } : {}),
    });
  }
  return out;
}

const uidWordCache = new WeakMap<PoolTable, { words: Uint32Array; valid: Uint8Array }>();

/** Each row's uid as uid words (4 a row); rows whose uid is not 32 hex digits are not `valid` (in no subset). */
function tableUidWords(table: PoolTable): { words: Uint32Array; valid: Uint8Array } {
  let got = uidWordCache.get(table);
  if (!got) {
    let words: Uint32Array;
    const valid = new Uint8Array(table.rows).fill(1);
    try {
      words = uidsToWords(table.uid, 'metadata');
    } catch {
      words = new Uint32Array(table.rows * 4);
      table.uid.forEach((u, row) => {
        try {
          words.set(uidsToWords([u]), row * 4);
        } catch {
          valid[row] = 0;
        }
      });
    }
    got = { words, valid };
    uidWordCache.set(table, got);
  }
  return got;
}

/** Whether uid `at` of `words` is in `sorted` (numpy's (f0, f1) order, repeats allowed): a binary search. */
function containsUid(sorted: Uint32Array, n: number, words: Uint32Array, at: number): boolean {
  // compare f0 high, f0 low, f1 high, f1 low (words 1, 0, 3, 2), as unsigned numbers
  const k1 = words[at + 1]!, k0 = words[at]!, k3 = words[at + 3]!, k2 = words[at + 2]!;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const b = mid * 4;
    const w1 = sorted[b + 1]!, w0 = sorted[b]!, w3 = sorted[b + 3]!, w2 = sorted[b + 2]!;
    const c = w1 !== k1 ? (w1 < k1 ? -1 : 1) : w0 !== k0 ? (w0 < k0 ? -1 : 1) : w3 !== k3 ? (w3 < k3 ? -1 : 1) : w2 !== k2 ? (w2 < k2 ? -1 : 1) : 0;
    if (c === 0) return true;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return false;
}

/**
 * Sets badge filter `slot` to the subset `words` (uid words, any order, repeats allowed; sorted here when they
 * are not): a row is kept when its uid is in the subset, as the resharder keeps samples. `null` clears the
 * slot. Returns the rows kept (over the whole pool).
 */
export function markRows(table: PoolTable, slot: MarkSlot, words: Uint32Array | null): number {
  const bit = 1 << slot;
  table.marks ??= new Uint8Array(table.rows);
  const marks = table.marks;
  if (!words) {
    for (let row = 0; row < table.rows; row++) marks[row]! &= ~bit;
    table.markSlots = (table.markSlots ?? 0) & ~bit;
    return 0;
  }
  const sorted = isSortedWords(words) ? words : sortUidWords(words.slice());
  const n = uidCount(sorted);
  const { words: uids, valid } = tableUidWords(table);
  let kept = 0;
  for (let row = 0; row < table.rows; row++) {
    if (valid[row] && containsUid(sorted, n, uids, row * 4)) {
      marks[row]! |= bit;
      kept++;
    } else {
      marks[row]! &= ~bit;
    }
  }
  table.markSlots = (table.markSlots ?? 0) | bit;
  return kept;
}

/** Rows of `order` (a view) that each chosen badge filter keeps, and both. */
export function markCounts(table: PoolTable, order: Uint32Array): MarkCounts {
  const slots = table.markSlots ?? 0;
  const marks = table.marks;
  let a = 0;
  let b = 0;
  let both = 0;
  if (marks && slots) {
    for (const row of order) {
      const m = marks[row]!;
      a += m & 1;
      b += (m >> 1) & 1;
      both += m === 3 ? 1 : 0;
    }
  }
  return { a: slots & 1 ? a : null, b: slots & 2 ? b : null, both: slots === 3 ? both : null };
}

/** An Arrow row as plain JSON values (int64 as numbers when exact, else strings; lists as arrays). */
export function plainValue(value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number | bigint>, plainValue);
  if (typeof (value as { toArray?: unknown }).toArray === 'function' && typeof (value as { length?: unknown }).length === 'number') {
    return Array.from((value as { toArray(): ArrayLike<unknown> }).toArray(), plainValue);
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return Object.fromEntries(Object.entries((value as { toJSON(): Record<string, unknown> }).toJSON()).map(([k, v]) => [k, plainValue(v)]));
  }
  return value;
}
