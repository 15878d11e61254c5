// Hand-made broken and hostile archives: every one must end in a one-line FormatError naming the archive
// (and the member, where there is one) — never a hang, another exception, or a silently short result.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { encodeTarHeader, readTar, writeTar, type TarReadOptions } from '../../src/core/formats/tar.ts';
import { readSamples } from '../../src/core/formats/webdataset.ts';
import { Rng } from '../../src/core/util/random.ts';
import { fuzzReader } from '../helpers/fuzz.ts';
import { concat, fixture, readAll, streamOf } from '../fixtures/tar/helpers.ts';

const enc = new TextEncoder();

interface RawHeader {
  name?: string | Uint8Array;
  size?: number | string | Uint8Array; // number → octal; string/bytes → written as given
  typeflag?: string;
  linkname?: string;
  prefix?: string;
  mode?: string;
  magic?: 'ustar' | 'gnu' | 'none';
  checksum?: 'good' | 'bad';
}

/** One 512-byte header laid out by hand (independently of the writer under test). */
function header(h: RawHeader): Uint8Array {
  const b = new Uint8Array(512);
  const put = (at: number, v: string | Uint8Array) => b.set(typeof v === 'string' ? enc.encode(v) : v, at);
  put(0, h.name ?? 'file.txt');
  put(100, h.mode ?? '0000644\0');
  put(108, '0000000\0');
  put(116, '0000000\0');
  const size = h.size ?? 0;
  put(124, typeof size === 'number' ? size.toString(8).padStart(11, '0') + '\0' : size);
  put(136, '14413060000\0');
  b[156] = (h.typeflag ?? '0').charCodeAt(0);
  put(157, h.linkname ?? '');
  if (h.magic !== 'none') put(257, h.magic === 'gnu' ? 'ustar  \0' : 'ustar\x0000');
  put(345, h.prefix ?? '');
  b.fill(0x20, 148, 156);
  let sum = b.reduce((s, x) => s + x, 0);
  if (h.checksum === 'bad') sum += 1;
  put(148, sum.toString(8).padStart(6, '0') + '\0 ');
  return b;
}

const pad = (n: number) => new Uint8Array((512 - (n % 512)) % 512);
const END = new Uint8Array(1024);

/** A member: header + body + padding. */
function member(h: RawHeader, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(header({ size: body.length, ...h }), body, pad(body.length));
}

/** A pax 'x' (or 'g') header carrying `records` verbatim. */
function paxMember(records: string | Uint8Array, typeflag = 'x'): Uint8Array {
  const body = typeof records === 'string' ? enc.encode(records) : records;
  return member({ name: './PaxHeaders/x', typeflag }, body);
}

function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let n = enc.encode(rest).length;
  while (String(n).length + enc.encode(rest).length !== n) n = String(n).length + enc.encode(rest).length;
  return `${n}${rest}`;
}

async function readEverything(bytes: Uint8Array | ReadableStream<Uint8Array>, options: TarReadOptions = {}) {
  const names = [];
  const stream = bytes instanceof Uint8Array ? streamOf(bytes, 100) : bytes;
  for await (const m of readTar(stream, 'evil.tar', options)) {
    names.push(m.path);
    await m.bytes();
  }
  return names;
}

/** Rejects with a one-line FormatError for evil.tar whose message matches `problem`. */
async function rejects(bytes: Uint8Array | ReadableStream<Uint8Array>, problem: RegExp, options: TarReadOptions = {}) {
  await assert.rejects(readEverything(bytes, options), (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
    assert.equal(err.file, 'evil.tar');
    assert.ok(err.message.startsWith('evil.tar: '));
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    assert.match(err.message, problem);
    return true;
  });
}

test('path traversal, absolute paths and NUL in names are refused, naming the member', async () => {
  await rejects(concat(member({ name: '../../x' }, enc.encode('pwned')), END), /member "\.\.\/\.\.\/x" .*"\.\." component/);
  await rejects(concat(member({ name: 'a/../../x' }), END), /"a\/\.\.\/\.\.\/x".*"\.\." component/);
  await rejects(concat(member({ name: '..\\..\\x' }), END), /"\.\.\\\\\.\.\\\\x".*"\.\." component/);
  await rejects(concat(member({ name: '/etc/passwd' }), END), /member "\/etc\/passwd" .*absolute path/);
  await rejects(concat(member({ name: 'C:\\Windows\\x' }), END), /absolute path/);
  // USTAR prefix that turns a harmless name into an absolute one.
  await rejects(concat(member({ name: 'passwd', prefix: '/etc' }), END), /"\/etc\/passwd".*absolute path/);
  // Names from pax and GNU long-name headers are checked the same way.
  await rejects(concat(paxMember(paxRecord('path', '../escape.txt')), member({}), END), /"\.\.\/escape\.txt".*"\.\." component/);
  await rejects(concat(paxMember(paxRecord('path', 'a\0b.txt')), member({}), END), /"a\\u0000b\.txt".*NUL byte/);
  await rejects(concat(member({ name: '././@LongLink', typeflag: 'L' }, enc.encode('safe.txt\0/etc/passwd\0')), member({}), END), /GNU long name at offset 0 contains a NUL/);
  await rejects(concat(member({ name: '././@LongLink', typeflag: 'L' }, enc.encode('/abs/olute\0')), member({}), END), /"\/abs\/olute".*absolute path/);
  await rejects(concat(member({ name: new Uint8Array([0x66, 0xff, 0xfe]) }), END), /member name at offset 0 is not valid UTF-8/);
});

test('links that point outside the archive are refused', async () => {
  await rejects(concat(member({ name: 'link', typeflag: '2', linkname: '/etc/passwd' }), END), /member "link".*target "\/etc\/passwd" is an absolute path/);
  await rejects(concat(member({ name: 'a/link', typeflag: '2', linkname: '../../x' }), END), /target "\.\.\/\.\.\/x" leaves the archive/);
  await rejects(concat(member({ name: 'hard', typeflag: '1', linkname: '../x' }), END), /leaves the archive/);
  // Inside the archive is fine.
  assert.deepEqual(await readEverything(concat(member({ name: 'a/b/link', typeflag: '2', linkname: '../c' }), END)), ['a/b/link']);
  // A link "with a body" is read differently by GNU tar (skips it) and Python (does not): refused.
  await rejects(concat(member({ name: 'link', typeflag: '2', linkname: 'x', size: 512 }), new Uint8Array(512), END), /symlink with a body of 512 bytes/);
});

test('sizes that lie about the stream end in "truncated"; huge sizes are refused before allocation', async () => {
  await rejects(concat(header({ name: 'short.bin', size: 1_000_000 }), new Uint8Array(10)), /truncated: member "short\.bin" declares 1000000 bytes but the stream ends after 10/);
  // Same when the body is skipped rather than read.
  const skipOnly = async () => {
    for await (const m of readTar(streamOf(concat(header({ name: 'short.bin', size: 1_000_000 }), new Uint8Array(10))), 'evil.tar')) void m;
  };
  await assert.rejects(skipOnly(), /evil\.tar: truncated: member "short\.bin"/);
  // 8 GiB - 1 in octal: more than maxMemberBytes, refused without allocating it.
  await rejects(concat(header({ name: 'huge.bin', size: 8 ** 11 - 1 }), new Uint8Array(512)), /member "huge\.bin" is 8589934591 bytes, over the 1073741824-byte limit/);
  // Padding cut short.
  await rejects(concat(header({ name: 'p.bin', size: 10 }), new Uint8Array(100)), /ends inside the padding after "p\.bin"/);
  // Header cut short.
  await rejects(concat(member({ name: 'ok.txt' }, enc.encode('ok')), header({}).subarray(0, 300)), /truncated: the stream ends inside the header at offset 1024/);
  // An extended header and then nothing.
  await rejects(paxMember(paxRecord('path', 'x.txt')), /truncated: the extended header at offset 0 has no member after it/);
  await rejects(concat(paxMember(paxRecord('path', 'x.txt')), END), /extended header at offset 0 is followed by the end of the archive/);
});

test('base-256 and pax sizes over 8 GiB are read and skipped', async () => {
  const size = 9 * 1024 ** 3 + 3;
  const base256 = new Uint8Array(12);
  base256[0] = 0x80;
  new DataView(base256.buffer).setBigUint64(4, BigInt(size));
  const viaPax = concat(paxMember(paxRecord('size', String(size))), header({ name: 'pax-huge.bin', size: 0 }));
  for (const head of [header({ name: 'gnu-huge.bin', size: base256, magic: 'gnu' }), viaPax]) {
    const zeros = new Uint8Array(8 * 1024 * 1024);
    let sent = 0;
    const parts = [head];
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (parts.length) return c.enqueue(parts.shift()!);
        if (sent < size) {
          const n = Math.min(zeros.length, size - sent);
          sent += n;
          return c.enqueue(zeros.subarray(0, n));
        }
        if (sent === size) {
          sent++;
          return c.enqueue(concat(pad(size), member({ name: 'next.txt' }, enc.encode('next')), END));
        }
        c.close();
      },
    });
    const seen = [];
    for await (const m of readTar(stream, 'big.tar')) seen.push([m.path, m.size]);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]![1], size);
    assert.deepEqual(seen[1], ['next.txt', 4]);
  }
  // A size past 2^53 cannot be represented: refused.
  const tooBig = new Uint8Array(12).fill(0xff);
  tooBig[0] = 0x80;
  await rejects(concat(header({ name: 'x', size: tooBig }), END), /size field is out of range/);
  const negative = new Uint8Array(12).fill(0xff);
  await rejects(concat(header({ name: 'x', size: negative }), END), /negative size/);
});

test('absurd pax and long-name headers are capped and malformed records refused', async () => {
  await rejects(concat(header({ name: './PaxHeaders/x', typeflag: 'x', size: 2 * 1024 * 1024 }), new Uint8Array(1024)), /extended header of 2097152 bytes, over the 1048576-byte limit/);
  await rejects(concat(header({ name: '././@LongLink', typeflag: 'L', size: 5_000_000 })), /over the 1048576-byte limit/);
  await rejects(concat(header({ name: '././@LongLink', typeflag: 'L', size: 4096 }), new Uint8Array(4096), member({}), END), /member with an empty name/, { maxHeaderBytes: 4096 });
  await rejects(concat(paxMember('99999999999999999999 path=x\n'), member({}), END), /record length 99999999999999999999 does not fit/);
  await rejects(concat(paxMember('12 path=x\n'), member({}), END), /record length 12 does not fit/);
  await rejects(concat(paxMember('abc path=x\n'), member({}), END), /malformed record length/);
  await rejects(concat(paxMember('6 =xy\n'), member({}), END), /record without a keyword/);
  await rejects(concat(paxMember(paxRecord('size', '12e3')), member({}), END), /pax size "12e3" is not a size/);
  await rejects(concat(paxMember(paxRecord('size', '99999999999999999')), member({}), END), /is not a size/);
  await rejects(concat(paxMember(concat(enc.encode('11 path='), new Uint8Array([0xc3, 0x28]), enc.encode('\n'))), member({}), END), /value of path is not valid UTF-8/);
  await rejects(concat(paxMember(paxRecord('GNU.sparse.major', '1')), member({}), END), /GNU sparse members are not supported/);
  // Many global headers cannot grow memory without bound.
  const globals = Array.from({ length: 40 }, (_, i) => paxMember(paxRecord(`comment${i}`, 'x'.repeat(100_000)), 'g'));
  await rejects(concat(...globals, member({}), END), /global pax headers exceed 1048576 bytes/);
  // A pax size overrides the header's size field (and an empty value means "none").
  const overridden = concat(paxMember(paxRecord('size', '3') + paxRecord('mtime', '') + paxRecord('path', 'long/' + 'p'.repeat(300))), header({ name: 'short', size: 0 }), enc.encode('abc'), pad(3), END);
  const names = [];
  for await (const m of readTar(streamOf(overridden), 'ok.tar')) names.push([m.path.length, await m.bytes(), m.mtime]);
  assert.deepEqual(names, [[305, enc.encode('abc'), 0o14413060000]]);
});

test('non-octal fields, bad checksums, garbage and unsupported members are FormatErrors', async () => {
  await rejects(concat(header({ name: 'a.txt', size: '00000001a45\0' }), END), /member "a\.txt" \(header at offset 0\): size field is not an octal number/);
  await rejects(concat(header({ name: 'a.txt', mode: '06x4\0\0\0\0' }), END), /member "a\.txt" \(header at offset 0\): mode field is not an octal number/);
  await rejects(concat(member({ name: 'a.txt' }), header({ name: 'b.txt', checksum: 'bad' }), END), /bad header checksum at offset 512/);
  await rejects(concat(header({ name: 'a.txt', checksum: 'bad' }), END), /not a tar archive \(bad header checksum at offset 0\)/);
  await rejects(new Rng(3).bytes(new Uint8Array(4096)), /not a tar archive/);
  await rejects(enc.encode('<!doctype html><html>404 Not Found</html>'), /truncated: the stream ends inside the header at offset 0/);
  await rejects(new Uint8Array(0), /empty stream, not a tar archive/);
  await rejects(concat(header({ name: 'sparse', typeflag: 'S' }), END), /GNU sparse members are not supported/);
});

test('the end of the archive: one zero block or EOF is tolerated like GNU tar, zero block + data is not', async () => {
  const one = member({ name: 'one.txt' }, enc.encode('1'));
  assert.deepEqual(await readEverything(concat(one, END)), ['one.txt']);
  assert.deepEqual(await readEverything(concat(one, END, new Rng(1).bytes(new Uint8Array(700)))), ['one.txt'], 'after the marker nothing is read');
  assert.deepEqual(await readEverything(concat(one, new Uint8Array(512))), ['one.txt']);
  assert.deepEqual(await readEverything(one), ['one.txt']);
  assert.deepEqual(await readEverything(new Uint8Array(10240)), [], 'an empty archive as tar writes it');
  await rejects(concat(one, new Uint8Array(512)), /ends after a single zero block, without the end-of-archive marker/, { requireEndMarker: true });
  await rejects(one, /ends after 1 members, without the end-of-archive marker/, { requireEndMarker: true });
  await rejects(concat(one, new Uint8Array(512), member({ name: 'two.txt' })), /a single zero block at offset 1024 is followed by more data/);
});

test('fuzzing: mutated archives read to the end or fail with a FormatError, never hang', async () => {
  const written = await readAll(
    writeTar([
      { path: 'x/' + 'long'.repeat(40) + '.txt', data: enc.encode('pax path') },
      { path: 'ünï.txt', data: enc.encode('pax utf-8') },
      { path: 'k.jpg', data: new Rng(5).bytes(new Uint8Array(1500)) },
    ]),
  );
  // Trailing record padding only adds zeros to mutate; cut it so mutations land on headers and bodies.
  const trim = (b: Uint8Array) => {
    let end = b.length;
    while (end > 1024 && b[end - 1] === 0) end--;
    return b.slice(0, Math.ceil(end / 512) * 512 + 1024);
  };
  const seeds: Uint8Array[] = ['gnu.tar', 'pax.tar', 'ustar.tar', 'shard.tar'].map((n) => trim(fixture(n)));
  seeds.push(trim(written), concat(header({ name: 'short.bin', size: 700 }), new Uint8Array(1024), END));
  const started = performance.now();
  const report = await fuzzReader(
    seeds,
    async (bytes) => {
      // Both consumers: every body through bytes() (small size cap, to hit that path), then samples.
      for await (const m of readTar(streamOf(bytes, 509), 'fuzz.tar', { maxMemberBytes: 4096 })) await m.bytes();
      for await (const s of readSamples(streamOf(bytes, 4096), 'fuzz.tar')) void s;
    },
    { seed: 20240601, cases: 3000 },
  );
  const took = performance.now() - started;
  assert.equal(report.cases, 3000);
  assert.ok(report.rejected > 300 && report.accepted > 300, JSON.stringify(report));
  assert.ok(took < 15_000, `fuzzing took ${took.toFixed(0)} ms`);
});

test('a header with no magic (old v7 tar) is read; its directories are marked by a trailing slash', async () => {
  const names = [];
  for await (const m of readTar(streamOf(concat(member({ name: 'dir/', typeflag: '\0', magic: 'none' }), member({ name: 'dir/f', typeflag: '\0', magic: 'none' }, enc.encode('v7')), END)), 'v7.tar')) {
    names.push([m.path, m.type, await m.bytes()]);
  }
  assert.deepEqual(names, [['dir/', 'directory', new Uint8Array(0)], ['dir/f', 'file', enc.encode('v7')]]);
  // The writer's own header block passes the same checks (sanity of the helper above).
  assert.equal(encodeTarHeader({ path: 'file.txt', size: 0 }).length, 512);
});
