// .npz reader and writer against archives numpy 2.4.6 wrote, numpy reading ours, and hostile zips made by hand.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { deflateSync } from 'fflate';
import { FormatError } from '../../src/core/formats/errors.ts';
import { encodeNpy, float16ToFloat32, type NpyArray, type NpyData } from '../../src/core/formats/npy.ts';
import { crc32, encodeNpz, formatNpzSummary, listNpz, readNpz, readNpzMember, summarizeNpz } from '../../src/core/formats/npz.ts';
import { Rng } from '../../src/core/util/random.ts';
import { fuzzReader } from '../helpers/fuzz.ts';

const DIR = join(import.meta.dirname, '../fixtures/numpy/npz');
type Meta = Record<string, Record<string, { descr: string; shape: number[]; sha256: string }>>;
const META: Meta = JSON.parse(readFileSync(join(DIR, 'npz.json'), 'utf8'));
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(join(DIR, name)));
const sha256 = (data: NpyData): string =>
  createHash('sha256').update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).digest('hex');
const DATACOMP_KEYS = ['b32_img', 'b32_txt', 'l14_img', 'l14_txt'];

test('numpy\'s npz files (stored and deflated, float16 and float32) read to numpy\'s arrays', () => {
  for (const [file, arrays] of Object.entries(META)) {
    const npz = readNpz(fixture(file), file);
    assert.deepEqual(Object.keys(npz).sort(), Object.keys(arrays).sort(), file);
    for (const [key, e] of Object.entries(arrays)) {
      assert.equal(npz[key]!.dtype, e.descr.replace('<b1', '|b1'), `${file} ${key}`);
      assert.deepEqual(npz[key]!.shape, e.shape, `${file} ${key}`);
      assert.equal(sha256(npz[key]!.data), e.sha256, `${file} ${key}`);
    }
  }
});

test('DataComp-named embeddings: rows are unit vectors in float16 and float32', () => {
  for (const file of ['embeddings_f2_compressed.npz', 'embeddings_f4_stored.npz']) {
    const npz = readNpz(fixture(file), file, { float16: 'float32' });
    assert.deepEqual(Object.keys(npz), DATACOMP_KEYS);
    for (const key of DATACOMP_KEYS) {
      const { shape, data } = npz[key]!;
      assert.ok(data instanceof Float32Array);
      const d = shape[1]!;
      assert.equal(d, key.startsWith('b32') ? 512 : 768);
      for (let row = 0; row < shape[0]!; row++) {
        let norm = 0;
        for (let j = 0; j < d; j++) norm += data[row * d + j]! ** 2;
        assert.ok(Math.abs(Math.sqrt(norm) - 1) < 2e-3, `${file} ${key} row ${row}: |x| = ${Math.sqrt(norm)}`);
      }
    }
  }
});

test('only: loads some keys without inflating the others', () => {
  const bytes = fixture('embeddings_f2_compressed.npz');
  const npz = readNpz(bytes, 'e.npz', { only: ['l14_img'] });
  assert.deepEqual(Object.keys(npz), ['l14_img']);
  // break another member's deflate data: reading everything fails, reading only l14_img does not
  const b32 = listNpz(bytes, 'e.npz').find((e) => e.key === 'b32_img')!;
  const broken = bytes.slice();
  broken.fill(0xff, b32.dataOffset, b32.dataOffset + 64);
  assert.throws(() => readNpz(broken, 'e.npz'), /member b32_img\.npy: deflate data is corrupt|CRC/);
  assert.equal(sha256(readNpz(broken, 'e.npz', { only: ['l14_img'] }).l14_img!.data), META['embeddings_f2_compressed.npz']!.l14_img!.sha256);
  assert.throws(() => readNpz(bytes, 'e.npz', { only: ['dedup'] }),
    /^FormatError: e\.npz: has no array 'dedup' \(it has: b32_img, b32_txt, l14_img, l14_txt\)$/m);
});

test('listNpz reads numpy\'s forced zip64 local headers', () => {
  const entries = listNpz(fixture('embeddings_f4_stored.npz'), 'e');
  assert.deepEqual(entries.map((e) => [e.key, e.method, e.bytes]), DATACOMP_KEYS.map((k) => [k, 'stored', 128 + 2 * 4 * (k.startsWith('b32') ? 512 : 768)]));
  assert.ok(listNpz(fixture('zeros_compressed.npz'), 'z')[0]!.compressedBytes < 2000);
  assert.equal(readNpzMember(fixture('zeros_compressed.npz'), 'z', 'zeros').length, 128 + 1_200_000);
});

test('encodeNpz (stored) writes exactly np.savez\'s bytes', () => {
  for (const file of ['embeddings_f2_stored.npz', 'embeddings_f4_stored.npz', 'positional_stored.npz']) {
    const arrays = readNpz(fixture(file), file);
    assert.deepEqual(encodeNpz(arrays), fixture(file), file);
  }
});

function randomArrays(seed: number, rows: number): Record<string, NpyArray> {
  const rng = new Rng(seed);
  const f16 = (n: number) => new Uint16Array(n).map(() => rng.nextU32() & 0x7bff);
  return {
    b32_img: { dtype: '<f2', shape: [rows, 512], data: f16(rows * 512) },
    b32_txt: { dtype: '<f2', shape: [rows, 512], data: f16(rows * 512) },
    l14_img: { dtype: '<f4', shape: [rows, 768], data: new Float32Array(rows * 768).map(() => rng.normal()) },
    l14_txt: { dtype: '<f4', shape: [rows, 768], data: new Float32Array(rows * 768).fill(0.5) },
    uids: { dtype: 'u8,u8', shape: [rows], data: new BigUint64Array(rows * 2).map(() => BigInt(rng.nextU32())) },
    scalar: { dtype: '<i8', shape: [], data: BigInt64Array.of(-5n) },
  };
}

test('encodeNpz (deflated, zip64 everywhere) round-trips through our reader, across many inflate chunks', () => {
  const arrays = randomArrays(5, 300); // ~3 MB: many 64 KiB input chunks
  for (const options of [{ compress: true }, { compress: true, zip64Everywhere: true }, { zip64Everywhere: true }, { compress: true, level: 1 as const }]) {
    const back = readNpz(encodeNpz(arrays, options), 'ours.npz');
    for (const [key, a] of Object.entries(arrays)) {
      assert.deepEqual(back[key]!.shape, a.shape, key);
      assert.equal(sha256(back[key]!.data), sha256(a.data), `${key} ${JSON.stringify(options)}`);
    }
  }
  assert.throws(() => encodeNpz({ '../x': arrays.scalar! }), RangeError);
});

function numpyAvailable(): boolean {
  return spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
}

test('numpy loads the npz files we write (stored, deflated, zip64 everywhere)', { skip: numpyAvailable() ? false : 'python3 with numpy is not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcw-npz-'));
  try {
    const arrays = randomArrays(9, 40);
    const files = { 'stored.npz': {}, 'deflated.npz': { compress: true }, 'zip64.npz': { compress: true, zip64Everywhere: true } };
    for (const [name, options] of Object.entries(files)) writeFileSync(join(dir, name), encodeNpz(arrays, options));
    const script = `
import hashlib, json, sys, numpy as np
out = {}
for path in sys.argv[1:]:
    with np.load(path) as z:
        out[path.split('/')[-1]] = {k: [z[k].dtype.str if z[k].dtype.names is None else str(z[k].dtype.descr), list(z[k].shape),
                                        hashlib.sha256(z[k].tobytes()).hexdigest()] for k in z.files}
print(json.dumps(out))`;
    const run = spawnSync('python3', ['-c', script, ...Object.keys(files).map((f) => join(dir, f))], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const loaded = JSON.parse(run.stdout) as Record<string, Record<string, [string, number[], string]>>;
    for (const name of Object.keys(files)) {
      assert.deepEqual(Object.keys(loaded[name]!), Object.keys(arrays), name);
      for (const [key, a] of Object.entries(arrays)) {
        const dtype = a.dtype === 'u8,u8' ? "[('f0', '<u8'), ('f1', '<u8')]" : a.dtype;
        assert.deepEqual(loaded[name]![key], [dtype, a.shape, sha256(a.data)], `${name} ${key}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('summary for dcw inspect names each array\'s dtype, shape and storage without inflating it all', () => {
  const s = summarizeNpz(fixture('embeddings_f2_compressed.npz'), 'e.npz');
  assert.deepEqual(s.map((m) => [m.key, m.dtype, m.shape, m.method]), DATACOMP_KEYS.map((k) => [k, '<f2', [2, k.startsWith('b32') ? 512 : 768], 'deflated']));
  assert.match(formatNpzSummary(s).split('\n')[0]!, /^b32_img  <f2  \(2, 512\)  deflated  2176 → \d+ bytes$/);
  assert.equal(summarizeNpz(fixture('positional_stored.npz'), 'p')[1]!.dtype, '|b1');
  // a member of 80 MB declared: only its header is inflated
  const big = encodeNpz({ zeros: { dtype: '<f4', shape: [20_000_000], data: new Float32Array(20_000_000) } }, { compress: true, level: 1 });
  const started = performance.now();
  assert.deepEqual(summarizeNpz(big, 'big.npz')[0]!.shape, [20_000_000]);
  const took = performance.now() - started;
  assert.ok(took < 200, `took ${took} ms`);
});

// ---------------------------------------------------------------- hostile archives

interface RawMember {
  name: string;
  /** Bytes as they sit in the archive (already deflated when method is 8). */
  stored: Uint8Array;
  method?: number;
  size?: number;
  crc?: number;
  flags?: number;
  localName?: string;
  /** Compressed size written in the central directory, if it should lie. */
  compressedSize?: number;
}

/** A plain (non-zip64) zip, written field by field so each field can lie. */
function buildZip(members: RawMember[], options: { comment?: Uint8Array; count?: number; cdOffsetDelta?: number; commentLength?: number } = {}): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const m of members) {
    const name = enc.encode(m.name);
    const localName = enc.encode(m.localName ?? m.name);
    const size = m.size ?? m.stored.length;
    const crc = m.crc ?? 0;
    const local = new Uint8Array(30 + localName.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(6, m.flags ?? 0, true);
    lv.setUint16(8, m.method ?? 0, true);
    lv.setUint32(14, m.flags && m.flags & 8 ? 0 : crc, true);
    lv.setUint32(18, m.flags && m.flags & 8 ? 0 : m.compressedSize ?? m.stored.length, true);
    lv.setUint32(22, m.flags && m.flags & 8 ? 0 : size, true);
    lv.setUint16(26, localName.length, true);
    local.set(localName, 30);
    const c = new Uint8Array(46 + name.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(8, m.flags ?? 0, true);
    cv.setUint16(10, m.method ?? 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, m.compressedSize ?? m.stored.length, true);
    cv.setUint32(24, size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    c.set(name, 46);
    parts.push(local, m.stored);
    central.push(c);
    offset += local.length + m.stored.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const comment = options.comment ?? new Uint8Array(0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, options.count ?? members.length, true);
  ev.setUint16(10, options.count ?? members.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset + (options.cdOffsetDelta ?? 0), true);
  ev.setUint16(20, options.commentLength ?? comment.length, true);
  const all = [...parts, ...central, end, comment];
  const out = new Uint8Array(all.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of all) { out.set(p, at); at += p.length; }
  return out;
}

const NPY = encodeNpy({ dtype: '<f4', shape: [4], data: Float32Array.of(1, 2, 3, 4) });
const good = (name = 'a.npy'): RawMember => ({ name, stored: NPY, crc: crc32(NPY) });
const deflated = (data: Uint8Array, extra: Partial<RawMember> = {}): RawMember =>
  ({ name: 'a.npy', stored: deflateSync(data), method: 8, size: data.length, crc: crc32(data), ...extra });

function refuses(bytes: Uint8Array, pattern: RegExp, options = {}): void {
  const started = performance.now();
  assert.throws(() => readNpz(bytes, 'bad.npz', options), (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
    assert.match(err.message, /^bad\.npz: /);
    assert.ok(!err.message.includes('\n'));
    assert.match(err.problem, pattern);
    return true;
  });
  const took = performance.now() - started;
  assert.ok(took < 1000, `took ${took} ms`);
}

test('the hand-made zip builder makes archives the reader accepts', () => {
  assert.deepEqual(readNpz(buildZip([good(), good('b.npy')]), 'ok.npz').b!.data, Float32Array.of(1, 2, 3, 4));
  assert.deepEqual(readNpz(buildZip([deflated(NPY)]), 'ok.npz').a!.shape, [4]);
  assert.ok(readNpz(buildZip([good()], { comment: new Uint8Array(100).fill(0x50) }), 'comment.npz').a);
  assert.ok(readNpz(buildZip([good()], { comment: new Uint8Array(65535) }), 'comment.npz').a);
});

test('names that escape the archive, duplicates, encryption and unknown methods are refused', () => {
  for (const name of ['../evil.npy', 'a/../../evil.npy', '/etc/passwd.npy', 'C:/x.npy', 'a\\..\\b.npy', 'nul\0.npy']) {
    refuses(buildZip([good(name)]), /points outside the archive|NUL/);
  }
  refuses(buildZip([good(), good()]), /appears twice/);
  refuses(buildZip([{ ...good(), flags: 1 }]), /encrypted/);
  refuses(buildZip([{ ...good(), method: 12 }]), /compression method 12/);
  refuses(buildZip([{ name: 'readme.txt', stored: new TextEncoder().encode('hello'), crc: crc32(new TextEncoder().encode('hello')) }]), /readme\.txt: not an npy file/);
});

test('zip bombs: declared sizes are capped and checked, inflation stops early', () => {
  const zeros = new Uint8Array(20_000_000);
  const bomb = deflateSync(zeros); // ~20 KB that inflate to 20 MB
  // lies about its size: stops as soon as more than the declared 1000 bytes come out
  refuses(buildZip([deflated(zeros, { size: 1000 })]), /inflates to more than the 1000 bytes it declares/);
  // honest, but over the caller's limits
  refuses(buildZip([deflated(zeros)]), /declares 20000000 bytes, over the 1048576-byte limit per member/, { maxMemberBytes: 1 << 20 });
  refuses(buildZip([deflated(zeros), deflated(zeros, { name: 'b.npy' })]), /declare 40000000 bytes in all, over the 30000000-byte limit/, { maxTotalBytes: 30_000_000 });
  // declares more than deflate can produce from its bytes: refused before anything is allocated
  refuses(buildZip([{ name: 'a.npy', stored: bomb, method: 8, size: 0xfffffff0 }]), /more than deflate can make of \d+ bytes/);
  // declares more than it inflates to
  refuses(buildZip([deflated(NPY, { size: NPY.length + 10 })]), /inflates to 144 bytes, not the 154 it declares/);
});

test('lying sizes, offsets, CRCs and inconsistent directories are refused', () => {
  refuses(buildZip([{ ...good(), size: 10 }]), /stored member a\.npy declares 10 bytes but holds 144/);
  refuses(buildZip([{ ...good(), crc: 1234 }]), /fails its CRC check/);
  refuses(buildZip([deflated(NPY, { crc: 99 })]), /fails its CRC check/);
  const corrupt = deflated(NPY);
  corrupt.stored = corrupt.stored.slice();
  corrupt.stored.fill(0xff, 2, 12);
  refuses(buildZip([corrupt]), /deflate data is corrupt|inflates to|CRC/);
  refuses(buildZip([deflated(NPY, { stored: deflateSync(NPY).slice(0, 20) })]), /deflate data is corrupt|inflates to/);
  refuses(buildZip([{ ...good(), localName: 'b.npy' }]), /local header names another file/);
  refuses(buildZip([{ ...good(), compressedSize: 10_000, size: 10_000 }]), /run into the central directory|local header sizes/);
  refuses(buildZip([good()], { cdOffsetDelta: 7 }), /central directory .* does not end where the end record begins/);
  refuses(buildZip([good()], { cdOffsetDelta: -7 }), /does not end where/);
  refuses(buildZip([good()], { count: 3 }), /cannot hold 3 entries/);
  refuses(buildZip([good(), good('b.npy')], { count: 1 }), /bytes after its 1 entries/);
  // a data-descriptor member whose data runs over the next member: overlapping members
  const first = { ...good(), flags: 8, compressedSize: NPY.length + 40, size: NPY.length + 40 };
  refuses(buildZip([first, good('b.npy')]), /overlap/);
  refuses(buildZip([good()], { count: 0xffff }), /zip64 records that are missing/);
});

test('truncated archives, junk after the end and lying comments are refused', () => {
  const ok = buildZip([good()]);
  for (const cut of [0, 10, 21, 100, ok.length - 1]) refuses(ok.slice(0, cut), /not a zip archive|runs past|central directory/);
  const junk = new Uint8Array(ok.length + 70_000);
  junk.set(ok);
  refuses(junk, /no end-of-central-directory record in the last 65557 bytes/);
  refuses(buildZip([good()], { commentLength: 65535 }), /no end-of-central-directory record/);
  refuses(buildZip([good()], { comment: new Uint8Array(10), commentLength: 3 }), /no end-of-central-directory record/);
});

test('zip64 end records must agree with the end record and lie where they say', () => {
  const z = encodeNpz({ a: { dtype: '<f4', shape: [4], data: Float32Array.of(1, 2, 3, 4) } }, { zip64Everywhere: true });
  assert.deepEqual(readNpz(z, 'z64.npz').a!.shape, [4]);
  const eocd = z.length - 22;
  const locator = eocd - 20;
  const at = (bytes: Uint8Array) => new DataView(bytes.buffer);
  const moved = z.slice();
  at(moved).setBigUint64(locator + 8, 3n, true);
  refuses(moved, /no zip64 end record at offset 3/);
  const far = z.slice();
  at(far).setBigUint64(locator + 8, 1n << 60n, true);
  refuses(far, /impossibly large|not before its locator/);
  const count = z.slice();
  at(count).setBigUint64(locator - 56 + 24, 2n, true);
  refuses(count, /entry counts disagree/);
  const size = z.slice();
  at(size).setBigUint64(locator - 56 + 40, 5n, true);
  refuses(size, /does not end where|disagree/);
  const sizes = z.slice();
  const central = locator - 56 - (46 + 5 + 4 + 24);
  at(sizes).setBigUint64(central + 46 + 5 + 4, 1n << 40n, true); // zip64 uncompressed size in the central directory
  refuses(sizes, /declares \d+ bytes but holds|local header sizes/);
});

test('fuzzing the .npz reader: only FormatErrors, never a hang', async () => {
  const seeds = [
    fixture('embeddings_f2_compressed.npz'), fixture('positional_stored.npz'), fixture('zeros_compressed.npz'),
    encodeNpz({ a: { dtype: '<i2', shape: [3], data: Int16Array.of(1, 2, 3) }, b: { dtype: '|b1', shape: [], data: Uint8Array.of(1) } }, { compress: true, zip64Everywhere: true }),
  ];
  const read = (bytes: Uint8Array) => {
    readNpz(bytes, 'fuzz.npz', { float16: 'float32', maxTotalBytes: 1 << 26 });
    summarizeNpz(bytes, 'fuzz.npz');
  };
  const report = await fuzzReader(seeds, read, { seed: 2, cases: 3000 });
  // most mutations land in deflate data or hit the CRC; what matters is that nothing else escapes
  assert.ok(report.rejected > 1000 && report.accepted > 0, JSON.stringify(report));
});

test('float16 members decode like numpy (spot check against the float32 archive)', () => {
  const f16 = readNpz(fixture('embeddings_f2_stored.npz'), 'a').b32_img!.data as Uint16Array;
  const f32 = readNpz(fixture('embeddings_f4_stored.npz'), 'b').b32_img!.data as Float32Array;
  const decoded = float16ToFloat32(f16);
  for (let i = 0; i < f32.length; i++) assert.ok(Math.abs(decoded[i]! - f32[i]!) <= 2 ** -11 * Math.abs(f32[i]!) + 2 ** -25);
});
