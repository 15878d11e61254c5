/**
 * NumPy `.npy` files: reader and writer (format spec: numpy/lib/_format_impl.py, numpy 2.x).
 *
 * Decisions:
 * - Versions 1.0 and 2.0 are read and written; 3.0 (utf-8 header) is read. The writer picks the version
 *   as numpy does (1.0 unless the header needs more than 65535 bytes), so `encodeNpy` equals `np.save`.
 * - Big-endian files (`>f4`, …) are converted to little-endian on read: the values are what numpy sees,
 *   `dtype` is the little-endian equivalent and `header.descr` keeps what the file said. Never written.
 * - `fortran_order: True` files are transposed to C order on read, so `data` is always C order.
 * - float16 stays raw bits (Uint16Array) unless `{ float16: 'float32' }` asks for decoded values.
 * - The header is parsed by a small parser for the Python literal subset numpy writes (no eval), and
 *   everything is checked against the bytes actually present before anything is allocated. Trailing bytes
 *   after the data are refused too: np.save never writes them, so they mean a wrong shape or a broken file.
 */
import { FormatError } from './errors.ts';

/** numpy's `dtype.str` for the numeric dtypes supported, and `'u8,u8'` for DataComp's uid records. */
export const NUMERIC_DTYPES = ['<f2', '<f4', '<f8', '|i1', '<i2', '<i4', '<i8', '|u1', '<u2', '<u4', '<u8', '|b1'] as const;
export type NumericDtype = (typeof NUMERIC_DTYPES)[number];
/** The structured dtype `[('f0', '<u8'), ('f1', '<u8')]` of a DataComp subset file (`np.dtype("u8,u8")`). */
export const UID_DTYPE = 'u8,u8';
export type NpyDtype = NumericDtype | typeof UID_DTYPE;

export type NpyData =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array;

export interface NpyArray {
  dtype: NpyDtype;
  /** Dimensions, outermost first; `[]` for a 0-d array. */
  shape: number[];
  /**
   * Elements in C order. `<f2` is a Uint16Array of raw half-float bits (or a Float32Array when decoded),
   * `|b1` a Uint8Array of 0/1, `u8,u8` a BigUint64Array holding f0, f1 of each record in turn.
   * When no conversion was needed and the bytes were aligned, it is a view of the input bytes.
   */
  data: NpyData;
}

export interface NpyHeader {
  version: [major: number, minor: number];
  /** The dtype descriptor as the file wrote it, e.g. `'>f4'` or `"[('f0', '<u8'), ('f1', '<u8')]"`. */
  descr: string;
  /** What the data becomes after reading (always little-endian). */
  dtype: NpyDtype;
  bigEndian: boolean;
  fortranOrder: boolean;
  shape: number[];
  /** Number of elements (1 for a 0-d array). */
  count: number;
  itemSize: number;
  /** Offset of the data from the start of the file; numpy aligns it to 64 bytes. */
  dataOffset: number;
  dataBytes: number;
}

export interface ReadNpyOptions {
  /** `'raw'` (default): float16 data as a Uint16Array of bits; `'float32'`: decoded to a Float32Array. */
  float16?: 'raw' | 'float32';
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const MAGIC_LEN = 8; // magic + 2 version bytes
const ARRAY_ALIGN = 64;
/** numpy refuses longer headers by default (`_MAX_HEADER_SIZE`): literal_eval is not safe on big inputs. */
const MAX_HEADER_CHARS = 10000;
/** NPY_MAXDIMS in numpy 2.x. */
const MAX_DIMS = 64;
/** numpy pads the header so the first axis can grow in place to any 64-bit length. */
const GROWTH_AXIS_MAX_DIGITS = 21;

const ITEM_SIZE: Record<NpyDtype, number> = {
  '<f2': 2, '<f4': 4, '<f8': 8, '|i1': 1, '<i2': 2, '<i4': 4, '<i8': 8,
  '|u1': 1, '<u2': 2, '<u4': 4, '<u8': 8, '|b1': 1, 'u8,u8': 16,
};

/** numpy's repr of each dtype's descr, as it appears in a header numpy writes. */
const DESCR_TEXT: Record<NpyDtype, string> = {
  '<f2': "'<f2'", '<f4': "'<f4'", '<f8': "'<f8'", '|i1': "'|i1'", '<i2': "'<i2'", '<i4': "'<i4'", '<i8': "'<i8'",
  '|u1': "'|u1'", '<u2': "'<u2'", '<u4': "'<u4'", '<u8': "'<u8'", '|b1': "'|b1'",
  'u8,u8': "[('f0', '<u8'), ('f1', '<u8')]",
};

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function itemSizeOf(dtype: NpyDtype): number {
  return ITEM_SIZE[dtype];
}

// ---------------------------------------------------------------- header literal parser

type PyValue = string | bigint | boolean | null | PyDict | PyList | PyTuple;
interface PyDict { kind: 'dict'; entries: [PyValue, PyValue][] }
interface PyList { kind: 'list'; items: PyValue[] }
interface PyTuple { kind: 'tuple'; items: PyValue[] }

const MAX_NESTING = 8;

/**
 * Parses the subset of Python literals numpy headers use: dicts, lists, tuples, str, int (with a
 * Python 2 `L` suffix tolerated, as numpy does), True/False/None. Anything else is an error.
 */
class LiteralParser {
  private pos = 0;
  constructor(private readonly text: string, private readonly file: string) {}

  parseDocument(): PyValue {
    const value = this.value(0);
    this.space();
    if (this.pos !== this.text.length) this.fail(`unexpected ${JSON.stringify(this.text[this.pos])} after the header dictionary`);
    return value;
  }

  private fail(problem: string): never {
    throw new FormatError(this.file, `npy header: ${problem} (at character ${this.pos})`);
  }

  private space(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x0c) this.pos++;
      else break;
    }
  }

  private value(depth: number): PyValue {
    if (depth > MAX_NESTING) this.fail('nested too deeply');
    this.space();
    const c = this.text[this.pos];
    if (c === undefined) this.fail('ends too early');
    if (c === '{') return this.dict(depth);
    if (c === '[' || c === '(') return this.sequence(depth, c);
    if (c === "'" || c === '"') return this.string(c);
    if ((c >= '0' && c <= '9') || c === '-' || c === '+') return this.integer();
    const word = /^[A-Za-z_]\w*/.exec(this.text.slice(this.pos, this.pos + 16))?.[0];
    if (word === 'True' || word === 'False' || word === 'None') {
      this.pos += word.length;
      return word === 'None' ? null : word === 'True';
    }
    return this.fail(`unexpected ${JSON.stringify(c)}`);
  }

  private dict(depth: number): PyDict {
    this.pos++; // {
    const entries: [PyValue, PyValue][] = [];
    for (;;) {
      this.space();
      if (this.text[this.pos] === '}') { this.pos++; return { kind: 'dict', entries }; }
      const key = this.value(depth + 1);
      this.space();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      entries.push([key, this.value(depth + 1)]);
      this.space();
      const sep = this.text[this.pos];
      if (sep === ',') this.pos++;
      else if (sep !== '}') this.fail("expected ',' or '}'");
    }
  }

  private sequence(depth: number, open: '[' | '('): PyList | PyTuple {
    const close = open === '[' ? ']' : ')';
    this.pos++;
    const items: PyValue[] = [];
    let sawComma = false;
    for (;;) {
      this.space();
      if (this.text[this.pos] === close) {
        this.pos++;
        if (open === '(' && items.length === 1 && !sawComma) return items[0] as PyTuple; // (x) is just x
        return { kind: open === '[' ? 'list' : 'tuple', items };
      }
      items.push(this.value(depth + 1));
      this.space();
      const sep = this.text[this.pos];
      if (sep === ',') { this.pos++; sawComma = true; }
      else if (sep !== close) this.fail(`expected ',' or '${close}'`);
    }
  }

  private string(quote: string): string {
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.text[this.pos++];
      if (c === undefined || c === '\n') this.fail('unterminated string');
      if (c === quote) return out;
      if (c === '\\') {
        const e = this.text[this.pos++];
        if (e === '\\' || e === "'" || e === '"') out += e;
        else if (e === 'n') out += '\n';
        else if (e === 't') out += '\t';
        else this.fail('unsupported escape in string');
      } else {
        out += c;
      }
      if (out.length > 256) this.fail('string too long');
    }
  }

  private integer(): bigint {
    const m = /^[+-]?\d{1,40}/.exec(this.text.slice(this.pos, this.pos + 42));
    if (!m) return this.fail('malformed number');
    this.pos += m[0].length;
    if (this.text[this.pos] === 'L') this.pos++; // Python 2 long suffix
    const next = this.text[this.pos];
    if (next !== undefined && /[\w.]/.test(next)) this.fail('malformed number');
    return BigInt(m[0]);
  }
}

/** Maps a parsed descr to a dtype, or explains why it is not supported. */
function dtypeOfDescr(descr: PyValue, file: string): { dtype: NpyDtype; bigEndian: boolean } {
  if (typeof descr === 'string') {
    const m = /^([<>|])([fiub])(\d+)$/.exec(descr);
    if (m) {
      const [, order, kind, size] = m as unknown as [string, string, string, string];
      const wide = size !== '1';
      // one-byte types have no byte order ('|'); numpy also accepts '<'/'>' for them
      if (wide && order === '|') throw new FormatError(file, `npy dtype '${descr}' has no byte order`);
      const canonical = `${wide ? '<' : '|'}${kind}${size}`;
      if (kind === 'b' ? size === '1' : (NUMERIC_DTYPES as readonly string[]).includes(canonical)) {
        return { dtype: canonical as NumericDtype, bigEndian: order === '>' && wide };
      }
    }
    throw new FormatError(file, `npy dtype '${descr}' is not supported (supported: ${NUMERIC_DTYPES.join(' ')} and ${DESCR_TEXT['u8,u8']})`);
  }
  if (typeof descr === 'object' && descr !== null && descr.kind === 'list' && descr.items.length === 2) {
    const fields = descr.items.map((f) =>
      typeof f === 'object' && f !== null && f.kind === 'tuple' && f.items.length === 2 ? f.items : undefined);
    const [a, b] = fields;
    if (a && b && a[0] === 'f0' && b[0] === 'f1' && (a[1] === '<u8' || a[1] === '>u8') && a[1] === b[1]) {
      return { dtype: UID_DTYPE, bigEndian: a[1] === '>u8' };
    }
  }
  throw new FormatError(file, `npy structured dtype is not supported (only ${DESCR_TEXT['u8,u8']})`);
}

/** Python's repr of a shape tuple: `()`, `(5,)`, `(3, 4)`. */
export function formatShape(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
}

/**
 * Reads and checks the header. `fileSize` is the whole file's length when `bytes` holds only its
 * beginning (e.g. the first 64 KiB of a multi-GB file for `dcw inspect`); the data size is checked against it.
 */
export function readNpyHeader(bytes: Uint8Array, file: string, options: { fileSize?: number } = {}): NpyHeader {
  const fileSize = options.fileSize ?? bytes.length;
  if (bytes.length < MAGIC_LEN + 2 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new FormatError(file, bytes.length < MAGIC_LEN + 2 && MAGIC.every((b, i) => i >= bytes.length || bytes[i] === b)
      ? `npy file is truncated (${bytes.length} bytes)` : 'not an npy file (no \\x93NUMPY magic)');
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (!((major === 1 || major === 2 || major === 3) && minor === 0)) {
    throw new FormatError(file, `npy format version ${major}.${minor} is not supported (1.0, 2.0, 3.0)`);
  }
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < MAGIC_LEN + lengthBytes) throw new FormatError(file, 'npy header is truncated');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = major === 1 ? view.getUint16(MAGIC_LEN, true) : view.getUint32(MAGIC_LEN, true);
  const headerStart = MAGIC_LEN + lengthBytes;
  if (headerLength > MAX_HEADER_CHARS * (major === 3 ? 4 : 1)) {
    throw new FormatError(file, `npy header length ${headerLength} is larger than the ${MAX_HEADER_CHARS} allowed`);
  }
  if (headerStart + headerLength > bytes.length) {
    throw new FormatError(file, `npy header of ${headerLength} bytes runs past the end of the file (${bytes.length} bytes)`);
  }
  const raw = bytes.subarray(headerStart, headerStart + headerLength);
  let text: string;
  if (major === 3) {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw new FormatError(file, 'npy 3.0 header is not valid UTF-8');
    }
  } else {
    text = Array.from(raw, (b) => String.fromCharCode(b)).join(''); // latin-1
  }
  if (text.length > MAX_HEADER_CHARS) throw new FormatError(file, `npy header of ${text.length} characters is too long`);

  const dict = new LiteralParser(text, file).parseDocument();
  if (typeof dict !== 'object' || dict === null || dict.kind !== 'dict') throw new FormatError(file, 'npy header is not a dictionary');
  const fields = new Map<string, PyValue>();
  for (const [key, value] of dict.entries) {
    if (typeof key !== 'string' || !['descr', 'fortran_order', 'shape'].includes(key)) {
      throw new FormatError(file, `npy header has an unexpected key ${typeof key === 'string' ? `'${key}'` : '(not a string)'}`);
    }
    if (fields.has(key)) throw new FormatError(file, `npy header repeats the key '${key}'`);
    fields.set(key, value);
  }
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!fields.has(key)) throw new FormatError(file, `npy header lacks the key '${key}'`);
  }
  const fortranOrder = fields.get('fortran_order');
  if (typeof fortranOrder !== 'boolean') throw new FormatError(file, 'npy header: fortran_order is not True or False');
  const shapeValue = fields.get('shape');
  if (typeof shapeValue !== 'object' || shapeValue === null || shapeValue.kind !== 'tuple') {
    throw new FormatError(file, 'npy header: shape is not a tuple');
  }
  if (shapeValue.items.length > MAX_DIMS) throw new FormatError(file, `npy shape has ${shapeValue.items.length} dimensions (at most ${MAX_DIMS})`);
  const shape: number[] = [];
  let count = 1n;
  for (const dim of shapeValue.items) {
    if (typeof dim !== 'bigint' || dim < 0n || dim > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(file, `npy shape has an invalid dimension ${typeof dim === 'bigint' ? dim : '(not an integer)'}`);
    }
    shape.push(Number(dim));
    count *= dim;
  }
  const { dtype, bigEndian } = dtypeOfDescr(fields.get('descr')!, file);
  const itemSize = ITEM_SIZE[dtype];
  const dataOffset = headerStart + headerLength;
  const dataBytes = count * BigInt(itemSize);
  const present = fileSize - dataOffset;
  if (dataBytes !== BigInt(present)) {
    throw new FormatError(file, dataBytes > BigInt(present)
      ? `npy shape ${formatShape(shape)} of ${dtype} needs ${dataBytes} data bytes but the file has ${Math.max(present, 0)}`
      : `npy file has ${BigInt(present) - dataBytes} bytes after the data of shape ${formatShape(shape)}`);
  }
  return {
    version: [major, minor], descr: descrToText(fields.get('descr')!), dtype, bigEndian, fortranOrder,
    shape, count: Number(count), itemSize, dataOffset, dataBytes: Number(dataBytes),
  };
}

/** Python's repr of a parsed descr (enough for the forms dtypeOfDescr accepts). */
function descrToText(value: PyValue): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value === null) return 'None';
  if (value.kind === 'list') return `[${value.items.map(descrToText).join(', ')}]`;
  if (value.kind === 'tuple') return value.items.length === 1 ? `(${descrToText(value.items[0]!)},)` : `(${value.items.map(descrToText).join(', ')})`;
  return '{…}';
}

// ---------------------------------------------------------------- reading data

/** Reverses the byte order of each `itemSize`-byte unit in place (8-byte units for the uid records). */
function swapBytes(bytes: Uint8Array, unit: number): void {
  for (let i = 0; i + unit <= bytes.length; i += unit) {
    for (let a = i, b = i + unit - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** Copies Fortran-ordered elements into C order. */
function fortranToC(src: Uint8Array, shape: readonly number[], itemSize: number): Uint8Array {
  const out = new Uint8Array(src.length);
  const n = shape.length;
  const count = src.length / itemSize;
  // Fortran strides in elements: the first axis varies fastest.
  const fStride: number[] = [];
  for (let d = 0, s = 1; d < n; d++) { fStride.push(s); s *= shape[d]!; }
  const index = new Array<number>(n).fill(0);
  let from = 0;
  for (let i = 0; i < count; i++) {
    out.set(src.subarray(from * itemSize, from * itemSize + itemSize), i * itemSize);
    // odometer over the C index: the last axis varies fastest
    for (let d = n - 1; d >= 0; d--) {
      if (++index[d]! < shape[d]!) { from += fStride[d]!; break; }
      from -= (shape[d]! - 1) * fStride[d]!;
      index[d] = 0;
    }
  }
  return out;
}

function typedView(dtype: NpyDtype, buffer: ArrayBuffer | SharedArrayBuffer, offset: number, bytes: number): NpyData {
  const n = bytes / ITEM_SIZE[dtype];
  switch (dtype) {
    case '<f2': return new Uint16Array(buffer, offset, n);
    case '<f4': return new Float32Array(buffer, offset, n);
    case '<f8': return new Float64Array(buffer, offset, n);
    case '|i1': return new Int8Array(buffer, offset, n);
    case '<i2': return new Int16Array(buffer, offset, n);
    case '<i4': return new Int32Array(buffer, offset, n);
    case '<i8': return new BigInt64Array(buffer, offset, n);
    case '|u1': case '|b1': return new Uint8Array(buffer, offset, n);
    case '<u2': return new Uint16Array(buffer, offset, n);
    case '<u4': return new Uint32Array(buffer, offset, n);
    case '<u8': return new BigUint64Array(buffer, offset, n);
    case 'u8,u8': return new BigUint64Array(buffer, offset, n * 2);
  }
}

/**
 * The data bytes of a checked header, little-endian and in C order: a view of `bytes` when nothing had to
 * change, else a fresh copy. The result's byteOffset is a multiple of 8 either way.
 */
export function npyDataBytes(bytes: Uint8Array, header: NpyHeader): Uint8Array {
  let data = bytes.subarray(header.dataOffset, header.dataOffset + header.dataBytes);
  const swap = header.itemSize > 1 && header.bigEndian === HOST_LITTLE_ENDIAN;
  const aligned = data.byteOffset % 8 === 0;
  if (header.fortranOrder && header.shape.length > 1) data = fortranToC(data, header.shape, header.itemSize);
  else if (swap || !aligned) data = data.slice();
  if (swap) swapBytes(data, Math.min(header.itemSize, 8));
  return data;
}

/** Reads a whole `.npy` file. */
export function readNpy(bytes: Uint8Array, file: string, options: ReadNpyOptions = {}): NpyArray {
  const header = readNpyHeader(bytes, file);
  const data = npyDataBytes(bytes, header);
  let typed = typedView(header.dtype, data.buffer, data.byteOffset, data.byteLength);
  if (header.dtype === '<f2' && options.float16 === 'float32') typed = float16ToFloat32(typed as Uint16Array);
  return { dtype: header.dtype, shape: header.shape, data: typed };
}

// ---------------------------------------------------------------- writing

type TypedArrayClass = new (length: number) => NpyData;
const ARRAY_CLASS: Record<NpyDtype, TypedArrayClass> = {
  '<f2': Uint16Array, '<f4': Float32Array, '<f8': Float64Array, '|i1': Int8Array, '<i2': Int16Array, '<i4': Int32Array,
  '<i8': BigInt64Array, '|u1': Uint8Array, '<u2': Uint16Array, '<u4': Uint32Array, '<u8': BigUint64Array, '|b1': Uint8Array,
  'u8,u8': BigUint64Array,
};

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`invalid npy dimension ${d}`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new RangeError(`npy shape ${formatShape(shape)} is too large`);
  return n;
}

/**
 * The header numpy 2.x's `np.save` writes for this dtype and shape (magic, version, length, dict,
 * growth padding, spaces to a multiple of 64 bytes, '\n'). `version` forces 1 or 2 as
 * `np.lib.format.write_array(..., version=(v, 0))` does; by default 1.0 unless too long for it.
 */
export function encodeNpyHeader(dtype: NpyDtype, shape: readonly number[], options: { version?: 1 | 2 } = {}): Uint8Array {
  if (!(dtype in ITEM_SIZE)) throw new RangeError(`npy dtype ${String(dtype)} is not supported`);
  if (shape.length > MAX_DIMS) throw new RangeError(`npy arrays have at most ${MAX_DIMS} dimensions`);
  elementCount(shape);
  let dict = `{'descr': ${DESCR_TEXT[dtype]}, 'fortran_order': False, 'shape': ${formatShape(shape)}, }`;
  if (shape.length > 0) dict += ' '.repeat(GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length);
  const version = options.version ?? (wrappedLength(dict.length, 1) <= 0xffff ? 1 : 2);
  const lengthBytes = version === 1 ? 2 : 4;
  const hlen = dict.length + 1;
  const padlen = ARRAY_ALIGN - ((MAGIC_LEN + lengthBytes + hlen) % ARRAY_ALIGN);
  const total = hlen + padlen;
  if (version === 1 && total > 0xffff) throw new RangeError(`npy header of ${total} bytes is too long for format 1.0`);
  const out = new Uint8Array(MAGIC_LEN + lengthBytes + total);
  out.set(MAGIC);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(MAGIC_LEN, total, true);
  else view.setUint32(MAGIC_LEN, total, true);
  let p = MAGIC_LEN + lengthBytes;
  for (let i = 0; i < dict.length; i++) out[p++] = dict.charCodeAt(i);
  out.fill(0x20, p, out.length - 1);
  out[out.length - 1] = 0x0a;
  return out;
}

function wrappedLength(dictLength: number, version: 1 | 2): number {
  const hlen = dictLength + 1;
  return hlen + ARRAY_ALIGN - ((MAGIC_LEN + (version === 1 ? 2 : 4) + hlen) % ARRAY_ALIGN);
}

/**
 * Encodes an array as `np.save` would (C order, little-endian). `<f2` takes raw bits (Uint16Array) or
 * values (Float32Array, rounded as numpy's astype(float16) does).
 */
export function encodeNpy(array: NpyArray, options: { version?: 1 | 2 } = {}): Uint8Array {
  const { dtype, shape } = array;
  let data = array.data;
  if (dtype === '<f2' && data instanceof Float32Array) data = float32ToFloat16(data);
  const expected = ARRAY_CLASS[dtype];
  if (!(data instanceof expected)) throw new TypeError(`npy dtype ${dtype} needs a ${expected.name}, got a ${data.constructor.name}`);
  const count = elementCount(shape);
  const perItem = dtype === UID_DTYPE ? 2 : 1;
  if (data.length !== count * perItem) {
    throw new RangeError(`npy shape ${formatShape(shape)} needs ${count * perItem} elements, got ${data.length}`);
  }
  const header = encodeNpyHeader(dtype, shape, options);
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header);
  const body = out.subarray(header.length);
  body.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  if (!HOST_LITTLE_ENDIAN && ITEM_SIZE[dtype] > 1) swapBytes(body, Math.min(ITEM_SIZE[dtype], 8));
  return out;
}

// ---------------------------------------------------------------- float16

let halfToFloatBits: Uint32Array | undefined;

/**
 * Decodes IEEE half-precision bits (numpy's float16) to float32 values, exactly. Works on bit patterns
 * (a 64 K-entry table) so NaN payloads survive as in numpy's npy_halfbits_to_floatbits.
 */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  if (!halfToFloatBits) {
    halfToFloatBits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = (h & 0x8000) << 16;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      if (exp === 31) halfToFloatBits[h] = (sign | 0x7f800000 | (frac << 13)) >>> 0;
      else if (exp !== 0) halfToFloatBits[h] = (sign | ((exp + 112) << 23) | (frac << 13)) >>> 0;
      else if (frac === 0) halfToFloatBits[h] = sign >>> 0;
      else {
        // subnormal half: normalise the fraction
        let e = 113;
        let f = frac;
        while (!(f & 0x400)) { f <<= 1; e--; }
        halfToFloatBits[h] = (sign | (e << 23) | ((f & 0x3ff) << 13)) >>> 0;
      }
    }
  }
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  const table = halfToFloatBits;
  for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]!]!;
  return out;
}

/**
 * Rounds float32 values to half-precision bits the way numpy's `astype(np.float16)` does
 * (npy_floatbits_to_halfbits: round half to even, overflow to ±inf, NaN kept as NaN).
 */
export function float32ToFloat16(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const f = inBits[i]!;
    const sign = (f >>> 16) & 0x8000;
    const fExp = f & 0x7f800000;
    let fSig = f & 0x007fffff;
    let h: number;
    if (fExp >= 0x47800000) {
      // overflow, inf or NaN
      if (fExp === 0x7f800000 && fSig !== 0) {
        h = 0x7c00 + (fSig >>> 13);
        if (h === 0x7c00) h++; // keep it a NaN when the payload's top bits are zero
      } else {
        h = 0x7c00;
      }
    } else if (fExp <= 0x38000000) {
      // subnormal half or zero
      if (fExp < 0x33000000) {
        h = 0;
      } else {
        // shift the significand (with its implicit 1) into the subnormal position, rounding half to even;
        // a carry into the exponent gives the smallest normal half, which is right
        const shift = 126 - (fExp >>> 23); // 14..24
        fSig += 0x00800000;
        const half = 1 << (shift - 1);
        const rest = fSig & ((1 << shift) - 1);
        h = fSig >>> shift;
        if (rest > half || (rest === half && (h & 1))) h++;
      }
    } else {
      const hExp = (fExp - 0x38000000) >>> 13;
      const rest = fSig & 0x1fff;
      let hm = hExp + (fSig >>> 13);
      if (rest > 0x1000 || (rest === 0x1000 && (hm & 1))) hm++; // may carry into the exponent, up to inf: correct
      h = hm;
    }
    out[i] = sign | h;
  }
  return out;
}

// ---------------------------------------------------------------- summary for `dcw inspect`

export interface NpySummary {
  version: string;
  /** As the file wrote it. */
  descr: string;
  dtype: NpyDtype;
  shape: number[];
  fortranOrder: boolean;
  dataBytes: number;
  fileBytes: number;
}

/** What `dcw inspect` prints for a `.npy`; `bytes` may be just the file's beginning if `fileSize` is given. */
export function summarizeNpy(bytes: Uint8Array, file: string, options: { fileSize?: number } = {}): NpySummary {
  const h = readNpyHeader(bytes, file, options);
  return {
    version: `${h.version[0]}.${h.version[1]}`, descr: h.descr, dtype: h.dtype, shape: h.shape,
    fortranOrder: h.fortranOrder, dataBytes: h.dataBytes, fileBytes: options.fileSize ?? bytes.length,
  };
}

/** One line, e.g. `npy 1.0  <f4  shape (3, 4)  48 data bytes`. */
export function formatNpySummary(s: NpySummary): string {
  const extra = [s.descr !== DESCR_TEXT[s.dtype] ? `stored as ${s.descr}` : '', s.fortranOrder ? 'Fortran order' : ''].filter(Boolean);
  return `npy ${s.version}  ${s.dtype}  shape ${formatShape(s.shape)}  ${s.dataBytes} data bytes${extra.length ? `  (${extra.join(', ')})` : ''}`;
}

