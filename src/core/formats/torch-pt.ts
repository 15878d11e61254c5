/**
 * A safe reader for the arrays in `torch.save` files (the zip format of torch ≥ 1.6), as DataComp's
 * image_based assets are stored: `{scale}_centroids_l14.pt` holds a pickled numpy array (image_based_clustering.py
 * saves faiss's numpy centroids with torch.save(..., pickle_protocol=4)) and `in1k_clip_vit_l14_{i}.pt` a dict
 * whose "image_features" is a tensor.
 *
 * Layout (torch/serialization.py `_save`): a zip (members stored, not deflated) with one top folder — the file's
 * stem, or "archive" — holding `data.pkl` (the pickle), `data/{key}` (each storage's raw bytes), `version`, and
 * since torch 2.1 `byteorder` ("little" or "big"). A tensor is pickled as
 * `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata])`
 * whose storage is a persistent id `('storage', torch.FloatStorage, key, location, numel)`.
 *
 * The pickle is run by a small VM that knows only the opcodes and globals those files use (protocols 2–4:
 * containers, numbers, strings, bytes, memo, REDUCE/BUILD on a fixed list of callables, BINPERSID) and refuses
 * everything else with a one-line FormatError — it never imports or calls anything else, so a hostile file
 * cannot execute code. Every length is checked against the bytes that are really there before anything is
 * allocated, tensor shapes must fit their storage, and nesting is capped.
 */
import { FormatError } from './errors.ts';
import { crc32, listNpz, readNpzMember, type NpzEntry } from './npz.ts';
import { float16ToFloat32 } from './npy.ts';

/** A numeric array read from a .pt file (C order, little-endian). '<f2' data is raw half-float bits. */
export interface PtArray {
  readonly kind: 'array';
  dtype: '<f2' | '<f4' | '<f8' | 'bf16';
  shape: number[];
  data: Uint16Array | Float32Array | Float64Array;
}

/** What the VM builds: plain values, containers, and arrays. */
export type PtValue = null | boolean | number | bigint | string | Uint8Array | PtValue[] | PtTuple | Map<PtKey, PtValue> | PtArray;
export type PtKey = string | number | boolean | null;
export class PtTuple {
  constructor(readonly items: PtValue[]) {}
}

const MAX_MARKS = 1000;

const STORAGE_DTYPES: Record<string, { dtype: PtArray['dtype']; size: number }> = {
  FloatStorage: { dtype: '<f4', size: 4 },
  HalfStorage: { dtype: '<f2', size: 2 },
  DoubleStorage: { dtype: '<f8', size: 8 },
  BFloat16Storage: { dtype: 'bf16', size: 2 },
};

const NUMPY_DTYPES: Record<string, { dtype: PtArray['dtype']; size: number }> = {
  f2: { dtype: '<f2', size: 2 }, f4: { dtype: '<f4', size: 4 }, f8: { dtype: '<f8', size: 8 },
  float16: { dtype: '<f2', size: 2 }, float32: { dtype: '<f4', size: 4 }, float64: { dtype: '<f8', size: 8 },
};

// Objects that exist only inside the VM.
class Global {
  constructor(readonly name: string) {}
}
class StorageRef {
  constructor(readonly dtype: PtArray['dtype'], readonly size: number, readonly bytes: Uint8Array) {}
}
class NumpyDtype {
  bigEndian = false;
  constructor(readonly dtype: PtArray['dtype'], readonly size: number) {}
}
class PendingNdarray {}
class Mark {}
const MARK = new Mark();

type VmValue = PtValue | Global | StorageRef | NumpyDtype | PendingNdarray | Mark;

const ALLOWED_GLOBALS = new Set([
  'torch._utils._rebuild_tensor_v2',
  'collections.OrderedDict',
  'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',
  'numpy.ndarray', 'numpy.dtype',
  '_codecs.encode',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

export interface TorchArchive {
  /** The top folder of the records, e.g. "archive". */
  prefix: string;
  records: Map<string, Uint8Array>;
  bigEndian: boolean;
}

/** Reads the zip structure of a `torch.save` file: its records by name (without the top folder). */
export function readTorchArchive(bytes: Uint8Array, file: string): TorchArchive {
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! <= 5) {
    throw new FormatError(file, 'a legacy (torch < 1.6) torch.save file: re-save it with a current torch, or save the array with numpy.save');
  }
  if (!(bytes[0] === 0x50 && bytes[1] === 0x4b)) throw new FormatError(file, 'not a torch.save file (no zip signature) nor an .npy file');
  const entries = listNpz(bytes, file);
  const pkl = entries.filter((e) => e.name === 'data.pkl' || e.name.endsWith('/data.pkl'));
  if (pkl.length !== 1) throw new FormatError(file, pkl.length ? 'has more than one data.pkl' : 'has no data.pkl record (not a torch.save archive)');
  const prefix = pkl[0]!.name.slice(0, -'data.pkl'.length);
  if (prefix.slice(0, -1).includes('/')) throw new FormatError(file, `data.pkl is nested too deep (${pkl[0]!.name})`);
  const records = new Map<string, Uint8Array>();
  for (const e of entries) {
    if (!e.name.startsWith(prefix)) throw new FormatError(file, `record ${e.name} is outside the archive folder ${prefix || '/'}`);
    if (e.name.endsWith('/')) continue;
    records.set(e.name.slice(prefix.length), memberData(bytes, file, e));
  }
  const order = records.get('byteorder');
  let bigEndian = false;
  if (order) {
    const text = new TextDecoder().decode(order);
    if (text !== 'little' && text !== 'big') throw new FormatError(file, `byteorder record says "${text.slice(0, 20)}", not little or big`);
    bigEndian = text === 'big';
  }
  return { prefix: prefix.replace(/\/$/, ''), records, bigEndian };
}

function memberData(bytes: Uint8Array, file: string, e: NpzEntry): Uint8Array {
  if (e.method !== 'stored') return readNpzMember(bytes, file, e.name);
  const data = bytes.subarray(e.dataOffset, e.dataOffset + e.compressedBytes);
  if (crc32(data) !== e.crc32) throw new FormatError(file, `record ${e.name} fails its CRC check`);
  return data;
}

/** Loads the object a `torch.save` file holds (arrays, and dicts/lists/tuples of them and plain values). */
export function readTorchPt(bytes: Uint8Array, file: string): PtValue {
  const archive = readTorchArchive(bytes, file);
  return unpickle(archive.records.get('data.pkl')!, file, archive);
}

/** Runs the restricted pickle VM over `pkl`. `archive` supplies the storages of persistent ids. */
export function unpickle(pkl: Uint8Array, file: string, archive?: TorchArchive): PtValue {
  const fail = (problem: string): never => {
    throw new FormatError(file, `data.pkl: ${problem}`);
  };
  const view = new DataView(pkl.buffer, pkl.byteOffset, pkl.byteLength);
  let at = 0;
  const need = (n: number, what: string): number => {
    if (!(n >= 0) || at + n > pkl.length) fail(`${what} of ${n} bytes runs past the end of the pickle (${pkl.length - at} left)`);
    const start = at;
    at += n;
    return start;
  };
  const u8 = () => pkl[need(1, 'an argument')]!;
  const u32 = () => view.getUint32(need(4, 'an argument'), true);
  const u64 = (what: string) => {
    const v = view.getBigUint64(need(8, 'an argument'), true);
    if (v > BigInt(pkl.length)) fail(`${what} declares ${v} bytes, more than the pickle holds`);
    return Number(v);
  };
  const utf8 = (n: number) => {
    const start = need(n, 'a string');
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(pkl.subarray(start, start + n));
    } catch {
      return fail('a string is not valid UTF-8');
    }
  };
  const line = () => {
    const end = pkl.indexOf(0x0a, at);
    if (end < 0 || end - at > 256) fail('a GLOBAL name is not terminated');
    const s = new TextDecoder('latin1').decode(pkl.subarray(at, end));
    at = end + 1;
    return s;
  };

  const stack: VmValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, VmValue>();
  const pop = (): VmValue => (stack.length > (marks.at(-1) ?? 0) ? stack.pop()! : fail('stack underflow'));
  const top = (): VmValue => (stack.length > (marks.at(-1) ?? 0) ? stack[stack.length - 1]! : fail('stack underflow'));
  const popMark = (): VmValue[] => {
    const m = marks.pop();
    if (m === undefined) return fail('no MARK to pop to');
    return stack.splice(m);
  };
  const global = (module: string, name: string): Global => {
    const full = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(full)) fail(`refuses global ${JSON.stringify(full).slice(0, 120)} (only tensors, numpy arrays and plain containers are read)`);
    return new Global(full);
  };
  const key = (k: VmValue): PtKey => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean') return k;
    return fail('a dict key is not a string, number, bool or None');
  };
  const setItems = (target: VmValue, items: VmValue[]) => {
    if (!(target instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (target as Map<PtKey, PtValue>).set(key(items[i]!), plain(items[i + 1]!));
  };
  const plain = (v: VmValue): PtValue => {
    if (v instanceof Global || v instanceof StorageRef || v instanceof NumpyDtype || v instanceof PendingNdarray || v instanceof Mark) {
      return fail(`a ${v.constructor.name === 'Global' ? `bare global ${(v as Global).name}` : 'half-built object'} is used as a value`);
    }
    return v;
  };
  const int = (v: VmValue, what: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) return fail(`${what} is not an integer`);
    return v;
  };
  const ints = (v: VmValue, what: string): number[] => {
    if (!(v instanceof PtTuple)) return fail(`${what} is not a tuple`);
    return v.items.map((x) => int(x, what));
  };

  const reduce = (fn: VmValue, args: VmValue): VmValue => {
    if (!(fn instanceof Global)) return fail('REDUCE on something that is not an allowed global');
    if (!(args instanceof PtTuple)) return fail(`${fn.name}: arguments are not a tuple`);
    const a = args.items as VmValue[];
    switch (fn.name) {
      case 'torch._utils._rebuild_tensor_v2': {
        if (a.length !== 6 && a.length !== 7) fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${a.length}`);
        const storage = a[0];
        if (!(storage instanceof StorageRef)) return fail('_rebuild_tensor_v2: the storage is not a persistent storage id');
        return tensorOf(storage, int(a[1]!, 'storage offset'), ints(a[2]!, 'tensor size'), ints(a[3]!, 'tensor stride'), fail);
      }
      case 'collections.OrderedDict':
        if (a.length) fail('OrderedDict with arguments is not supported');
        return new Map<PtKey, PtValue>();
      case 'numpy.core.multiarray._reconstruct':
      case 'numpy._core.multiarray._reconstruct':
        if (!(a[0] instanceof Global) || a[0].name !== 'numpy.ndarray') fail('_reconstruct of something other than numpy.ndarray');
        return new PendingNdarray();
      case 'numpy.dtype': {
        const name = a[0];
        const d = typeof name === 'string' ? NUMPY_DTYPES[name] : undefined;
        if (!d) return fail(`numpy dtype ${JSON.stringify(name)?.slice(0, 40)} is not a float type this reader supports (f2, f4, f8)`);
        return new NumpyDtype(d.dtype, d.size);
      }
      case '_codecs.encode': {
        if (typeof a[0] !== 'string' || a[1] !== 'latin1') return fail('_codecs.encode is only read as (str, "latin1")');
        const s = a[0];
        const out = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) {
          const c = s.charCodeAt(i);
          if (c > 0xff) fail('_codecs.encode: a character is not latin-1');
          out[i] = c;
        }
        return out;
      }
      default:
        return fail(`${fn.name} cannot be called`);
    }
  };

  const build = (target: VmValue, state: VmValue): VmValue => {
    if (target instanceof NumpyDtype) {
      if (!(state instanceof PtTuple) || typeof state.items[1] !== 'string') return fail('numpy dtype state is not (version, byteorder, ...)');
      const order = state.items[1];
      if (!['<', '>', '|', '='].includes(order)) fail(`numpy dtype byte order ${JSON.stringify(order)}`);
      target.bigEndian = order === '>';
      return target;
    }
    if (target instanceof PendingNdarray) {
      if (!(state instanceof PtTuple) || state.items.length !== 5) return fail('numpy array state is not (version, shape, dtype, fortran, data)');
      const [, shapeV, dtypeV, fortranV, dataV] = state.items as VmValue[];
      const shape = ints(shapeV!, 'array shape');
      if (!(dtypeV instanceof NumpyDtype)) return fail('numpy array dtype is not a numpy.dtype');
      if (!(dataV instanceof Uint8Array)) return fail('numpy array data is not raw bytes (object arrays are not read)');
      const count = elementCount(shape, fail);
      if (count * dtypeV.size !== dataV.length) fail(`numpy array of shape (${shape.join(', ')}) needs ${count * dtypeV.size} bytes, its data has ${dataV.length}`);
      let data = typed(dtypeV.dtype, dataV, dtypeV.bigEndian);
      if (fortranV === true && shape.length > 1) data = fromFortran(data, shape);
      return { kind: 'array', dtype: dtypeV.dtype, shape, data } satisfies PtArray;
    }
    if (target instanceof Map && state === null) return target;
    return fail('BUILD on an object this reader does not build');
  };

  const persistent = (pid: VmValue): StorageRef => {
    if (!(pid instanceof PtTuple) || pid.items.length < 5 || pid.items[0] !== 'storage') return fail('a persistent id is not a storage');
    const [, typeV, keyV, , numelV] = pid.items as VmValue[];
    if (!(typeV instanceof Global) || !typeV.name.startsWith('torch.')) return fail('a storage type is not a torch storage class');
    const spec = STORAGE_DTYPES[typeV.name.slice('torch.'.length)];
    if (!spec) return fail(`${typeV.name} is not a float storage this reader supports`);
    if (typeof keyV !== 'string' || !/^[0-9A-Za-z_.-]{1,64}$/.test(keyV)) return fail('a storage key is not a plain name');
    const numel = int(numelV!, 'storage size');
    const bytes = archive?.records.get(`data/${keyV}`);
    if (!bytes) return fail(`storage data/${keyV} is missing from the archive`);
    if (numel < 0 || numel * spec.size !== bytes.length) fail(`storage data/${keyV} declares ${numel} elements (${numel * spec.size} bytes), its record holds ${bytes.length}`);
    return new StorageRef(spec.dtype, spec.size, archive!.bigEndian ? swapped(bytes, spec.size) : bytes);
  };

  while (true) {
    if (at >= pkl.length) fail('ends without STOP');
    const op = pkl[at++]!;
    switch (op) {
      case 0x80: { const v = u8(); if (v > 5) fail(`pickle protocol ${v} is not supported`); break; } // PROTO
      case 0x95: u64('FRAME'); break; // FRAME: only a hint
      case 0x2e: { // STOP
        if (marks.length) fail('STOP inside an open MARK');
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`);
        return plain(stack[0]!);
      }
      case 0x28: // MARK
        if (marks.length >= MAX_MARKS) fail(`nesting deeper than ${MAX_MARKS} levels`);
        marks.push(stack.length);
        break;
      case 0x29: stack.push(new PtTuple([])); break;
      case 0x74: stack.push(new PtTuple(popMark().map(plainOrStorage))); break;
      case 0x85: { const a = pop(); stack.push(new PtTuple([a].map(plainOrStorage))); break; }
      case 0x86: { const b = pop(); const a = pop(); stack.push(new PtTuple([a, b].map(plainOrStorage))); break; }
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PtTuple([a, b, c].map(plainOrStorage))); break; }
      case 0x5d: stack.push([]); break;
      case 0x61: { const v = pop(); const list = top(); if (!Array.isArray(list)) fail('APPEND to something that is not a list'); (list as PtValue[]).push(plain(v)); break; }
      case 0x65: { const items = popMark(); const list = top(); if (!Array.isArray(list)) fail('APPENDS to something that is not a list'); for (const v of items) (list as PtValue[]).push(plain(v)); break; }
      case 0x7d: stack.push(new Map<PtKey, PtValue>()); break;
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; }
      case 0x75: { const items = popMark(); setItems(top(), items); break; }
      case 0x4e: stack.push(null); break;
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4a: stack.push(view.getInt32(need(4, 'BININT'), true)); break;
      case 0x4b: stack.push(u8()); break;
      case 0x4d: stack.push(view.getUint16(need(2, 'BININT2'), true)); break;
      case 0x8a: { // LONG1
        const n = u8();
        if (n > 8) fail(`an integer of ${n} bytes is too large`);
        const start = need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(pkl[start + i]!);
        if (n && pkl[start + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: stack.push(view.getFloat64(need(8, 'BINFLOAT'), false)); break;
      case 0x58: stack.push(utf8(u32())); break;
      case 0x8c: stack.push(utf8(u8())); break;
      case 0x8d: stack.push(utf8(u64('BINUNICODE8'))); break;
      case 0x55: case 0x54: { // SHORT_BINSTRING, BINSTRING (Python 2 str): latin-1
        const n = op === 0x55 ? u8() : u32();
        const start = need(n, 'BINSTRING');
        stack.push(new TextDecoder('latin1').decode(pkl.subarray(start, start + n)));
        break;
      }
      case 0x43: case 0x42: case 0x8e: { // SHORT_BINBYTES, BINBYTES, BINBYTES8: a view, no copy
        const n = op === 0x43 ? u8() : op === 0x42 ? u32() : u64('BINBYTES8');
        const start = need(n, 'BINBYTES');
        stack.push(pkl.subarray(start, start + n));
        break;
      }
      case 0x63: { const module = line(); const name = line(); stack.push(global(module, name)); break; }
      case 0x93: { const name = pop(); const module = pop(); if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL of non-strings'); stack.push(global(module as string, name as string)); break; }
      case 0x71: memo.set(u8(), top()); break;
      case 0x72: memo.set(u32(), top()); break;
      case 0x94: memo.set(memo.size, top()); break;
      case 0x68: case 0x6a: {
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`memo ${i} was never stored`);
        stack.push(memo.get(i)!);
        break;
      }
      case 0x52: { const args = pop(); const fn = pop(); stack.push(reduce(fn, args)); break; }
      case 0x62: { const state = pop(); const target = pop(); stack.push(build(target, state)); break; }
      case 0x51: { const pid = pop(); stack.push(persistent(pid)); break; }
      default:
        fail(`opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at - 1} is not one torch.save writes for arrays`);
    }
  }

  function plainOrStorage(v: VmValue): PtValue {
    // tuples carry the VM's own objects (storage classes, storages, dtypes) on their way to a call or BUILD
    if (v instanceof Mark) return fail('a MARK inside a tuple');
    return v as PtValue;
  }
}

function elementCount(shape: readonly number[], fail: (p: string) => never): number {
  let n = 1;
  for (const d of shape) {
    if (!(Number.isSafeInteger(d) && d >= 0)) fail(`dimension ${d} is not a non-negative integer`);
    n *= d;
    if (!Number.isSafeInteger(n)) fail(`shape (${shape.join(', ')}) is impossibly large`);
  }
  return n;
}

function tensorOf(storage: StorageRef, offset: number, shape: number[], stride: number[], fail: (p: string) => never): PtArray {
  if (stride.length !== shape.length) fail(`tensor size (${shape.join(', ')}) and stride (${stride.join(', ')}) differ in length`);
  const count = elementCount(shape, fail);
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i]! > 1 && stride[i] !== expect) fail(`tensor stride (${stride.join(', ')}) is not contiguous for size (${shape.join(', ')}); save tensor.contiguous()`);
    expect *= shape[i]!;
  }
  const elements = storage.bytes.length / storage.size;
  if (!(offset >= 0) || offset + count > elements) fail(`tensor of ${count} elements at offset ${offset} runs past its storage of ${elements}`);
  const bytes = storage.bytes.subarray(offset * storage.size, (offset + count) * storage.size);
  return { kind: 'array', dtype: storage.dtype, shape, data: typed(storage.dtype, bytes, false) };
}

function swapped(bytes: Uint8Array, size: number): Uint8Array {
  const out = bytes.slice();
  for (let i = 0; i + size <= out.length; i += size) out.subarray(i, i + size).reverse();
  return out;
}

function typed(dtype: PtArray['dtype'], bytes: Uint8Array, bigEndian: boolean): PtArray['data'] {
  const size = dtype === '<f4' ? 4 : dtype === '<f8' ? 8 : 2;
  const src = bigEndian ? swapped(bytes, size) : bytes.byteOffset % size ? bytes.slice() : bytes;
  const n = src.length / size;
  if (dtype === '<f4') return new Float32Array(src.buffer, src.byteOffset, n);
  if (dtype === '<f8') return new Float64Array(src.buffer, src.byteOffset, n);
  return new Uint16Array(src.buffer, src.byteOffset, n);
}

function fromFortran(data: PtArray['data'], shape: number[]): PtArray['data'] {
  const out = new (data.constructor as new (n: number) => PtArray['data'])(data.length);
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  for (let c = 0; c < data.length; c++) {
    // c is the C-order index of idx; its Fortran-order position:
    let f = 0;
    let mul = 1;
    for (let k = 0; k < nd; k++) {
      f += idx[k]! * mul;
      mul *= shape[k]!;
    }
    out[c] = data[f]!;
    for (let k = nd - 1; k >= 0; k--) {
      if (++idx[k]! < shape[k]!) break;
      idx[k] = 0;
    }
  }
  return out;
}

/** Float32 values of an array (float16 and bfloat16 widened, float64 rounded). */
export function ptArrayFloat32(a: PtArray): Float32Array {
  if (a.dtype === '<f4') return a.data as Float32Array;
  if (a.dtype === '<f2') return float16ToFloat32(a.data as Uint16Array);
  if (a.dtype === 'bf16') {
    const bits = a.data as Uint16Array;
    const out = new Uint32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
    return new Float32Array(out.buffer);
  }
  return Float32Array.from(a.data as Float64Array);
}
