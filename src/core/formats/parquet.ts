/**
 * Parquet ↔ Arrow for the CommonPool metadata (and any other flat or list-typed parquet a user brings).
 *
 * Reading uses hyparquet's page decoders, driven from here page by page: hyparquet trusts the sizes and
 * counts in a file (a run-length header can make it write billions of entries, a page header can make it
 * allocate gigabytes), so every page header, every level run and every value section is checked against
 * the bytes that are really there, and against configurable limits, before hyparquet touches it. Levels
 * are then turned straight into Arrow buffers (offsets, validity bitmaps, typed value arrays), so an
 * int64 column arrives as a BigInt64Array and list<list<float64>> as nested Arrow lists.
 *
 * Writing uses hyparquet-writer with an explicit schema, so the file carries the types pandas/pyarrow and
 * DuckDB expect: strings as BYTE_ARRAY + UTF8/STRING, INT64, FLOAT, DOUBLE, and lists in the standard
 * three-level form (`optional group x (LIST) { repeated group list { optional element } }`).
 *
 * Sources are read by byte ranges (only the footer and the column chunks of the selected row groups
 * and columns), so a 100 MB file on disk, in a Blob or behind HTTP ranges costs what the query needs.
 */
import {
  Binary, Bool, DataType, DateDay, type Dictionary, Field, FixedSizeBinary, Float32, Float64, Int8, Int16, Int32, Int64, List,
  RecordBatch, Schema, Struct, Table, TimeMicrosecond, TimeMillisecond, TimeNanosecond, TimestampMicrosecond,
  TimestampMillisecond, TimestampNanosecond, Type, Uint8, Uint16, Uint32, Uint64, Utf8, makeData,
  type Data, type Vector,
} from 'apache-arrow';
import { gunzipSync, gzipSync } from 'fflate';
import { decompressZstd } from 'hyparquet-compressors';
import {
  parquetMetadata, parquetSchema,
  type ColumnMetaData, type CompressionCodec, type DecodedArray, type FileMetaData, type PageHeader,
  type SchemaElement, type SchemaTree,
} from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { convert } from 'hyparquet/src/convert.js';
import { readDataPage, readDataPageV2 } from 'hyparquet/src/datapage.js';
import { readPlain } from 'hyparquet/src/plain.js';
import { ByteWriter, parquetWrite } from 'hyparquet-writer';
import { FormatError } from './errors.ts';

// ───────────────────────────── public types ─────────────────────────────

/** Anything that can hand out byte ranges of a file: hyparquet's AsyncBuffer has this shape. */
export interface ByteSource {
  byteLength: number;
  slice(start: number, end: number): ArrayBuffer | Uint8Array | Promise<ArrayBuffer | Uint8Array>;
}

/** A parquet file: whole in memory, a Blob/File, or a ranged source (file handle, HTTP ranges). */
export type ParquetSource = Uint8Array | ArrayBuffer | Blob | ByteSource;

/** Bounds on what a file may make the reader allocate; a file beyond them is refused with a FormatError. */
export interface ParquetLimits {
  /** Largest footer (thrift file metadata). */
  maxMetadataBytes: number;
  /** Largest uncompressed page. */
  maxPageBytes: number;
  /** Most rows one read may return. */
  maxRows: number;
  /** Most level slots (values, nulls, empty-list markers) one column may decode in one read. */
  maxValues: number;
}

export const DEFAULT_PARQUET_LIMITS: Readonly<ParquetLimits> = Object.freeze({
  maxMetadataBytes: 64 << 20,
  maxPageBytes: 256 << 20,
  maxRows: 1 << 25,
  maxValues: 1 << 26,
});

export interface ParquetReadOptions {
  /** Top-level columns to read, in this order (default: all, in file order). */
  columns?: readonly string[];
  /** First row to read (inclusive, default 0). */
  rowStart?: number;
  /** Row to stop before (exclusive, default: the end of the file). */
  rowEnd?: number;
}

export interface ParquetColumnSummary {
  name: string;
  /** The Arrow type the reader gives this column, e.g. `List<List<Float64>>`; `unsupported` if none. */
  arrowType: string;
  /** The parquet type, e.g. `BYTE_ARRAY (STRING)`, `LIST<LIST<DOUBLE>>`. */
  parquetType: string;
  nullable: boolean;
  /** Why the reader cannot read this column (structs, maps), if it cannot. */
  problem?: string;
}

export interface ParquetSchemaSummary {
  file: string;
  bytes: number;
  rows: number;
  createdBy?: string;
  codecs: string[];
  columns: ParquetColumnSummary[];
  rowGroups: { rows: number; compressedBytes: number; uncompressedBytes: number }[];
}

export type ParquetWriteCodec = 'SNAPPY' | 'GZIP' | 'UNCOMPRESSED';

export interface ParquetWriteOptions {
  /** Page compression (default SNAPPY, as pandas/pyarrow and DuckDB write by default). */
  codec?: ParquetWriteCodec;
  /** Rows per row group (default 100,000). Smaller groups make range reads cheaper. */
  rowGroupSize?: number;
  /** Extra key/value metadata stored in the footer. */
  keyValueMetadata?: Record<string, string>;
  createdBy?: string;
}

// ───────────────────────────── CommonPool ─────────────────────────────

/** The columns of a CommonPool metadata parquet, with the Arrow types the workbench uses for them. */
export const COMMONPOOL_SCHEMA: Schema = new Schema([
  new Field('uid', new Utf8(), true),
  new Field('url', new Utf8(), true),
  new Field('text', new Utf8(), true),
  new Field('original_width', new Int64(), true),
  new Field('original_height', new Int64(), true),
  new Field('clip_b32_similarity_score', new Float32(), true),
  new Field('clip_l14_similarity_score', new Float32(), true),
  new Field('face_bboxes', new List(new Field('element', new List(new Field('element', new Float64(), true)), true)), true),
  new Field('sha256', new Utf8(), true),
]);

/**
 * Reads the CommonPool metadata columns of `source` (other columns are left unread) and checks that each
 * has the CommonPool type. Integer widths other than int64 are widened to int64, since the file is still
 * a faithful pool; any other mismatch (a string where a number belongs) is a FormatError.
 */
export async function readCommonPoolMetadata(
  source: ParquetSource, file: string,
  options: Omit<ParquetReadOptions, 'columns'> & { limits?: Partial<ParquetLimits> } = {},
): Promise<Table> {
  const pq = await ParquetFile.open(source, file, options.limits);
  const names = COMMONPOOL_SCHEMA.fields.map((f) => f.name);
  const missing = names.filter((n) => !pq.columnNames.includes(n));
  if (missing.length) throw new FormatError(file, `not a CommonPool metadata file: no column ${missing.map((m) => `"${m}"`).join(', ')}`);
  const table = await pq.read({ ...options, columns: names });
  const columns: Record<string, Vector> = {};
  for (const want of COMMONPOOL_SCHEMA.fields) {
    let column = table.getChild(want.name)!;
    if (!sameType(column.type, want.type)) {
      if (want.type.typeId === Type.Int && column.type.typeId === Type.Int) column = widenToInt64(column);
      else throw new FormatError(file, `column "${want.name}" is ${String(column.type)}, CommonPool metadata has ${String(want.type)}`);
    }
    columns[want.name] = column;
  }
  return new Table(columns);
}

function widenToInt64(column: Vector): Vector {
  const out = new BigInt64Array(column.length);
  for (let i = 0; i < column.length; i++) {
    const v = column.get(i) as number | bigint | null;
    out[i] = v === null ? 0n : BigInt(v);
  }
  const chunks = column.data;
  const bitmap = packBits(Uint8Array.from({ length: column.length }, (_, i) => (column.isValid(i) ? 1 : 0)));
  const nullCount = chunks.reduce((n, d) => n + d.nullCount, 0);
  return new (column.constructor as new (data: Data[]) => Vector)([
    makeData({ type: new Int64(), length: column.length, nullCount, nullBitmap: nullCount ? bitmap : undefined, data: out }),
  ]);
}

/** Structural type equality that ignores the names of list item fields ("element" vs "item"). */
function sameType(a: DataType, b: DataType): boolean {
  if (a.typeId !== b.typeId) return false;
  if (a instanceof List && b instanceof List) return sameType(a.children[0]!.type, b.children[0]!.type);
  return String(a) === String(b);
}

// ───────────────────────────── reading ─────────────────────────────

/** Reads the selected columns and rows of a parquet file into an Arrow Table. */
export async function readParquet(
  source: ParquetSource, file: string, options: ParquetReadOptions & { limits?: Partial<ParquetLimits> } = {},
): Promise<Table> {
  const pq = await ParquetFile.open(source, file, options.limits);
  return pq.read(options);
}

/** Column names, types, row count and row groups, from the footer alone (for `dcw inspect`). */
export async function parquetSchemaSummary(
  source: ParquetSource, file: string, limits?: Partial<ParquetLimits>,
): Promise<ParquetSchemaSummary> {
  return (await ParquetFile.open(source, file, limits)).summary();
}

/**
 * An opened parquet file: the footer is read and checked once, then any number of column/row-range
 * reads fetch only the column chunks they need.
 */
export class ParquetFile {
  readonly numRows: number;
  /** Arrow schema of the readable columns (unsupported ones — structs, maps — are left out). */
  readonly schema: Schema;
  /** All top-level column names, readable or not. */
  readonly columnNames: readonly string[];
  /** First row and row count of each row group. */
  readonly rowGroups: readonly { start: number; rows: number }[];

  private constructor(
    private readonly bytes: RangeReader,
    readonly file: string,
    readonly metadata: FileMetaData,
    private readonly plans: readonly ColumnPlan[],
    private readonly limits: ParquetLimits,
  ) {
    this.numRows = toSafeNumber(file, metadata.num_rows, 'row count');
    this.columnNames = plans.map((p) => p.name);
    this.schema = new Schema(plans.filter((p): p is ReadableColumn => !p.problem).map((p) => p.field));
    let start = 0;
    this.rowGroups = metadata.row_groups.map((g) => {
      const rows = Number(g.num_rows);
      const group = { start, rows };
      start += rows;
      return group;
    });
  }

  static async open(source: ParquetSource, file: string, limits: Partial<ParquetLimits> = {}): Promise<ParquetFile> {
    const lim = { ...DEFAULT_PARQUET_LIMITS, ...limits };
    const bytes = rangeReader(source, file);
    const metadata = await readFooter(bytes, file, lim);
    let plans: ColumnPlan[];
    try {
      plans = planColumns(metadata, file, bytes.byteLength);
    } catch (err) {
      // garbage that parsed as thrift can still lack fields the schema needs
      if (err instanceof FormatError) throw err;
      throw new FormatError(file, `damaged parquet metadata (${describe(err)})`);
    }
    return new ParquetFile(bytes, file, metadata, plans, lim);
  }

  summary(): ParquetSchemaSummary {
    const codecs = new Set<string>();
    for (const g of this.metadata.row_groups) for (const c of g.columns) if (c.meta_data) codecs.add(c.meta_data.codec);
    return {
      file: this.file,
      bytes: this.bytes.byteLength,
      rows: this.numRows,
      createdBy: this.metadata.created_by,
      codecs: [...codecs],
      columns: this.plans.map((p) => p.problem === undefined
        ? { name: p.name, arrowType: String(p.field.type), parquetType: p.parquetType, nullable: p.field.nullable }
        : { name: p.name, arrowType: 'unsupported', parquetType: p.parquetType, nullable: true, problem: p.problem }),
      rowGroups: this.metadata.row_groups.map((g) => ({
        rows: Number(g.num_rows),
        compressedBytes: g.columns.reduce((n, c) => n + Number(c.meta_data?.total_compressed_size ?? 0), 0),
        uncompressedBytes: g.columns.reduce((n, c) => n + Number(c.meta_data?.total_uncompressed_size ?? 0), 0),
      })),
    };
  }

  async read(options: ParquetReadOptions = {}): Promise<Table> {
    const { file } = this;
    const rowStart = options.rowStart ?? 0;
    const rowEnd = Math.min(options.rowEnd ?? this.numRows, this.numRows);
    if (!Number.isSafeInteger(rowStart) || !Number.isSafeInteger(rowEnd) || rowStart < 0 || rowEnd < rowStart) {
      throw new RangeError(`${file}: bad row range [${rowStart}, ${options.rowEnd})`);
    }
    if (rowEnd - rowStart > this.limits.maxRows) {
      throw new FormatError(file, `${rowEnd - rowStart} rows exceed the limit of ${this.limits.maxRows} rows per read; read a row range`);
    }
    const names = options.columns ?? this.columnNames;
    const plans = names.map((name) => {
      const plan = this.plans.find((p) => p.name === name);
      if (!plan) throw new FormatError(file, `no column "${name}" (columns: ${this.columnNames.join(', ')})`);
      if (plan.problem) throw new FormatError(file, `column "${name}": ${plan.problem}`);
      return plan as ReadableColumn;
    });
    const assemblers = plans.map((p) => new ColumnAssembler(file, p, rowStart, rowEnd));
    for (let g = 0; g < this.rowGroups.length; g++) {
      const { start, rows } = this.rowGroups[g]!;
      if (start + rows <= rowStart || start >= rowEnd || rows === 0) continue;
      const chunks = await Promise.all(plans.map(async (plan) => {
        const meta = this.metadata.row_groups[g]!.columns[plan.chunkIndex]!.meta_data!;
        const [from, to] = chunkRange(meta);
        return this.bytes.read(from, to);
      }));
      for (let c = 0; c < plans.length; c++) {
        const meta = this.metadata.row_groups[g]!.columns[plans[c]!.chunkIndex]!.meta_data!;
        assemblers[c]!.beginGroup(start, rows);
        decodeChunk(file, chunks[c]!, meta, plans[c]!, assemblers[c]!, this.limits);
        assemblers[c]!.endGroup();
      }
    }
    const length = rowEnd - rowStart;
    const children = assemblers.map((a) => a.finish());
    for (let c = 0; c < plans.length; c++) {
      if (children[c]!.length !== length) {
        throw new FormatError(file, `column "${plans[c]!.name}" has ${children[c]!.length} of the ${length} rows the metadata promises`);
      }
    }
    const schema = new Schema(plans.map((p) => p.field));
    const struct = makeData({ type: new Struct(schema.fields), length, nullCount: 0, children });
    return new Table(schema, [new RecordBatch(schema, struct)]);
  }
}

// ───────────────────────────── byte ranges ─────────────────────────────

interface RangeReader {
  byteLength: number;
  read(start: number, end: number): Promise<Uint8Array>;
}

function rangeReader(source: ParquetSource, file: string): RangeReader {
  const check = (start: number, end: number, got: Uint8Array) => {
    if (got.byteLength !== end - start) {
      throw new FormatError(file, `short read: asked for bytes ${start}–${end}, got ${got.byteLength}`);
    }
    return got;
  };
  if (source instanceof Uint8Array) {
    return { byteLength: source.byteLength, read: async (s, e) => source.subarray(s, e) };
  }
  if (source instanceof ArrayBuffer) {
    return { byteLength: source.byteLength, read: async (s, e) => new Uint8Array(source, s, e - s) };
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return { byteLength: source.size, read: async (s, e) => check(s, e, new Uint8Array(await source.slice(s, e).arrayBuffer())) };
  }
  const ranged = source as ByteSource;
  if (!(ranged && Number.isSafeInteger(ranged.byteLength) && ranged.byteLength >= 0 && typeof ranged.slice === 'function')) {
    throw new TypeError(`${file}: a parquet source is a Uint8Array, ArrayBuffer, Blob or {byteLength, slice(start, end)}`);
  }
  return {
    byteLength: ranged.byteLength,
    async read(s, e) {
      const got = await ranged.slice(s, e);
      return check(s, e, got instanceof Uint8Array ? got : new Uint8Array(got));
    },
  };
}

// ───────────────────────────── footer ─────────────────────────────

const MAGIC = 0x31524150; // "PAR1" little-endian
const MAGIC_ENCRYPTED = 0x45524150; // "PARE"

async function readFooter(bytes: RangeReader, file: string, limits: ParquetLimits): Promise<FileMetaData> {
  const size = bytes.byteLength;
  if (size < 12) throw new FormatError(file, `not a parquet file: ${size} bytes is too short`);
  const head = await bytes.read(0, 4);
  const headMagic = u32(head, 0);
  if (headMagic === MAGIC_ENCRYPTED) throw new FormatError(file, 'encrypted parquet is not supported');
  if (headMagic !== MAGIC) throw new FormatError(file, 'not a parquet file: it does not start with "PAR1"');
  const tail = await bytes.read(size - 8, size);
  const tailMagic = u32(tail, 4);
  if (tailMagic === MAGIC_ENCRYPTED) throw new FormatError(file, 'encrypted parquet is not supported');
  if (tailMagic !== MAGIC) throw new FormatError(file, 'truncated or damaged parquet: it does not end with "PAR1"');
  const metadataLength = u32(tail, 0);
  if (metadataLength > size - 12) {
    throw new FormatError(file, `truncated or damaged parquet: the footer claims ${metadataLength} bytes of metadata, the file has ${size} bytes`);
  }
  if (metadataLength > limits.maxMetadataBytes) {
    throw new FormatError(file, `parquet metadata of ${metadataLength} bytes exceeds the limit of ${limits.maxMetadataBytes}`);
  }
  if (metadataLength < 2) throw new FormatError(file, 'truncated or damaged parquet: empty metadata');
  const footer = await bytes.read(size - 8 - metadataLength, size);
  let metadata: FileMetaData;
  try {
    metadata = parquetMetadata(footer, { geoparquet: false });
  } catch (err) {
    throw new FormatError(file, `damaged parquet metadata (${describe(err)})`);
  }
  return metadata;
}

// ───────────────────────────── schema → Arrow ─────────────────────────────

/** One list level of a column: the definition levels at which the list exists and has an element. */
interface ListLevel {
  defPresent: number;
  defNonEmpty: number;
  nullable: boolean;
}

interface ColumnPlanBase {
  name: string;
  parquetType: string;
}
interface UnreadableColumn extends ColumnPlanBase {
  problem: string;
}
interface ReadableColumn extends ColumnPlanBase {
  problem?: undefined;
  field: Field;
  /** Index of the leaf column chunk in each row group. */
  chunkIndex: number;
  schemaPath: SchemaTree[];
  element: SchemaElement;
  lists: ListLevel[];
  maxDef: number;
  maxRep: number;
  leafNullable: boolean;
}
type ColumnPlan = UnreadableColumn | ReadableColumn;

class Unsupported extends Error {}

function planColumns(metadata: FileMetaData, file: string, fileSize: number): ColumnPlan[] {
  let tree: SchemaTree;
  try {
    tree = parquetSchema(metadata);
  } catch (err) {
    throw new FormatError(file, `damaged parquet schema (${describe(err)})`);
  }
  const rows = toSafeNumber(file, metadata.num_rows, 'row count');
  if (rows < 0) throw new FormatError(file, `negative row count ${rows}`);
  // The leaf columns in schema order: column chunk i of every row group belongs to leaf i.
  const leaves: string[][] = [];
  const collect = (node: SchemaTree) => {
    if (node.children.length) node.children.forEach(collect);
    else leaves.push(node.path);
  };
  if (!tree.children.length) throw new FormatError(file, 'parquet schema has no columns');
  tree.children.forEach(collect);
  if (tree.count !== metadata.schema.length) throw new FormatError(file, 'damaged parquet schema (element count does not match)');

  let total = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const groupRows = toSafeNumber(file, group.num_rows, `row group ${g} row count`);
    if (groupRows < 0) throw new FormatError(file, `row group ${g} has a negative row count`);
    total += groupRows;
    if (group.columns.length !== leaves.length) {
      throw new FormatError(file, `row group ${g} has ${group.columns.length} column chunks, the schema ${leaves.length} columns`);
    }
    for (const [c, chunk] of group.columns.entries()) {
      const meta = chunk.meta_data;
      if (chunk.file_path) throw new FormatError(file, `row group ${g} keeps column data in another file (${chunk.file_path}), which is not supported`);
      if (!meta) throw new FormatError(file, `row group ${g} column ${c} has no metadata`);
      if (meta.path_in_schema.join('.') !== leaves[c]!.join('.')) {
        throw new FormatError(file, `row group ${g} column ${c} is "${meta.path_in_schema.join('.')}", the schema says "${leaves[c]!.join('.')}"`);
      }
      const [from, to] = chunkRange(meta);
      if (!(from >= 4 && to >= from && to <= fileSize - 8)) {
        throw new FormatError(file, `row group ${g} column "${leaves[c]!.join('.')}" lies outside the file (bytes ${from}–${to} of ${fileSize})`);
      }
    }
  }
  if (total !== rows) throw new FormatError(file, `row groups hold ${total} rows, the footer says ${rows}`);

  return tree.children.map((node) => {
    const name = node.element.name;
    const parquetType = describeParquetType(node);
    try {
      const lists: ListLevel[] = [];
      let leaf: { node: SchemaTree; def: number; rep: number; nullable: boolean } | undefined;
      const build = (n: SchemaTree, defBefore: number, repBefore: number): { type: DataType; nullable: boolean } => {
        const repetition = n.element.repetition_type ?? 'REQUIRED';
        if (repetition === 'REPEATED') {
          // a bare repeated field is a list of required items that is never null itself
          if (n.children.length) throw new Unsupported('repeated groups (lists of structs) are not supported');
          lists.push({ defPresent: defBefore, defNonEmpty: defBefore + 1, nullable: false });
          leaf = { node: n, def: defBefore + 1, rep: repBefore + 1, nullable: false };
          return { type: new List(new Field('element', leafArrowType(n.element), false)), nullable: false };
        }
        const nullable = repetition === 'OPTIONAL';
        const def = defBefore + (nullable ? 1 : 0);
        const el = n.element;
        if (el.converted_type === 'MAP' || el.converted_type === 'MAP_KEY_VALUE' || el.logical_type?.type === 'MAP') {
          throw new Unsupported('map columns are not supported');
        }
        if (el.converted_type === 'LIST' || el.logical_type?.type === 'LIST') {
          const repeated = n.children[0];
          if (n.children.length !== 1 || repeated!.element.repetition_type !== 'REPEATED') {
            throw new Unsupported('malformed LIST group');
          }
          lists.push({ defPresent: def, defNonEmpty: def + 1, nullable });
          if (!repeated!.children.length) {
            // legacy two-level list: the repeated field is the element itself
            leaf = { node: repeated!, def: def + 1, rep: repBefore + 1, nullable: false };
            return { type: new List(new Field('element', leafArrowType(repeated!.element), false)), nullable };
          }
          const legacyStruct = repeated!.element.name === 'array' || repeated!.element.name === `${el.name}_tuple`;
          if (repeated!.children.length !== 1 || legacyStruct) throw new Unsupported('lists of structs are not supported');
          const item = build(repeated!.children[0]!, def + 1, repBefore + 1);
          return { type: new List(new Field('element', item.type, item.nullable)), nullable };
        }
        if (n.children.length) throw new Unsupported('struct columns are not supported');
        leaf = { node: n, def, rep: repBefore, nullable };
        return { type: leafArrowType(el), nullable };
      };
      const { type, nullable } = build(node, 0, 0);
      const chunkIndex = leaves.findIndex((p) => p.join('.') === leaf!.node.path.join('.'));
      const schemaPath = [tree, ...pathNodes(node, leaf!.node)];
      const maxDef = schemaPath.slice(1).filter((s) => s.element.repetition_type !== 'REQUIRED').length;
      const maxRep = schemaPath.filter((s) => s.element.repetition_type === 'REPEATED').length;
      if (maxDef !== leaf!.def || maxRep !== leaf!.rep) throw new Unsupported('unusual nesting');
      return {
        name, parquetType, chunkIndex, schemaPath, lists, maxDef, maxRep,
        field: new Field(name, type, nullable),
        element: leaf!.node.element,
        leafNullable: leaf!.nullable,
      } satisfies ReadableColumn;
    } catch (err) {
      if (err instanceof Unsupported) return { name, parquetType, problem: err.message } satisfies UnreadableColumn;
      throw err;
    }
  });
}

/** The schema nodes from `top` down to `leaf` (both included). */
function pathNodes(top: SchemaTree, leaf: SchemaTree): SchemaTree[] {
  const out = [top];
  let node = top;
  for (const part of leaf.path.slice(top.path.length)) {
    node = node.children.find((c) => c.element.name === part)!;
    out.push(node);
  }
  return out;
}

/** The Arrow type of a parquet primitive, from its physical type and annotation. */
function leafArrowType(el: SchemaElement): DataType {
  const ctype = el.converted_type;
  const ltype = el.logical_type;
  if (ctype === 'DECIMAL' || ltype?.type === 'DECIMAL') return new Float64(); // hyparquet gives decimals as numbers
  switch (el.type) {
    case 'BOOLEAN':
      return new Bool();
    case 'INT32': {
      if (ctype === 'DATE' || ltype?.type === 'DATE') return new DateDay();
      if (ctype === 'TIME_MILLIS' || (ltype?.type === 'TIME' && ltype.unit === 'MILLIS')) return new TimeMillisecond();
      const bits = ltype?.type === 'INTEGER' ? ltype.bitWidth : ctype?.match(/^U?INT_(8|16|32)$/) ? Number(ctype.split('_')[1]) : 32;
      const signed = ltype?.type === 'INTEGER' ? ltype.isSigned : !ctype?.startsWith('UINT');
      if (bits === 8) return signed ? new Int8() : new Uint8();
      if (bits === 16) return signed ? new Int16() : new Uint16();
      return signed ? new Int32() : new Uint32();
    }
    case 'INT64': {
      if (ltype?.type === 'TIMESTAMP') {
        const tz = ltype.isAdjustedToUTC ? 'UTC' : null;
        if (ltype.unit === 'MILLIS') return new TimestampMillisecond(tz);
        if (ltype.unit === 'NANOS') return new TimestampNanosecond(tz);
        return new TimestampMicrosecond(tz);
      }
      if (ctype === 'TIMESTAMP_MILLIS') return new TimestampMillisecond();
      if (ctype === 'TIMESTAMP_MICROS') return new TimestampMicrosecond();
      if (ltype?.type === 'TIME') return ltype.unit === 'NANOS' ? new TimeNanosecond() : new TimeMicrosecond();
      if (ctype === 'TIME_MICROS') return new TimeMicrosecond();
      if (ctype === 'UINT_64' || (ltype?.type === 'INTEGER' && !ltype.isSigned)) return new Uint64();
      return new Int64();
    }
    case 'INT96':
      return new TimestampNanosecond();
    case 'FLOAT':
      return new Float32();
    case 'DOUBLE':
      return new Float64();
    case 'BYTE_ARRAY':
      if (ctype === 'UTF8' || ctype === 'JSON' || ctype === 'ENUM' || ltype?.type === 'STRING' || ltype?.type === 'JSON' || ltype?.type === 'ENUM') {
        return new Utf8();
      }
      return new Binary();
    case 'FIXED_LEN_BYTE_ARRAY': {
      if (ltype?.type === 'FLOAT16') return new Float32();
      const width = el.type_length ?? 0;
      if (!(width > 0 && width <= 1 << 20)) throw new Unsupported(`fixed-length byte array of ${width} bytes`);
      return new FixedSizeBinary(width);
    }
    default:
      throw new Unsupported(`unknown physical type ${String(el.type)}`);
  }
}

function describeParquetType(node: SchemaTree): string {
  const el = node.element;
  if (el.converted_type === 'LIST' || el.logical_type?.type === 'LIST') {
    const repeated = node.children[0];
    const item = repeated?.children.length === 1 ? repeated.children[0]! : repeated;
    return item ? `LIST<${describeParquetType(item)}>` : 'LIST<?>';
  }
  if (node.children.length) {
    const kind = el.converted_type === 'MAP' || el.logical_type?.type === 'MAP' ? 'MAP' : 'STRUCT';
    return `${kind}<${node.children.map((c) => `${c.element.name}: ${describeParquetType(c)}`).join(', ')}>`;
  }
  const annotation = el.logical_type
    ? el.logical_type.type === 'INTEGER' ? `INT(${el.logical_type.bitWidth}, ${el.logical_type.isSigned ? 'signed' : 'unsigned'})` : el.logical_type.type
    : el.converted_type;
  const base = el.type === 'FIXED_LEN_BYTE_ARRAY' ? `FIXED_LEN_BYTE_ARRAY(${el.type_length})` : String(el.type);
  const prefix = el.repetition_type === 'REPEATED' ? 'REPEATED ' : '';
  return `${prefix}${base}${annotation && annotation !== 'INT_64' ? ` (${annotation})` : ''}`;
}

// ───────────────────────────── pages ─────────────────────────────

/** hyparquet's per-column decoder parameters (its ColumnDecoder type is not exported). */
type ColumnDecoder = Parameters<typeof readDataPage>[2];

const identity = <T>(x: T) => x;
/** Keep raw values: bytes stay bytes, times stay integers; the Arrow types say what they mean. */
const RAW_PARSERS = {
  timestampFromMilliseconds: identity, timestampFromMicroseconds: identity, timestampFromNanoseconds: identity,
  dateFromDays: identity, stringFromBytes: identity, jsonFromBytes: identity, geometryFromBytes: identity,
  geographyFromBytes: identity, uuidFromBytes: identity,
};

const SUPPORTED_ENCODINGS = new Set(['PLAIN', 'PLAIN_DICTIONARY', 'RLE_DICTIONARY', 'RLE', 'BYTE_STREAM_SPLIT', 'DELTA_BINARY_PACKED', 'DELTA_LENGTH_BYTE_ARRAY']);

/** Decodes one column chunk page by page into the column's assembler. */
function decodeChunk(
  file: string, chunk: Uint8Array, meta: ColumnMetaData, plan: ReadableColumn, out: ColumnAssembler, limits: ParquetLimits,
): void {
  const where = `column "${plan.name}"`;
  const corrupt = (problem: string) => new FormatError(file, `${where}: ${problem}`);
  if (meta.type !== plan.element.type) throw corrupt(`chunk type ${meta.type} does not match schema type ${plan.element.type}`);
  const decoder = {
    pathInSchema: meta.path_in_schema, type: meta.type, element: plan.element, schemaPath: plan.schemaPath,
    codec: meta.codec, parsers: RAW_PARSERS, utf8: false,
  } as ColumnDecoder;
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const reader = { view, offset: 0 };
  let dictionary: DecodedArray | undefined;
  const flat = plan.maxRep === 0;

  try {
    // hyparquet stops one byte short of the end too: some writers leave a padding byte after the last page
    while (reader.offset < chunk.byteLength - 1 && !out.done) {
      const header = parquetHeader(reader) as PageHeader;
      const compressedSize = header.compressed_page_size;
      const pageStart = reader.offset;
      if (!isCount(compressedSize) || pageStart + compressedSize > chunk.byteLength) {
        throw corrupt(`page of ${compressedSize} bytes runs past the end of its column chunk`);
      }
      const raw = chunk.subarray(pageStart, pageStart + compressedSize);
      reader.offset += compressedSize;

      if (header.type === 'DICTIONARY_PAGE') {
        const diph = header.dictionary_page_header;
        if (!diph) throw corrupt('dictionary page without its header');
        if (dictionary) throw corrupt('a second dictionary page');
        const n = diph.num_values;
        if (!isCount(n)) throw corrupt(`dictionary of ${n} values`);
        out.spend(n, limits);
        const page = decompress(file, where, raw, header.uncompressed_page_size, meta.codec, limits);
        checkValues(page, 0, 'PLAIN', n, plan, corrupt);
        dictionary = convert(readPlain({ view: dataView(page), offset: 0 }, meta.type, n, plan.element.type_length), decoder);
      } else if (header.type === 'DATA_PAGE') {
        const daph = header.data_page_header;
        if (!daph) throw corrupt('data page without its header');
        const n = daph.num_values;
        if (!isCount(n)) throw corrupt(`data page of ${n} values`);
        checkEncoding(daph.encoding, corrupt);
        if (flat && out.canSkipRows(n)) {
          out.skipRows(n);
          continue;
        }
        out.spend(n, limits);
        const page = decompress(file, where, raw, header.uncompressed_page_size, meta.codec, limits);
        let pos = 0;
        let present = n;
        if (plan.maxRep > 0) {
          if (daph.repetition_level_encoding !== 'RLE') throw corrupt(`repetition levels in ${daph.repetition_level_encoding} encoding are not supported`);
          pos = walkLengthPrefixed(page, pos, bitWidth(plan.maxRep), n, corrupt);
        }
        if (plan.maxDef > 0) {
          if (daph.definition_level_encoding !== 'RLE') throw corrupt(`definition levels in ${daph.definition_level_encoding} encoding are not supported`);
          const counter = { max: plan.maxDef, present: 0 };
          pos = walkLengthPrefixed(page, pos, bitWidth(plan.maxDef), n, corrupt, counter);
          present = counter.present;
        }
        checkValues(page, pos, daph.encoding, present, plan, corrupt, dictionary);
        const decoded = readDataPage(page, daph, decoder);
        out.addPage(n, decoded.definitionLevels, decoded.repetitionLevels, values(decoded.dataPage, daph.encoding, dictionary, present, decoder, corrupt));
      } else if (header.type === 'DATA_PAGE_V2') {
        const d2 = header.data_page_header_v2;
        if (!d2) throw corrupt('data page v2 without its header');
        const n = d2.num_values;
        const repLength = d2.repetition_levels_byte_length;
        const defLength = d2.definition_levels_byte_length;
        if (!isCount(n) || !isCount(d2.num_nulls) || !isCount(d2.num_rows) || d2.num_nulls > n) throw corrupt('data page v2 with impossible counts');
        if (!isCount(repLength) || !isCount(defLength) || repLength + defLength > raw.byteLength) throw corrupt('data page v2 levels run past the page');
        checkEncoding(d2.encoding, corrupt);
        if (flat && out.canSkipRows(d2.num_rows)) {
          if (d2.num_rows !== n) throw corrupt('flat column page with rows ≠ values');
          out.skipRows(n);
          continue;
        }
        out.spend(n, limits);
        let present = n;
        if (plan.maxRep > 0) walkHybrid(raw, 0, repLength, bitWidth(plan.maxRep), n, corrupt);
        else if (repLength) throw corrupt('repetition levels in a column that has none');
        if (plan.maxDef > 0) {
          const counter = { max: plan.maxDef, present: 0 };
          walkHybrid(raw, repLength, repLength + defLength, bitWidth(plan.maxDef), n, corrupt, counter);
          present = counter.present;
        } else if (defLength) throw corrupt('definition levels in a column that has none');
        if (n - present !== d2.num_nulls) throw corrupt(`page says ${d2.num_nulls} nulls, its levels say ${n - present}`);
        const levels = raw.subarray(0, repLength + defLength);
        const valueSize = header.uncompressed_page_size - repLength - defLength;
        if (!isCount(valueSize)) throw corrupt('data page v2 smaller than its levels');
        const compressed = d2.is_compressed !== false && valueSize > 0;
        const valuesPart = compressed
          ? decompress(file, where, raw.subarray(levels.byteLength), valueSize, meta.codec, limits)
          : raw.subarray(levels.byteLength);
        checkValues(valuesPart, 0, d2.encoding, present, plan, corrupt, dictionary);
        // hand hyparquet the levels and the already decompressed values as one uncompressed page
        const page = new Uint8Array(levels.byteLength + valuesPart.byteLength);
        page.set(levels);
        page.set(valuesPart, levels.byteLength);
        const plain: PageHeader = {
          ...header,
          uncompressed_page_size: page.byteLength,
          compressed_page_size: page.byteLength,
          data_page_header_v2: { ...d2, is_compressed: false },
        };
        const decoded = readDataPageV2(page, plain, decoder);
        out.addPage(n, decoded.definitionLevels, decoded.repetitionLevels, values(decoded.dataPage, d2.encoding, dictionary, present, decoder, corrupt));
      } else if (header.type !== 'INDEX_PAGE') {
        throw corrupt(`unknown page type ${String(header.type)}`);
      }
    }
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw corrupt(`damaged page (${describe(err)})`);
  }
}

function checkEncoding(encoding: string | undefined, corrupt: (p: string) => FormatError): void {
  if (!encoding || !SUPPORTED_ENCODINGS.has(encoding)) throw corrupt(`encoding ${String(encoding)} is not supported`);
}

/** The page's values as hyparquet decoded them, with dictionary indices resolved and checked. */
function values(
  data: DecodedArray, encoding: string, dictionary: DecodedArray | undefined, present: number,
  decoder: ColumnDecoder, corrupt: (p: string) => FormatError,
): DecodedArray {
  let out: DecodedArray;
  if (encoding === 'PLAIN_DICTIONARY' || encoding === 'RLE_DICTIONARY') {
    if (!dictionary) throw corrupt('dictionary-encoded page without a dictionary');
    if (data.length < present) throw corrupt('fewer dictionary indices than values');
    const resolved = new Array(present);
    for (let i = 0; i < present; i++) {
      const index = data[i] as number;
      if (!(index < dictionary.length)) throw corrupt(`dictionary index ${index} out of range (${dictionary.length} entries)`);
      resolved[i] = dictionary[index];
    }
    out = resolved;
  } else {
    out = convert(data, decoder);
  }
  if (out.length !== present) throw corrupt(`page holds ${out.length} values, its levels say ${present}`);
  return out;
}

function decompress(
  file: string, where: string, input: Uint8Array, size: number, codec: CompressionCodec, limits: ParquetLimits,
): Uint8Array {
  const corrupt = (p: string) => new FormatError(file, `${where}: ${p}`);
  if (!isCount(size)) throw corrupt(`page claims ${size} uncompressed bytes`);
  if (size > limits.maxPageBytes) throw corrupt(`page of ${size} bytes exceeds the limit of ${limits.maxPageBytes}`);
  switch (codec) {
    case 'UNCOMPRESSED':
      if (size !== input.byteLength) throw corrupt(`uncompressed page of ${input.byteLength} bytes claims ${size}`);
      return input;
    case 'SNAPPY': {
      // snappy expands at most 64 bytes from a 3-byte copy element
      if (size > input.byteLength * 22 + 32) throw corrupt(`${input.byteLength} snappy bytes cannot hold ${size} bytes`);
      const out = new Uint8Array(size);
      snappyDecompressInto(input, out, 0, size, corrupt);
      return out;
    }
    case 'GZIP': {
      // deflate expands at most 1032:1
      if (size > input.byteLength * 1032 + 1024) throw corrupt(`${input.byteLength} gzip bytes cannot hold ${size} bytes`);
      if (input.byteLength < 18 || u32(input, input.byteLength - 4) !== size % 2 ** 32) {
        throw corrupt(`gzip data does not hold the ${size} bytes the page header says`);
      }
      const out = new Uint8Array(size);
      let got: Uint8Array;
      try {
        got = gunzipSync(input, { out });
      } catch (err) {
        throw corrupt(`damaged gzip data (${describe(err)})`);
      }
      if (got.byteLength !== size) throw corrupt(`gzip data holds ${got.byteLength} bytes, the page header says ${size}`);
      return got;
    }
    case 'ZSTD': {
      // zstd has no useful expansion bound (RLE blocks): the page-size limit above is the bound, and the
      // output buffer is exactly the declared size, so a lying frame cannot make the decoder grow it.
      const out = new Uint8Array(size);
      let got: Uint8Array;
      try {
        got = decompressZstd(input, out);
      } catch (err) {
        throw corrupt(`damaged zstd data (${describe(err)})`);
      }
      if (got.byteLength !== size) throw corrupt(`zstd data holds ${got.byteLength} bytes, the page header says ${size}`);
      return got;
    }
    default:
      throw new FormatError(file, `compression codec ${codec} is not supported (snappy, gzip, zstd and uncompressed are)`);
  }
}

/**
 * Raw snappy (length prefix included) into out[at0, at0 + size), where `size` is what the caller expects.
 * hyparquet's decoder is not used: it reads a 4-byte literal length as a signed int, so a damaged length
 * walks its input position backwards and spins for seconds; here every length and offset is checked
 * against both buffers. `fail` makes the error thrown (a FormatError here; the filters' fast path passes
 * its own, to fall back to the full reader).
 */
export function snappyDecompressInto(input: Uint8Array, out: Uint8Array, at0: number, size: number, fail: (problem: string) => Error): void {
  const n = input.byteLength;
  let pos = 0;
  let declared = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= n || shift > 28) throw fail('damaged snappy length');
    const b = input[pos++]!;
    declared += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (declared !== size) throw fail(`snappy data holds ${declared} bytes, the page header says ${size}`);
  const limit = at0 + size;
  if (limit > out.length) throw fail(`snappy output of ${size} bytes does not fit`);
  let at = at0;
  while (pos < n) {
    const tag = input[pos++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let length = tag >>> 2;
      if (length >= 60) {
        const bytes = length - 59;
        if (pos + bytes > n) throw fail('damaged snappy data (literal length past the end)');
        length = 0;
        for (let i = 0; i < bytes; i++) length += input[pos + i]! * 2 ** (8 * i);
        pos += bytes;
      }
      length += 1;
      if (pos + length > n || at + length > limit) throw fail('damaged snappy data (literal past the end)');
      if (length < 16) for (let i = 0; i < length; i++) out[at + i] = input[pos + i]!;
      else out.set(input.subarray(pos, pos + length), at);
      pos += length;
      at += length;
    } else {
      let length: number;
      let offset: number;
      if (kind === 1) {
        if (pos >= n) throw fail('damaged snappy data (copy past the end)');
        length = ((tag >>> 2) & 7) + 4;
        offset = ((tag >>> 5) << 8) | input[pos++]!;
      } else if (kind === 2) {
        if (pos + 2 > n) throw fail('damaged snappy data (copy past the end)');
        length = (tag >>> 2) + 1;
        offset = input[pos]! | (input[pos + 1]! << 8);
        pos += 2;
      } else {
        if (pos + 4 > n) throw fail('damaged snappy data (copy past the end)');
        length = (tag >>> 2) + 1;
        offset = u32(input, pos);
        pos += 4;
      }
      if (offset === 0 || offset > at - at0 || at + length > limit) throw fail('damaged snappy data (bad copy)');
      const from = at - offset;
      if (offset >= length && length >= 32) out.copyWithin(at, from, from + length);
      else for (let i = 0; i < length; i++) out[at + i] = out[from + i]!; // may overlap its own output (run-length style)
      at += length;
    }
  }
  if (at !== limit) throw fail(`damaged snappy data (${at - at0} of ${size} bytes)`);
}

/**
 * Walks an RLE/bit-packed hybrid run list that must describe `count` values, checking that every run
 * stays inside the bytes and inside the count (hyparquet writes an RLE run's full length, whatever it
 * is). With `counter`, also counts the values equal to counter.max (the non-null slots).
 */
function walkHybrid(
  bytes: Uint8Array, pos: number, end: number, width: number, count: number,
  corrupt: (p: string) => FormatError, counter?: { max: number; present: number },
): number {
  if (width > 32) throw corrupt(`bit width ${width}`);
  const valueBytes = (width + 7) >> 3;
  let seen = 0;
  while (seen < count) {
    // the varint as hyparquet reads it (32-bit shifts), at most 5 bytes
    let header = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= end || shift > 28) throw corrupt('damaged level or index runs');
      const b = bytes[pos++]!;
      header |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (header & 1) {
      const groups = header >> 1;
      const n = groups * 8;
      // writers may pad the last bit-packed run far past the count (DuckDB pads to 32 groups), so
      // bound it by its bytes; hyparquet spins through every padded value, so a zero-width run that
      // no bytes bound must not be padded more than one group
      if (groups <= 0 || (width === 0 ? n > count - seen + 7 : pos + groups * width > end)) {
        throw corrupt('bit-packed run longer than its page');
      }
      const needed = Math.min(n, count - seen);
      if (counter) {
        for (let i = 0; i < needed; i++) {
          let v = 0;
          for (let b = 0; b < width; b++) {
            const bit = i * width + b;
            v |= ((bytes[pos + (bit >> 3)]! >> (bit & 7)) & 1) << b;
          }
          if (v === counter.max) counter.present++;
          else if (v > counter.max) throw corrupt(`level ${v} above the maximum ${counter.max}`);
        }
      }
      pos += groups * width;
      seen += n;
    } else {
      const n = header >>> 1;
      if (n > count - seen) throw corrupt('run longer than its page');
      if (pos + valueBytes > end) throw corrupt('run value past the end of its levels');
      let v = 0;
      for (let i = 0; i < valueBytes; i++) v += bytes[pos + i]! * 2 ** (8 * i);
      pos += valueBytes;
      if (counter) {
        if (v === counter.max) counter.present += n;
        else if (v > counter.max) throw corrupt(`level ${v} above the maximum ${counter.max}`);
      }
      seen += n;
    }
  }
  return pos;
}

/** A v1 level section: 4-byte length, then the runs. Returns the position after the section. */
function walkLengthPrefixed(
  bytes: Uint8Array, pos: number, width: number, count: number,
  corrupt: (p: string) => FormatError, counter?: { max: number; present: number },
): number {
  if (pos + 4 > bytes.byteLength) throw corrupt('level section past the end of its page');
  const length = u32(bytes, pos);
  const end = pos + 4 + length;
  if (end > bytes.byteLength) throw corrupt(`level section of ${length} bytes runs past its page`);
  walkHybrid(bytes, pos + 4, end, width, count, corrupt, counter);
  return end;
}

/** Checks that a value section can hold `count` values before hyparquet allocates for them. */
function checkValues(
  bytes: Uint8Array, pos: number, encoding: string, count: number, plan: ReadableColumn,
  corrupt: (p: string) => FormatError, dictionary?: DecodedArray,
): void {
  const left = bytes.byteLength - pos;
  const type = plan.element.type;
  const width = type === 'INT32' || type === 'FLOAT' ? 4
    : type === 'INT64' || type === 'DOUBLE' ? 8
      : type === 'INT96' ? 12
        : type === 'FIXED_LEN_BYTE_ARRAY' ? plan.element.type_length ?? 0 : 0;
  const tooShort = () => corrupt(`${count} values do not fit in ${left} bytes`);
  if (count === 0) return;
  switch (encoding) {
    case 'PLAIN':
      if (type === 'BOOLEAN') {
        if (Math.ceil(count / 8) > left) throw tooShort();
      } else if (type === 'BYTE_ARRAY') {
        if (count * 4 > left) throw tooShort();
      } else if (count * width > left) throw tooShort();
      return;
    case 'BYTE_STREAM_SPLIT':
      if (!width || count * width > left) throw tooShort();
      return;
    case 'RLE':
      if (type !== 'BOOLEAN') throw corrupt(`RLE encoding for ${type} values`);
      walkLengthPrefixed(bytes, pos, 1, count, corrupt);
      return;
    case 'PLAIN_DICTIONARY':
    case 'RLE_DICTIONARY': {
      if (!dictionary) throw corrupt('dictionary-encoded page without a dictionary');
      if (left < 1) throw tooShort();
      const w = bytes[pos]!;
      if (w > 32) throw corrupt(`dictionary index width ${w}`);
      if (w) walkHybrid(bytes, pos + 1, bytes.byteLength, w, count, corrupt);
      return;
    }
    case 'DELTA_BINARY_PACKED':
      if (type !== 'INT32' && type !== 'INT64') throw corrupt(`DELTA_BINARY_PACKED encoding for ${type} values`);
      walkDeltaBinaryPacked(bytes, pos, count, corrupt);
      return;
    case 'DELTA_LENGTH_BYTE_ARRAY': {
      if (type !== 'BYTE_ARRAY') throw corrupt(`DELTA_LENGTH_BYTE_ARRAY encoding for ${type} values`);
      walkDeltaBinaryPacked(bytes, pos, count, corrupt);
      return;
    }
    default:
      throw corrupt(`encoding ${encoding} is not supported`);
  }
}

/** Checks the block structure of a DELTA_BINARY_PACKED stream of `count` values (hyparquet trusts it). */
function walkDeltaBinaryPacked(bytes: Uint8Array, pos: number, count: number, corrupt: (p: string) => FormatError): number {
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= bytes.byteLength || shift > 63) throw corrupt('damaged delta encoding');
      const b = bytes[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
  };
  const blockSize = varint();
  const miniblocks = varint();
  const total = varint();
  varint(); // first value
  if (!(blockSize > 0 && blockSize % 128 === 0 && blockSize <= 1 << 20 && miniblocks > 0 && blockSize % miniblocks === 0 && (blockSize / miniblocks) % 32 === 0)) {
    throw corrupt('damaged delta encoding header');
  }
  if (total !== count) throw corrupt(`delta encoding of ${total} values where ${count} belong`);
  const perMiniblock = blockSize / miniblocks;
  let left = count - 1;
  while (left > 0) {
    varint(); // min delta
    if (pos + miniblocks > bytes.byteLength) throw corrupt('delta block past the end of its page');
    const widths = bytes.subarray(pos, pos + miniblocks);
    pos += miniblocks;
    for (let m = 0; m < miniblocks && left > 0; m++) {
      if (widths[m]! > 64) throw corrupt(`delta bit width ${widths[m]}`);
      pos += (perMiniblock * widths[m]!) / 8;
      left -= perMiniblock;
    }
    if (pos > bytes.byteLength + 8) throw corrupt('delta block past the end of its page');
  }
  return pos;
}

// ───────────────────────────── levels → Arrow ─────────────────────────────

type NumericArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;
type BigArray = BigInt64Array | BigUint64Array;

/** A typed array that grows by doubling. */
class Growable<T extends NumericArray | BigArray> {
  length = 0;
  constructor(private buf: T) {}
  push(v: T[number]): void {
    if (this.length === this.buf.length) {
      const next = new (this.buf.constructor as new (n: number) => T)(Math.max(16, this.buf.length * 2));
      next.set(this.buf as never);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  take(): T {
    return this.buf.slice(0, this.length) as T;
  }
}

/** Where a column's leaf values go: typed arrays, booleans, or byte slices for strings/binary. */
interface LeafSink {
  push(value: unknown): void;
  pushNull(): void;
  finish(length: number, validity: Uint8Array | undefined, nullCount: number): Data;
}

function leafSink(file: string, column: string, type: DataType): LeafSink {
  const corrupt = (p: string) => new FormatError(file, `column "${column}": ${p}`);
  if (type instanceof Utf8 || type instanceof Binary || type instanceof FixedSizeBinary) {
    const parts: Uint8Array[] = [];
    const empty = new Uint8Array(0);
    const width = type instanceof FixedSizeBinary ? type.byteWidth : -1;
    let total = 0;
    return {
      push(v) {
        const bytes = v as Uint8Array;
        if (!(bytes instanceof Uint8Array)) throw corrupt('damaged byte array value');
        if (width >= 0 && bytes.byteLength !== width) throw corrupt(`value of ${bytes.byteLength} bytes in a ${width}-byte column`);
        parts.push(bytes);
        total += bytes.byteLength;
      },
      pushNull() {
        parts.push(width > 0 ? new Uint8Array(width) : empty);
        total += Math.max(width, 0);
      },
      finish(length, validity, nullCount) {
        if (total > 0x7fffffff) throw new RangeError(`${file}: column "${column}" holds more than 2 GiB of bytes; read fewer rows at a time`);
        const data = new Uint8Array(total);
        const offsets = new Int32Array(length + 1);
        let at = 0;
        for (let i = 0; i < length; i++) {
          data.set(parts[i]!, at);
          at += parts[i]!.byteLength;
          offsets[i + 1] = at;
        }
        const nullBitmap = nullCount ? packBits(validity!) : undefined;
        if (width >= 0) return makeData({ type: type as FixedSizeBinary, length, nullCount, nullBitmap, data });
        if (type instanceof Utf8) return makeData({ type, length, nullCount, nullBitmap, valueOffsets: offsets, data });
        return makeData({ type: type as Binary, length, nullCount, nullBitmap, valueOffsets: offsets, data });
      },
    };
  }
  if (type instanceof Bool) {
    const bits = new Growable(new Uint8Array(64));
    return {
      push: (v) => bits.push(v ? 1 : 0),
      pushNull: () => bits.push(0),
      finish: (length, validity, nullCount) => makeData({
        type, length, nullCount, nullBitmap: nullCount ? packBits(validity!) : undefined, data: packBits(bits.take()),
      }),
    };
  }
  const ArrayType = (type as DataType & { ArrayType: new (n: number) => NumericArray | BigArray }).ArrayType;
  const big = ArrayType === BigInt64Array || ArrayType === BigUint64Array;
  const buf = new Growable(new ArrayType(64));
  return {
    push(v) {
      if (big && typeof v !== 'bigint') throw corrupt('damaged integer value');
      buf.push(v as never);
    },
    pushNull: () => buf.push((big ? 0n : 0) as never),
    finish: (length, validity, nullCount) => makeData({
      type: type as Int32, length, nullCount, nullBitmap: nullCount ? packBits(validity!) : undefined, data: buf.take() as Int32Array,
    }),
  };
}

/**
 * Rebuilds a column from definition/repetition levels (Dremel) straight into Arrow layout: for each list
 * level an offsets array and a validity array, and the leaf values. Only rows inside [rowStart, rowEnd)
 * are kept; the others are decoded (their pages may be shared) but dropped.
 */
class ColumnAssembler {
  done = false;
  private readonly lists: ListLevel[];
  private readonly offsets: Growable<Int32Array>[];
  private readonly valid: Growable<Uint8Array>[];
  private readonly open: boolean[];
  private readonly leafValid = new Growable(new Uint8Array(64));
  private readonly sink: LeafSink;
  private readonly counts: number[];
  private row = -1; // index of the row the last slot belonged to
  private selected = false;
  private groupEnd = 0;
  private groupStart = 0;
  private spent = 0;

  constructor(
    private readonly file: string,
    private readonly plan: ReadableColumn,
    private readonly rowStart: number,
    private readonly rowEnd: number,
  ) {
    this.lists = plan.lists;
    this.offsets = plan.lists.map(() => new Growable(new Int32Array(16)));
    this.valid = plan.lists.map(() => new Growable(new Uint8Array(16)));
    this.open = plan.lists.map(() => false);
    this.counts = new Array(plan.lists.length + 1).fill(0);
    let leafType: DataType = plan.field.type;
    for (let j = 0; j < plan.lists.length; j++) leafType = (leafType as List).children[0]!.type;
    this.sink = leafSink(file, plan.name, leafType);
  }

  private corrupt(problem: string): FormatError {
    return new FormatError(this.file, `column "${this.plan.name}": ${problem}`);
  }

  spend(values: number, limits: ParquetLimits): void {
    this.spent += values;
    if (this.spent > limits.maxValues) {
      throw this.corrupt(`more than ${limits.maxValues} values in one read (the limit); read fewer rows`);
    }
  }

  beginGroup(start: number, rows: number): void {
    this.groupStart = start;
    this.groupEnd = start + rows;
    this.row = start - 1;
    this.done = false;
    this.open.fill(false);
  }

  endGroup(): void {
    // a chunk read to its end must hold exactly the rows its row group claims
    if (!this.done && this.row + 1 !== this.groupEnd) {
      throw this.corrupt(`row group at row ${this.groupStart} holds ${this.row + 1 - this.groupStart} rows, its metadata says ${this.groupEnd - this.groupStart}`);
    }
  }

  /** A flat page of `rows` rows can be skipped undecoded when it ends before the selection. */
  canSkipRows(rows: number): boolean {
    return this.row + 1 + rows <= this.rowStart;
  }

  skipRows(rows: number): void {
    this.row += rows;
    if (this.row + 1 > this.groupEnd) throw this.corrupt('more rows than its row group');
  }

  addPage(slots: number, defs: ArrayLike<number> | undefined, reps: ArrayLike<number> | undefined, values: DecodedArray): void {
    const { maxDef, maxRep, leafNullable } = this.plan;
    const L = this.lists.length;
    const hasDefs = !!defs && defs.length > 0;
    const hasReps = maxRep > 0;
    if (hasDefs && defs!.length !== slots) throw this.corrupt(`${defs!.length} definition levels for ${slots} values`);
    if (hasReps && reps!.length !== slots) throw this.corrupt(`${reps?.length ?? 0} repetition levels for ${slots} values`);
    let v = 0;
    for (let k = 0; k < slots; k++) {
      const d = hasDefs ? defs![k]! : maxDef;
      const r = hasReps ? reps![k]! : 0;
      if (d > maxDef || r > maxRep) throw this.corrupt('level above its maximum');
      if (r === 0) {
        const next = this.row + 1;
        if (next >= this.rowEnd) {
          this.done = true;
          return;
        }
        if (next >= this.groupEnd) throw this.corrupt('more rows than its row group');
        this.row = next;
        this.selected = next >= this.rowStart;
      } else if (this.row < this.groupStart) {
        throw this.corrupt('a row group that starts inside a list');
      }
      const isPresent = d === maxDef;
      if (this.selected) {
        let j = r;
        if (r > 0 && !this.open[r - 1]) throw this.corrupt('a list element after a null or empty list');
        let reachedLeaf = true;
        for (; j < L; j++) {
          const level = this.lists[j]!;
          this.offsets[j]!.push(this.counts[j + 1]!);
          this.counts[j]!++;
          if (d < level.defPresent) {
            if (!level.nullable) throw this.corrupt('null in a required list');
            this.valid[j]!.push(0);
            this.open[j] = false;
            reachedLeaf = false;
            break;
          }
          this.valid[j]!.push(1);
          if (d < level.defNonEmpty) {
            this.open[j] = false;
            reachedLeaf = false;
            break;
          }
          this.open[j] = true;
        }
        if (reachedLeaf) {
          this.counts[L]!++;
          if (isPresent) {
            this.sink.push(values[v]);
            this.leafValid.push(1);
          } else {
            if (!leafNullable) throw this.corrupt('null in a required column');
            this.sink.pushNull();
            this.leafValid.push(0);
          }
        }
      }
      if (isPresent) v++;
    }
    if (v !== values.length) throw this.corrupt(`page holds ${values.length} values, its levels use ${v}`);
  }

  /** The column as Arrow Data, one entry per selected row. */
  finish(): Data {
    const L = this.lists.length;
    // the Arrow type at each list level, outermost first, then the leaf type
    const types: DataType[] = [this.plan.field.type];
    for (let j = 0; j < L; j++) types.push((types[j] as List).children[0]!.type);
    const leafValidity = this.leafValid.take();
    const leafNulls = leafValidity.length - count1(leafValidity);
    let data = this.sink.finish(this.counts[L]!, leafValidity, leafNulls);
    for (let j = L - 1; j >= 0; j--) {
      this.offsets[j]!.push(this.counts[j + 1]!);
      const offsets = this.offsets[j]!.take();
      const validity = this.valid[j]!.take();
      const nullCount = validity.length - count1(validity);
      data = makeData({
        type: types[j] as List, length: validity.length, nullCount, nullBitmap: nullCount ? packBits(validity) : undefined,
        valueOffsets: offsets, child: data,
      });
    }
    return data;
  }
}

// ───────────────────────────── writing ─────────────────────────────

type WriterSchemaElement = Parameters<typeof parquetWrite>[0]['schema'] extends (infer E)[] | undefined ? E : never;

/**
 * Writes an Arrow Table as parquet with the standard physical/logical types (see the module comment), so
 * DuckDB, pandas/pyarrow and our own reader read back the same column types and values.
 */
export function writeParquet(table: Table, options: ParquetWriteOptions = {}): Uint8Array {
  const schema: WriterSchemaElement[] = [
    { name: 'schema', repetition_type: 'REQUIRED', num_children: table.schema.fields.length } as WriterSchemaElement,
  ];
  const columnData = table.schema.fields.map((field, i) => {
    schema.push(...parquetSchemaFor(field));
    const chunks = table.getChildAt(i)!.data;
    const data: unknown[] = [];
    for (const chunk of chunks) {
      const part = jsValues(chunk, 0, chunk.length);
      for (let k = 0; k < part.length; k++) data.push(part[k]);
    }
    return { name: field.name, data };
  });
  const writer = new ByteWriter();
  const codec = options.codec ?? 'SNAPPY';
  parquetWrite({
    writer,
    columnData: columnData as Parameters<typeof parquetWrite>[0]['columnData'],
    schema,
    codec,
    compressors: codec === 'GZIP' ? { GZIP: (input: Uint8Array) => gzipSync(input) } : undefined,
    rowGroupSize: options.rowGroupSize ?? 100_000,
    kvMetadata: Object.entries(options.keyValueMetadata ?? {}).map(([key, value]) => ({ key, value })),
    createdBy: options.createdBy ?? 'DataComp Workbench (hyparquet-writer)',
  });
  return writer.getBytes();
}

function parquetSchemaFor(field: Field, name = field.name): WriterSchemaElement[] {
  const repetition_type = field.nullable ? 'OPTIONAL' : 'REQUIRED';
  const t = field.type as DataType;
  const el = (e: Partial<WriterSchemaElement>): WriterSchemaElement => ({ name, repetition_type, ...e }) as WriterSchemaElement;
  switch (t.typeId) {
    case Type.Dictionary: // written as its values: parquet writers choose their own dictionary encoding
      return parquetSchemaFor(new Field(field.name, (t as Dictionary).dictionary, field.nullable), name);
    case Type.Utf8:
    case Type.LargeUtf8:
      return [el({ type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } })];
    case Type.Binary:
    case Type.LargeBinary:
      return [el({ type: 'BYTE_ARRAY' })];
    case Type.Bool:
      return [el({ type: 'BOOLEAN' })];
    case Type.Int: {
      const { bitWidth, isSigned } = t as unknown as { bitWidth: 8 | 16 | 32 | 64; isSigned: boolean };
      // converted types only: hyparquet-writer encodes the INTEGER logical type's i8 bit width as an
      // i32, which DuckDB's thrift reader rejects; readers derive the logical type from these anyway
      if (bitWidth === 64) return [el(isSigned ? { type: 'INT64' } : { type: 'INT64', converted_type: 'UINT_64' })];
      if (bitWidth === 32 && isSigned) return [el({ type: 'INT32' })];
      return [el({ type: 'INT32', converted_type: `${isSigned ? 'INT' : 'UINT'}_${bitWidth}` as WriterSchemaElement['converted_type'] })];
    }
    case Type.Float: {
      const precision = (t as Float32).precision;
      if (precision === 1) return [el({ type: 'FLOAT' })];
      if (precision === 2) return [el({ type: 'DOUBLE' })];
      break;
    }
    case Type.Date:
      if ((t as DateDay).unit === 0) return [el({ type: 'INT32', converted_type: 'DATE', logical_type: { type: 'DATE' } })];
      break;
    case Type.Timestamp: {
      const { unit, timezone } = t as TimestampMicrosecond;
      const name = unit === 1 ? 'MILLIS' : unit === 2 ? 'MICROS' : unit === 3 ? 'NANOS' : undefined;
      if (!name) break;
      return [el({
        type: 'INT64',
        ...(name !== 'NANOS' ? { converted_type: `TIMESTAMP_${name}` as WriterSchemaElement['converted_type'] } : {}),
        logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: !!timezone, unit: name },
      })];
    }
    case Type.FixedSizeBinary:
      return [el({ type: 'FIXED_LEN_BYTE_ARRAY', type_length: (t as FixedSizeBinary).byteWidth })];
    case Type.List: {
      const item = (t as List).children[0]!;
      return [
        el({ num_children: 1, converted_type: 'LIST', logical_type: { type: 'LIST' } }),
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 } as WriterSchemaElement,
        ...parquetSchemaFor(item, 'element'),
      ];
    }
  }
  throw new TypeError(`writeParquet: column "${field.name}" has Arrow type ${String(t)}, which has no parquet mapping here`);
}

/** Rows [start, end) of an Arrow Data as the plain values hyparquet-writer takes (bytes, numbers, nested arrays). */
function jsValues(data: Data, start: number, end: number): ArrayLike<unknown> {
  const n = end - start;
  const off = data.offset + start;
  const bitmap = data.nullCount > 0 ? data.nullBitmap : undefined;
  const valid = (i: number) => !bitmap || ((bitmap[(off + i) >> 3]! >> ((off + i) & 7)) & 1) === 1;
  const out = new Array(n);
  const typeId = data.type.typeId;
  if (typeId === Type.Dictionary) {
    const dictionary: unknown[] = [];
    for (const chunk of data.dictionary!.data) {
      const part = jsValues(chunk, 0, chunk.length);
      for (let k = 0; k < part.length; k++) dictionary.push(part[k]);
    }
    const indices = data.values as ArrayLike<number | bigint>;
    for (let i = 0; i < n; i++) out[i] = valid(i) ? dictionary[Number(indices[off + i])] : null;
  } else if (typeId === Type.Utf8 || typeId === Type.Binary || typeId === Type.LargeUtf8 || typeId === Type.LargeBinary) {
    const offsets = data.valueOffsets as ArrayLike<number | bigint>;
    const bytes = data.values as Uint8Array;
    for (let i = 0; i < n; i++) out[i] = valid(i) ? bytes.subarray(Number(offsets[off + i]), Number(offsets[off + i + 1])) : null;
  } else if (typeId === Type.List) {
    const offsets = data.valueOffsets as Int32Array;
    const child = data.children[0]!;
    for (let i = 0; i < n; i++) out[i] = valid(i) ? Array.from(jsValues(child, offsets[off + i]!, offsets[off + i + 1]!)) : null;
  } else if (typeId === Type.Bool) {
    const bits = data.values as Uint8Array;
    for (let i = 0; i < n; i++) out[i] = valid(i) ? ((bits[(off + i) >> 3]! >> ((off + i) & 7)) & 1) === 1 : null;
  } else if (typeId === Type.FixedSizeBinary) {
    const width = (data.type as FixedSizeBinary).byteWidth;
    const bytes = data.values as Uint8Array;
    for (let i = 0; i < n; i++) out[i] = valid(i) ? bytes.subarray((off + i) * width, (off + i + 1) * width) : null;
  } else {
    const vals = data.values as ArrayLike<number | bigint>;
    if (!bitmap) return (vals as NumericArray).subarray(off, off + n);
    for (let i = 0; i < n; i++) out[i] = valid(i) ? vals[off + i] : null;
  }
  return out;
}

// ───────────────────────────── small helpers ─────────────────────────────

function u32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function bitWidth(max: number): number {
  return 32 - Math.clz32(max);
}

function chunkRange(meta: ColumnMetaData): [number, number] {
  const dict = meta.dictionary_page_offset !== undefined ? Number(meta.dictionary_page_offset) : 0;
  const data = Number(meta.data_page_offset);
  // some writers set dictionary_page_offset to 0 when there is none
  const start = dict > 0 && dict < data ? dict : data;
  return [start, start + Number(meta.total_compressed_size)];
}

function toSafeNumber(file: string, value: bigint | number, what: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new FormatError(file, `impossible ${what} ${String(value)}`);
  return n;
}

function packBits(flags: Uint8Array): Uint8Array {
  const out = new Uint8Array((flags.length + 7) >> 3);
  for (let i = 0; i < flags.length; i++) if (flags[i]) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

function count1(flags: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < flags.length; i++) n += flags[i]!;
  return n;
}

function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s+/g, ' ').slice(0, 200);
}
