/**
 * NumPy `.npz` archives: zip files of `.npy` members, as `np.savez` (stored) and `np.savez_compressed`
 * (deflated) write them, including the zip64 records numpy forces on every member. DataComp's embedding
 * files hold `b32_img, b32_txt, l14_img, l14_txt` (float16 or float32), rows aligned with the parquet.
 *
 * The reader trusts nothing: the central directory must agree with itself, with the end records and with
 * each local header; members may not overlap or escape the archive by name; declared sizes are capped
 * (per member and in total) and bounded by what deflate can produce from the compressed bytes before
 * anything is allocated; inflation stops as soon as a member produces more than it declared; the CRC
 * is checked. Inflation uses fflate's streaming inflater so memory stays at the declared size.
 *
 * The writer produces what Python's zipfile writes for numpy (same headers, fixed 1980-01-01 time,
 * zip64 extra on every local header), so a stored archive equals np.savez's bytes exactly; deflated
 * members are fflate's deflate, not zlib's, so those bytes differ while numpy reads them the same.
 */
import { Inflate, deflateSync } from 'fflate';
import { FormatError } from './errors.ts';
import { encodeNpy, formatShape, readNpy, readNpyHeader, type NpyArray, type NpyDtype, type ReadNpyOptions } from './npy.ts';

export type ZipMethod = 'stored' | 'deflated';

export interface NpzEntry {
  /** Member file name in the archive, e.g. `b32_img.npy`. */
  name: string;
  /** The key numpy uses: the name without `.npy`. */
  key: string;
  method: ZipMethod;
  compressedBytes: number;
  /** Uncompressed size, as declared (and checked when read). */
  bytes: number;
  crc32: number;
  /** Offset of the member's (compressed) data in the archive. */
  dataOffset: number;
}

export interface ReadNpzOptions extends ReadNpyOptions {
  /** Keys to load (e.g. `['l14_img']`); the others are never inflated. Default: all. */
  only?: readonly string[];
  /** Largest uncompressed member accepted. Default 4 GiB. */
  maxMemberBytes?: number;
  /** Largest uncompressed total of the members loaded. Default 8 GiB. */
  maxTotalBytes?: number;
}

const DEFAULT_MAX_MEMBER = 2 ** 32;
const DEFAULT_MAX_TOTAL = 2 ** 33;
/** Deflate emits at most 258 bytes per 2 bits (a length-258 match with 1-bit codes): 1032:1. */
const MAX_DEFLATE_RATIO = 1032;
/**
 * Compressed bytes fed to the inflater at a time. One push can yield up to 1032× its size, so this also
 * bounds how far past a lying declared size inflation runs before it is stopped (64 MiB, transient).
 * Smaller pushes cost speed: 16 KiB is 25% slower than one-shot inflateSync, 64 KiB 7%.
 */
const INFLATE_CHUNK = 1 << 16;
/** Smaller pushes when only a member's header is wanted. */
const PREFIX_INFLATE_CHUNK = 1 << 10;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
/** Python's zipfile switches to zip64 fields above this (ZIP64_LIMIT), not at 0xffffffff. */
const PY_ZIP64_LIMIT = 2 ** 31 - 1;
const ZIP64_VERSION = 45;
/** DOS date of 1980-01-01, which Python's ZipFile.open(name, 'w') uses for numpy's members. */
const DOS_DATE_1980 = 0x21;

// ---------------------------------------------------------------- CRC-32 (zip's, slice-by-8)

const CRC_TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n]! >>> 8) ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  }
  return t;
})();

/** zip's CRC-32 of `bytes`, continuing from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const t = CRC_TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n8 = bytes.length - (bytes.length % 8);
  for (; i < n8; i += 8) {
    const a = (c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>> 0;
    c = t[7 * 256 + (a & 0xff)]! ^ t[6 * 256 + ((a >>> 8) & 0xff)]! ^ t[5 * 256 + ((a >>> 16) & 0xff)]! ^ t[4 * 256 + (a >>> 24)]!
      ^ t[3 * 256 + bytes[i + 4]!]! ^ t[2 * 256 + bytes[i + 5]!]! ^ t[256 + bytes[i + 6]!]! ^ t[bytes[i + 7]!]!;
  }
  for (; i < bytes.length; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------- reading the directory

class Reader {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly file: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(problem: string): never {
    throw new FormatError(this.file, problem);
  }
  need(at: number, length: number, what: string): void {
    if (at < 0 || at + length > this.bytes.length) this.fail(`${what} at offset ${at} runs past the end of the archive (${this.bytes.length} bytes)`);
  }
  u16(at: number): number { return this.view.getUint16(at, true); }
  u32(at: number): number { return this.view.getUint32(at, true); }
  u64(at: number, what: string): number {
    const v = this.view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} ${v} is impossibly large`);
    return Number(v);
  }
}

interface DirectoryEntry extends NpzEntry {
  localOffset: number;
  flags: number;
  nameBytes: Uint8Array;
}

function findEndRecord(r: Reader): number {
  const len = r.bytes.length;
  if (len < EOCD_SIZE) r.fail(`not a zip archive (${len} bytes)`);
  const lowest = Math.max(0, len - EOCD_SIZE - MAX_COMMENT);
  for (let at = len - EOCD_SIZE; at >= lowest; at--) {
    if (r.bytes[at] === 0x50 && r.u32(at) === SIG_EOCD && at + EOCD_SIZE + r.u16(at + 20) === len) return at;
  }
  return r.fail(`not a zip archive: no end-of-central-directory record${len > EOCD_SIZE + MAX_COMMENT ? ` in the last ${EOCD_SIZE + MAX_COMMENT} bytes (the longest a zip comment allows)` : ''}`);
}

function decodeName(r: Reader, raw: Uint8Array, utf8: boolean): string {
  if (utf8 || raw.every((b) => b < 0x80)) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      r.fail('a member name is not valid UTF-8');
    }
  }
  return Array.from(raw, (b) => String.fromCharCode(b)).join(''); // legacy code page: only used to name and compare members
}

function checkMemberName(r: Reader, name: string): void {
  const shown = JSON.stringify(name.slice(0, 80));
  if (name.length === 0) r.fail('a member has an empty name');
  if (name.includes('\0')) r.fail(`member name ${shown} contains a NUL byte`);
  if (name.includes('\\') || name.startsWith('/') || /^[A-Za-z]:/.test(name) || name.split('/').some((s) => s === '..')) {
    r.fail(`member name ${shown} points outside the archive`);
  }
}

/** Reads and checks the zip's directory. */
function readDirectory(r: Reader): DirectoryEntry[] {
  const eocd = findEndRecord(r);
  if (r.u16(eocd + 4) !== 0 || r.u16(eocd + 6) !== 0) r.fail('multi-disk zip archives are not supported');
  let count = r.u16(eocd + 10);
  let cdSize = r.u32(eocd + 12);
  let cdOffset = r.u32(eocd + 16);
  if (r.u16(eocd + 8) !== count) r.fail('end record: entry counts disagree');
  let cdEnd = eocd;
  if (eocd >= 20 && r.u32(eocd - 20) === SIG_ZIP64_LOCATOR) {
    const locator = eocd - 20;
    if (r.u32(locator + 4) !== 0 || r.u32(locator + 16) > 1) r.fail('multi-disk zip64 archives are not supported');
    const at = r.u64(locator + 8, 'zip64 end record offset');
    if (at + 56 > locator) r.fail(`zip64 end record offset ${at} is not before its locator`);
    if (r.u32(at) !== SIG_ZIP64_EOCD) r.fail(`no zip64 end record at offset ${at}`);
    const recordSize = r.u64(at + 4, 'zip64 end record size');
    if (recordSize < 44 || at + 12 + recordSize !== locator) r.fail('zip64 end record size does not match its position');
    if (r.u32(at + 16) !== 0 || r.u32(at + 20) !== 0) r.fail('multi-disk zip64 archives are not supported');
    const count64 = r.u64(at + 24, 'zip64 entry count');
    if (r.u64(at + 32, 'zip64 entry count') !== count64) r.fail('zip64 end record: entry counts disagree');
    const size64 = r.u64(at + 40, 'zip64 central directory size');
    const offset64 = r.u64(at + 48, 'zip64 central directory offset');
    if ((count !== U16_MAX && count !== count64) || (cdSize !== U32_MAX && cdSize !== size64) || (cdOffset !== U32_MAX && cdOffset !== offset64)) {
      r.fail('end record and zip64 end record disagree');
    }
    count = count64;
    cdSize = size64;
    cdOffset = offset64;
    cdEnd = at;
  } else if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
    r.fail('end record points to zip64 records that are missing');
  }
  if (cdOffset + cdSize !== cdEnd) {
    r.fail(`central directory (offset ${cdOffset}, ${cdSize} bytes) does not end where the end record begins (${cdEnd})`);
  }
  if (count * 46 > cdSize) r.fail(`central directory of ${cdSize} bytes cannot hold ${count} entries`);

  const entries: DirectoryEntry[] = [];
  const names = new Set<string>();
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    r.need(at, 46, 'central directory entry');
    if (at + 46 > cdEnd || r.u32(at) !== SIG_CENTRAL) r.fail(`central directory entry ${i + 1} of ${count} is missing or damaged`);
    const flags = r.u16(at + 8);
    const methodCode = r.u16(at + 10);
    const crc = r.u32(at + 16);
    let compressed = r.u32(at + 20);
    let size = r.u32(at + 24);
    const nameLen = r.u16(at + 28);
    const extraLen = r.u16(at + 30);
    const commentLen = r.u16(at + 32);
    const disk = r.u16(at + 34);
    let localOffset = r.u32(at + 42);
    const end = at + 46 + nameLen + extraLen + commentLen;
    if (end > cdEnd) r.fail(`central directory entry ${i + 1} runs past the directory`);
    const nameBytes = r.bytes.subarray(at + 46, at + 46 + nameLen);
    const name = decodeName(r, nameBytes, (flags & 0x800) !== 0);
    checkMemberName(r, name);
    if (names.has(name)) r.fail(`member ${name} appears twice`);
    names.add(name);
    if (flags & 0x1) r.fail(`member ${name} is encrypted`);
    if (methodCode !== 0 && methodCode !== 8) r.fail(`member ${name} uses compression method ${methodCode} (only stored and deflate are supported)`);
    // zip64 extra: 64-bit values for exactly the fields that hold their maximum, in this order
    const zip64 = findExtra(r, at + 46 + nameLen, extraLen, 0x0001);
    const wanted: string[] = [];
    if (size === U32_MAX) wanted.push('size');
    if (compressed === U32_MAX) wanted.push('compressed');
    if (localOffset === U32_MAX) wanted.push('offset');
    if (wanted.length) {
      if (!zip64 || zip64.length < wanted.length * 8) r.fail(`member ${name}: zip64 sizes are missing`);
      wanted.forEach((field, k) => {
        const v = r.u64(zip64.start + 8 * k, `member ${name} zip64 ${field}`);
        if (field === 'size') size = v;
        else if (field === 'compressed') compressed = v;
        else localOffset = v;
      });
    }
    if (disk !== 0 && disk !== U16_MAX) r.fail('multi-disk zip archives are not supported');
    const method: ZipMethod = methodCode === 0 ? 'stored' : 'deflated';
    if (method === 'stored' && compressed !== size) r.fail(`stored member ${name} declares ${size} bytes but holds ${compressed}`);
    if (method === 'deflated' && size > compressed * MAX_DEFLATE_RATIO + 1024) {
      r.fail(`member ${name} declares ${size} bytes, more than deflate can make of ${compressed} bytes`);
    }
    entries.push({
      name, key: name.endsWith('.npy') ? name.slice(0, -4) : name, method, compressedBytes: compressed, bytes: size,
      crc32: crc, dataOffset: -1, localOffset, flags, nameBytes,
    });
    at = end;
  }
  if (at !== cdEnd) r.fail(`central directory has ${cdEnd - at} bytes after its ${count} entries`);
  for (const e of entries) e.dataOffset = readLocalHeader(r, e, cdOffset);
  // members may not share bytes (overlapping members are a classic zip bomb)
  const byOffset = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  for (let k = 1; k < byOffset.length; k++) {
    const prev = byOffset[k - 1]!;
    if (prev.dataOffset + prev.compressedBytes > byOffset[k]!.localOffset) r.fail(`members ${prev.name} and ${byOffset[k]!.name} overlap`);
  }
  return entries;
}

function findExtra(r: Reader, start: number, length: number, id: number): { start: number; length: number } | undefined {
  let at = start;
  const end = start + length;
  while (at + 4 <= end) {
    const tag = r.u16(at);
    const size = r.u16(at + 2);
    if (at + 4 + size > end) r.fail('a zip extra field runs past its header');
    if (tag === id) return { start: at + 4, length: size };
    at += 4 + size;
  }
  return undefined;
}

/** Checks a member's local header against its directory entry; returns where its data starts. */
function readLocalHeader(r: Reader, e: DirectoryEntry, cdOffset: number): number {
  const at = e.localOffset;
  if (at + 30 > cdOffset) r.fail(`member ${e.name}: local header offset ${at} is not before the central directory`);
  if (r.u32(at) !== SIG_LOCAL) r.fail(`member ${e.name}: no local header at offset ${at}`);
  const flags = r.u16(at + 6);
  const method = r.u16(at + 8);
  const nameLen = r.u16(at + 26);
  const extraLen = r.u16(at + 28);
  const dataStart = at + 30 + nameLen + extraLen;
  if (dataStart > cdOffset) r.fail(`member ${e.name}: local header runs into the central directory`);
  const localName = r.bytes.subarray(at + 30, at + 30 + nameLen);
  if (nameLen !== e.nameBytes.length || localName.some((b, i) => b !== e.nameBytes[i])) {
    r.fail(`member ${e.name}: local header names another file`);
  }
  if (method !== (e.method === 'stored' ? 0 : 8) || (flags & 0x1) !== (e.flags & 0x1)) {
    r.fail(`member ${e.name}: local header disagrees with the central directory`);
  }
  if (!(flags & 0x8)) {
    // no data descriptor: the local header carries the real CRC and sizes
    let compressed = r.u32(at + 18);
    let size = r.u32(at + 22);
    if (compressed === U32_MAX || size === U32_MAX) {
      const zip64 = findExtra(r, at + 30 + nameLen, extraLen, 0x0001);
      if (!zip64 || zip64.length < 16) r.fail(`member ${e.name}: local zip64 sizes are missing`);
      size = r.u64(zip64.start, `member ${e.name} local zip64 size`);
      compressed = r.u64(zip64.start + 8, `member ${e.name} local zip64 compressed size`);
    }
    if (r.u32(at + 14) !== e.crc32 || compressed !== e.compressedBytes || size !== e.bytes) {
      r.fail(`member ${e.name}: local header sizes or CRC disagree with the central directory`);
    }
  }
  if (dataStart + e.compressedBytes > cdOffset) {
    r.fail(`member ${e.name}: ${e.compressedBytes} bytes of data at offset ${dataStart} run into the central directory`);
  }
  return dataStart;
}

function strip(e: DirectoryEntry): NpzEntry {
  return { name: e.name, key: e.key, method: e.method, compressedBytes: e.compressedBytes, bytes: e.bytes, crc32: e.crc32, dataOffset: e.dataOffset };
}

/** The members of an `.npz` (or any zip), after checking the archive's structure. */
export function listNpz(bytes: Uint8Array, file: string): NpzEntry[] {
  return readDirectory(new Reader(bytes, file)).map(strip);
}

// ---------------------------------------------------------------- member data

/**
 * Inflates `data`, which must produce exactly `size` bytes; stops as soon as it produces more, or
 * once `limit` bytes are out when only a prefix is wanted.
 */
function inflateExactly(r: Reader, member: string, data: Uint8Array, size: number, limit = size): Uint8Array {
  const out = new Uint8Array(Math.min(size, limit));
  let written = 0;
  let done = false;
  const inflater = new Inflate((chunk) => {
    if (written + chunk.length > size) r.fail(`member ${member} inflates to more than the ${size} bytes it declares`);
    const room = out.length - written;
    out.set(room < chunk.length ? chunk.subarray(0, room) : chunk, written);
    written += chunk.length;
    if (limit < size && written >= limit) done = true; // only a prefix was asked for
  });
  const step = limit < size ? PREFIX_INFLATE_CHUNK : INFLATE_CHUNK;
  try {
    for (let at = 0; !done; at += step) {
      const last = at + step >= data.length;
      inflater.push(data.subarray(at, at + step), last);
      if (last) break;
    }
  } catch (err) {
    if (err instanceof FormatError) throw err;
    r.fail(`member ${member}: deflate data is corrupt (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!done && written !== size) r.fail(`member ${member} inflates to ${written} bytes, not the ${size} it declares`);
  return written >= out.length ? out : out.subarray(0, written);
}

function memberBytes(r: Reader, e: NpzEntry): Uint8Array {
  const data = r.bytes.subarray(e.dataOffset, e.dataOffset + e.compressedBytes);
  const out = e.method === 'stored' ? data : inflateExactly(r, e.name, data, e.bytes);
  if (crc32(out) !== e.crc32) r.fail(`member ${e.name} fails its CRC check`);
  return out;
}

/** The uncompressed bytes of one member (checked against its size and CRC). */
export function readNpzMember(bytes: Uint8Array, file: string, name: string): Uint8Array {
  const r = new Reader(bytes, file);
  const entries = readDirectory(r);
  const e = entries.find((x) => x.name === name || x.key === name);
  if (!e) return r.fail(`has no member ${name}`);
  return memberBytes(r, e);
}

/**
 * Reads the arrays of an `.npz`, keyed as numpy keys them (member name without `.npy`).
 * `only` picks the keys to load; asking for a key the archive lacks is a FormatError.
 */
export function readNpz(bytes: Uint8Array, file: string, options: ReadNpzOptions = {}): Record<string, NpyArray> {
  const r = new Reader(bytes, file);
  const entries = readDirectory(r);
  let chosen = entries;
  if (options.only) {
    chosen = options.only.map((key) => entries.find((e) => e.key === key)
      ?? r.fail(`has no array '${key}' (it has: ${entries.map((e) => e.key).join(', ') || 'nothing'})`));
  }
  const maxMember = options.maxMemberBytes ?? DEFAULT_MAX_MEMBER;
  const maxTotal = options.maxTotalBytes ?? DEFAULT_MAX_TOTAL;
  let total = 0;
  for (const e of chosen) {
    if (e.bytes > maxMember) r.fail(`member ${e.name} declares ${e.bytes} bytes, over the ${maxMember}-byte limit per member`);
    total += e.bytes;
  }
  if (total > maxTotal) r.fail(`the arrays declare ${total} bytes in all, over the ${maxTotal}-byte limit`);
  const out: Record<string, NpyArray> = Object.create(null) as Record<string, NpyArray>;
  for (const e of chosen) {
    const npy = memberBytes(r, e);
    try {
      out[e.key] = readNpy(npy, e.name, options);
    } catch (err) {
      if (err instanceof FormatError) r.fail(`member ${e.name}: ${err.problem}`);
      throw err;
    }
  }
  return out;
}

// ---------------------------------------------------------------- writing

export interface EncodeNpzOptions {
  /** Deflate the members, as np.savez_compressed does. Default false (np.savez). */
  compress?: boolean;
  /** Deflate level (0–9); zlib's default 6 unless given. */
  level?: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;
  /**
   * Also write zip64 central-directory fields and end records for small archives (numpy writes them only
   * past 2 GiB). For testing readers on zip64 records without writing gigabytes.
   */
  zip64Everywhere?: boolean;
}

interface Member { nameBytes: Uint8Array; utf8: boolean; data: Uint8Array; size: number; crc: number; offset: number }

/**
 * Writes arrays as an `.npz` that np.load reads back; keys become `KEY.npy` members in the given order.
 * Stored archives are byte-identical to np.savez of the same arrays.
 */
export function encodeNpz(arrays: Record<string, NpyArray> | ReadonlyArray<readonly [string, NpyArray]>, options: EncodeNpzOptions = {}): Uint8Array {
  const list = Array.isArray(arrays) ? arrays : Object.entries(arrays);
  const members: Member[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const [key, array] of list as ReadonlyArray<readonly [string, NpyArray]>) {
    const name = `${key}.npy`;
    if (!key || key.includes('/') || key.includes('\\') || key.includes('\0') || seen.has(key)) {
      throw new RangeError(`npz key ${JSON.stringify(key)} is empty, repeated or contains a path separator`);
    }
    seen.add(key);
    const npy = encodeNpy(array);
    const data = options.compress ? deflateSync(npy, { level: options.level ?? 6 }) : npy;
    const nameBytes = new TextEncoder().encode(name);
    const member = { nameBytes, utf8: nameBytes.length !== name.length, data, size: npy.length, crc: crc32(npy), offset };
    members.push(member);
    offset += 30 + nameBytes.length + 20 + data.length;
  }
  const method = options.compress ? 8 : 0;
  const everywhere = options.zip64Everywhere ?? false;

  const central: Uint8Array[] = [];
  for (const m of members) {
    const bigSizes = everywhere || m.size > PY_ZIP64_LIMIT || m.data.length > PY_ZIP64_LIMIT;
    const bigOffset = everywhere || m.offset > PY_ZIP64_LIMIT;
    const extra: number[] = [];
    if (bigSizes) extra.push(m.size, m.data.length);
    if (bigOffset) extra.push(m.offset);
    const entry = new Uint8Array(46 + m.nameBytes.length + (extra.length ? 4 + 8 * extra.length : 0));
    const v = new DataView(entry.buffer);
    v.setUint32(0, SIG_CENTRAL, true);
    v.setUint16(4, (3 << 8) | ZIP64_VERSION, true); // made by: Unix, zip 4.5
    v.setUint16(6, ZIP64_VERSION, true);
    v.setUint16(8, m.utf8 ? 0x800 : 0, true);
    v.setUint16(10, method, true);
    v.setUint16(12, 0, true);
    v.setUint16(14, DOS_DATE_1980, true);
    v.setUint32(16, m.crc, true);
    v.setUint32(20, bigSizes ? U32_MAX : m.data.length, true);
    v.setUint32(24, bigSizes ? U32_MAX : m.size, true);
    v.setUint16(28, m.nameBytes.length, true);
    v.setUint16(30, extra.length ? 4 + 8 * extra.length : 0, true);
    v.setUint32(38, (0o600 << 16) >>> 0, true); // -rw-------, as ZipFile.open(name, 'w') sets
    v.setUint32(42, bigOffset ? U32_MAX : m.offset, true);
    entry.set(m.nameBytes, 46);
    if (extra.length) {
      const x = 46 + m.nameBytes.length;
      v.setUint16(x, 1, true);
      v.setUint16(x + 2, 8 * extra.length, true);
      extra.forEach((value, k) => v.setBigUint64(x + 4 + 8 * k, BigInt(value), true));
    }
    central.push(entry);
  }
  const cdOffset = offset;
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const zip64End = everywhere || members.length > U16_MAX || cdOffset > PY_ZIP64_LIMIT || cdSize > PY_ZIP64_LIMIT;
  const total = cdOffset + cdSize + (zip64End ? 56 + 20 : 0) + EOCD_SIZE;

  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  for (const m of members) {
    const at = m.offset;
    v.setUint32(at, SIG_LOCAL, true);
    v.setUint16(at + 4, ZIP64_VERSION, true);
    v.setUint16(at + 6, m.utf8 ? 0x800 : 0, true);
    v.setUint16(at + 8, method, true);
    v.setUint16(at + 10, 0, true);
    v.setUint16(at + 12, DOS_DATE_1980, true);
    v.setUint32(at + 14, m.crc, true);
    v.setUint32(at + 18, U32_MAX, true); // numpy forces zip64: sizes live in the extra field
    v.setUint32(at + 22, U32_MAX, true);
    v.setUint16(at + 26, m.nameBytes.length, true);
    v.setUint16(at + 28, 20, true);
    out.set(m.nameBytes, at + 30);
    const x = at + 30 + m.nameBytes.length;
    v.setUint16(x, 1, true);
    v.setUint16(x + 2, 16, true);
    v.setBigUint64(x + 4, BigInt(m.size), true);
    v.setBigUint64(x + 12, BigInt(m.data.length), true);
    out.set(m.data, x + 20);
  }
  let at = cdOffset;
  for (const c of central) { out.set(c, at); at += c.length; }
  if (zip64End) {
    const z = at;
    v.setUint32(z, SIG_ZIP64_EOCD, true);
    v.setBigUint64(z + 4, 44n, true);
    v.setUint16(z + 12, ZIP64_VERSION, true);
    v.setUint16(z + 14, ZIP64_VERSION, true);
    v.setBigUint64(z + 24, BigInt(members.length), true);
    v.setBigUint64(z + 32, BigInt(members.length), true);
    v.setBigUint64(z + 40, BigInt(cdSize), true);
    v.setBigUint64(z + 48, BigInt(cdOffset), true);
    v.setUint32(z + 56, SIG_ZIP64_LOCATOR, true);
    v.setBigUint64(z + 64, BigInt(z), true);
    v.setUint32(z + 72, 1, true);
    at = z + 76;
  }
  v.setUint32(at, SIG_EOCD, true);
  v.setUint16(at + 8, Math.min(members.length, U16_MAX), true);
  v.setUint16(at + 10, Math.min(members.length, U16_MAX), true);
  v.setUint32(at + 12, Math.min(cdSize, U32_MAX), true);
  v.setUint32(at + 16, Math.min(cdOffset, U32_MAX), true);
  return out;
}

// ---------------------------------------------------------------- summary for `dcw inspect`

export interface NpzMemberSummary {
  key: string;
  name: string;
  method: ZipMethod;
  compressedBytes: number;
  bytes: number;
  /** As the member's header wrote it. */
  descr: string;
  dtype: NpyDtype;
  shape: number[];
}

/** Each array's name, dtype, shape and storage, reading only the members' headers (never whole arrays). */
export function summarizeNpz(bytes: Uint8Array, file: string): NpzMemberSummary[] {
  const r = new Reader(bytes, file);
  return readDirectory(r).map((e) => {
    const data = r.bytes.subarray(e.dataOffset, e.dataOffset + e.compressedBytes);
    // npy headers are at most ~40 KB (10000 characters, up to 4 bytes each in utf-8)
    const prefixLength = Math.min(e.bytes, 48 * 1024);
    const prefix = e.method === 'stored' ? data.subarray(0, prefixLength) : inflateExactly(r, e.name, data, e.bytes, prefixLength);
    try {
      const h = readNpyHeader(prefix, e.name, { fileSize: e.bytes });
      return { key: e.key, name: e.name, method: e.method, compressedBytes: e.compressedBytes, bytes: e.bytes, descr: h.descr, dtype: h.dtype, shape: h.shape };
    } catch (err) {
      if (err instanceof FormatError) r.fail(`member ${e.name}: ${err.problem}`);
      throw err;
    }
  });
}

/** One line per array, e.g. `b32_img  <f2  (10000, 512)  deflated  10240128 → 9531023 bytes`. */
export function formatNpzSummary(members: readonly NpzMemberSummary[]): string {
  return members.map((m) => `${m.key}  ${m.dtype}  ${formatShape(m.shape)}  ${m.method}  ${m.bytes} → ${m.compressedBytes} bytes`).join('\n');
}
