/**
 * The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
 * header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the raw
 * little-endian tensor data, offsets relative to the end of the header. The reader enforces the rules the
 * reference implementation does: the header is UTF-8 JSON starting with '{', at most 100 MB; every tensor's
 * byte size matches dtype × shape; the tensors cover the data exactly, contiguous and without overlap.
 *
 * Checkpoints use open_clip's state-dict names and shapes, so `safetensors.torch.load_file` + `load_state_dict`
 * read them in PyTorch unchanged.
 */
import { FormatError } from '../formats/errors.ts';

export type SafeDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'U16' | 'U32' | 'U64' | 'BOOL';
const DTYPE_BYTES: Record<SafeDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1 };
/** The reference reader's limit on the header. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  /** Raw little-endian bytes (a view into the file for read results). */
  data: Uint8Array;
}

export interface SafeTensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

/** A float32 tensor entry from numbers (float32 rounding). */
export function f32Tensor(values: ArrayLike<number>, shape: readonly number[]): SafeTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (values.length !== n) throw new Error(`tensor of shape ${JSON.stringify(shape)} needs ${n} values, got ${values.length}`);
  const f = Float32Array.from(values);
  return { dtype: 'F32', shape: [...shape], data: new Uint8Array(f.buffer) };
}

/** A tensor's values as float32 (F32, F16, BF16 and F64 are accepted). */
export function toFloat32(t: SafeTensor, file = 'safetensors', name = 'tensor'): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      return out;
    case 'BF16':
      for (let i = 0; i < n; i++) {
        const u = new Uint32Array([dv.getUint16(2 * i, true) << 16]);
        out[i] = new Float32Array(u.buffer)[0]!;
      }
      return out;
    default:
      throw new FormatError(file, `${name} has dtype ${t.dtype}, expected a float type`);
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Serialises tensors (in the given order, 8-byte aligned header as the reference writer pads it). */
export function writeSafetensors(tensors: Iterable<readonly [string, SafeTensor]>, metadata?: Record<string, string>): Uint8Array {
  const entries = [...tensors];
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new Error('a tensor may not be named __metadata__');
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (bytes !== t.data.byteLength) throw new Error(`${name}: ${t.data.byteLength} bytes for ${t.dtype} ${JSON.stringify(t.shape)}, expected ${bytes}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const jsonBytes = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (jsonBytes.length % 8)) % 8;
  const headerLen = jsonBytes.length + pad;
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(jsonBytes, 8);
  out.fill(0x20, 8 + jsonBytes.length, 8 + headerLen);
  let at = 8 + headerLen;
  for (const [, t] of entries) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}

/** Parses a whole safetensors file; tensors are views into `bytes`. */
export function readSafetensors(bytes: Uint8Array, file = 'safetensors'): SafeTensorsFile {
  if (bytes.length < 8) throw new FormatError(file, `is ${bytes.length} bytes, too short for a safetensors header`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new FormatError(file, `header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.length) throw new FormatError(file, `header length ${headerLen} runs past the end of the file (${bytes.length} bytes)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    throw new FormatError(file, 'header is not UTF-8');
  }
  if (!text.startsWith('{')) throw new FormatError(file, 'header is not a JSON object');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `header is not valid JSON (${(err as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new FormatError(file, 'header is not a JSON object');
  const data = bytes.subarray(8 + headerLen);
  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  const tensors = new Map<string, SafeTensor>();
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw new FormatError(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new FormatError(file, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const t = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!t || typeof t !== 'object') throw new FormatError(file, `tensor ${name}: entry is not an object`);
    if (typeof t.dtype !== 'string' || !(t.dtype in DTYPE_BYTES)) throw new FormatError(file, `tensor ${name}: unknown dtype ${JSON.stringify(t.dtype)}`);
    const dtype = t.dtype as SafeDType;
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new FormatError(file, `tensor ${name}: shape is not a list of sizes`);
    const shape = t.shape as number[];
    const offs = t.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new FormatError(file, `tensor ${name}: data_offsets is not [begin, end]`);
    }
    const [begin, end] = offs as [number, number];
    const elements = shape.reduce((a, b) => a * b, 1);
    const size = elements * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(size) || end < begin || end - begin !== size) {
      throw new FormatError(file, `tensor ${name}: ${dtype} ${JSON.stringify(shape)} needs ${size} bytes but data_offsets [${begin}, ${end}] give ${end - begin}`);
    }
    if (end > data.length) throw new FormatError(file, `tensor ${name}: data [${begin}, ${end}) runs past the end of the data (${data.length} bytes; truncated file?)`);
    spans.push({ name, begin, end });
    tensors.set(name, { dtype, shape, data: data.subarray(begin, end) });
  }
  // The tensors must tile the data: sorted by offset, each starts where the previous ended, the last ends at the end.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const s of spans) {
    if (s.begin !== at) {
      throw new FormatError(file, s.begin < at ? `tensor ${s.name} overlaps the tensor before it (offset ${s.begin} < ${at})` : `gap of ${s.begin - at} bytes before tensor ${s.name}`);
    }
    at = s.end;
  }
  if (at !== data.length) throw new FormatError(file, `${data.length - at} bytes after the last tensor`);
  return { tensors, metadata };
}
