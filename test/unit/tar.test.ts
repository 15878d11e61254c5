// The tar reader on archives GNU tar wrote, and the tar writer checked by GNU tar and Python's tarfile.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import {
  encodeTarHeader,
  readTar,
  tarEnd,
  tarPadding,
  TarWriter,
  WEBDATASET_TAR_DEFAULTS,
  writeTar,
  type TarEntry,
} from '../../src/core/formats/tar.ts';
import { Rng } from '../../src/core/util/random.ts';
import { concat, fixture, manifest, readAll, sha256, streamOf } from '../fixtures/tar/helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'dcw-tar-'));
after(() => rmSync(work, { recursive: true, force: true }));

async function listMembers(bytes: Uint8Array, chunk?: number) {
  const out = [];
  for await (const m of readTar(streamOf(bytes, chunk), 'x.tar')) {
    const body = await m.bytes();
    out.push({ type: m.type, size: m.size, sha256: m.type === 'file' ? sha256(body) : '-', path: m.path, linkpath: m.linkpath });
    assert.equal(body.length, m.size);
  }
  return out;
}

for (const name of ['gnu', 'pax', 'ustar', 'shard']) {
  test(`reads GNU tar's ${name}.tar member by member with exact bytes`, async () => {
    const expected = manifest(name);
    const bytes = fixture(`${name}.tar`);
    assert.deepEqual(await listMembers(bytes), expected);
    // Odd chunk sizes put every header and body boundary in the middle of a chunk somewhere.
    assert.deepEqual(await listMembers(bytes, 7), expected);
    assert.deepEqual(await listMembers(bytes, 1000), expected);
  });
}

test('reads a stream delivered one byte per chunk', async () => {
  for (const name of ['gnu', 'shard']) assert.deepEqual(await listMembers(fixture(`${name}.tar`), 1), manifest(name));
});

test('reports header fields as GNU tar stored them (base-256 uid, GNU long link target, modes)', async () => {
  const members = [];
  for await (const m of readTar(streamOf(fixture('gnu.tar')), 'gnu.tar')) members.push(m);
  const hello = members.find((m) => m.path === 'gnu/hello.txt')!;
  assert.equal(hello.uid, 3000000); // base-256 in the GNU header
  assert.equal(hello.gid, 1000);
  assert.equal(hello.uname, 'datacomp');
  assert.equal(hello.mtime, Date.UTC(2023, 3, 27) / 1000);
  assert.equal(hello.mode, 0o644);
  assert.equal(hello.typeflag, '0');
  const link = members.find((m) => m.type === 'symlink')!;
  assert.ok(link.linkpath.length > 100, 'the target came from a ././@LongLink K header');
  assert.equal(members[0]!.offset, 0);
  // The long-named file's offset is that of its ././@LongLink header, where the member really starts.
  const long = members.find((m) => m.path.endsWith('.bin') && m.path.length > 100)!;
  const raw = fixture('gnu.tar');
  assert.equal(new TextDecoder().decode(raw.subarray(long.offset, long.offset + 13)), '././@LongLink');
});

test('an unread body is skipped; chunks() streams a body the size limit refuses to buffer', async () => {
  const paths = [];
  for await (const m of readTar(streamOf(fixture('gnu.tar'), 64), 'gnu.tar')) paths.push(m.path);
  assert.deepEqual(paths, manifest('gnu').map((m) => m.path));

  const expected = manifest('gnu').find((m) => m.size === 1000)!;
  for await (const m of readTar(streamOf(fixture('gnu.tar'), 100), 'gnu.tar', { maxMemberBytes: 600 })) {
    if (m.size !== 1000) continue;
    await assert.rejects(m.bytes(), (err: unknown) => err instanceof FormatError && /over the 600-byte limit/.test(err.message));
  }
  for await (const m of readTar(streamOf(fixture('gnu.tar'), 100), 'gnu.tar', { maxMemberBytes: 600 })) {
    if (m.size !== 1000) continue;
    const parts = [];
    for await (const part of m.chunks()) parts.push(part.slice());
    assert.ok(parts.length > 1);
    assert.equal(sha256(concat(...parts)), expected.sha256);
  }
});

test('a body cannot be read after moving to the next member, nor twice', async () => {
  const it = readTar(streamOf(fixture('shard.tar')), 'shard.tar');
  const first = (await it.next()).value!;
  await first.bytes();
  await assert.rejects(first.bytes(), /only once/);
  const second = (await it.next()).value!;
  assert.equal(second.path, '000000000000.json');
  await it.next();
  await assert.rejects(second.bytes(), /after moving past it/);
  await it.return();
});

test('leaving the loop early cancels the stream', async () => {
  let cancelled = false;
  const bytes = fixture('shard.tar');
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, (at += 512)));
    },
    cancel() {
      cancelled = true;
    },
  });
  for await (const m of readTar(stream, 'shard.tar')) if (m.path.endsWith('.json')) break;
  assert.ok(cancelled);
  assert.ok(at < bytes.length);
});

// --- writer ---------------------------------------------------------------------------------------

function sampleEntries(): TarEntry[] {
  const rng = new Rng(7);
  const sizes = [0, 1, 511, 512, 513, 4096, 10_000];
  const entries: TarEntry[] = sizes.map((size, i) => ({ path: `sizes/${i}-${size}.bin`, data: rng.bytes(new Uint8Array(size)) }));
  entries.push(
    // 100 bytes exactly: still fits the name field.
    { path: 'n'.repeat(96) + '.txt', data: new TextEncoder().encode('hundred') },
    // USTAR prefix + name.
    { path: `${'a'.repeat(120)}/${'b'.repeat(90)}.txt`, data: new TextEncoder().encode('prefix split') },
    // Too long for prefix + name, and a basename over 100 bytes: pax path.
    { path: `${'c'.repeat(200)}/${'d'.repeat(120)}.txt`, data: new TextEncoder().encode('pax path') },
    // Not ASCII: pax path.
    { path: 'données/ünïcödé-名前.txt', data: new TextEncoder().encode('utf-8 name'), mtime: 1682553600, mode: 0o640 },
    // Fields that do not fit their octal fields.
    { path: 'big-ids.txt', data: new Uint8Array([1, 2, 3]), uid: 3_000_000, gid: 2_500_000, uname: 'x'.repeat(40), mtime: 1682553600.25 },
  );
  return entries;
}

test('the writer round-trips names of every kind, sizes around block boundaries and pax fields', async () => {
  const entries = sampleEntries();
  const bytes = await readAll(writeTar(entries));
  assert.equal(bytes.length % 10240, 0, 'padded to whole records like Python tarfile');
  const got = [];
  for await (const m of readTar(streamOf(bytes, 333), 'written.tar', { requireEndMarker: true })) {
    got.push({ path: m.path, data: await m.bytes(), mode: m.mode, uid: m.uid, gid: m.gid, uname: m.uname, mtime: m.mtime });
  }
  assert.deepEqual(
    got.map((g) => g.path),
    entries.map((e) => e.path),
  );
  for (const [i, e] of entries.entries()) {
    assert.deepEqual(got[i]!.data, e.data, e.path);
    assert.equal(got[i]!.mode, e.mode ?? 0o444);
    assert.equal(got[i]!.uid, e.uid ?? 0);
    assert.equal(got[i]!.gid, e.gid ?? 0);
    assert.equal(got[i]!.uname, e.uname ?? 'bigdata');
    assert.equal(got[i]!.mtime, e.mtime ?? 0);
  }
  assert.deepEqual(await readAll(writeTar(sampleEntries())), bytes, 'same input, same bytes');
});

function run(cmd: string, args: string[], cwd = work) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8', TZ: 'UTC' } });
  assert.equal(r.error, undefined, `${cmd} could not run: ${r.error}`);
  return r;
}

test('GNU tar lists and extracts a written tar without a warning, to identical files', async () => {
  const entries = sampleEntries();
  const file = join(work, 'written.tar');
  writeFileSync(file, await readAll(writeTar(entries)));

  const list = run('tar', ['--quoting-style=literal', '-tvf', file]);
  assert.equal(list.stderr, '');
  assert.equal(list.status, 0);
  const listed = list.stdout.trimEnd().split('\n');
  assert.equal(listed.length, entries.length);
  assert.match(listed[0]!, /^-r--r--r-- bigdata\/bigdata +0 1970-01-01 00:00 sizes\/0-0\.bin$/);
  for (const [i, e] of entries.entries()) assert.ok(listed[i]!.endsWith(` ${e.path}`), listed[i]);

  const out = join(work, 'extracted');
  run('mkdir', ['-p', out]);
  const extract = run('tar', ['-xf', file, '-C', out]);
  assert.equal(extract.stderr, '');
  assert.equal(extract.status, 0);
  for (const e of entries) assert.deepEqual(new Uint8Array(readFileSync(join(out, e.path))), e.data, e.path);
});

test("Python's tarfile reads a written tar with the same names and bytes", async () => {
  const entries = sampleEntries();
  const file = join(work, 'for-python.tar');
  writeFileSync(file, await readAll(writeTar(entries)));
  const script = `
import hashlib, json, sys, tarfile
with tarfile.open(sys.argv[1], errorlevel=2) as t:
    print(json.dumps([[m.name, m.size, m.uid, hashlib.sha256(t.extractfile(m).read()).hexdigest()] for m in t]))`;
  const r = run('python3', ['-W', 'error', '-c', script, file]);
  assert.equal(r.stderr, '');
  assert.deepEqual(
    JSON.parse(r.stdout),
    entries.map((e) => [e.path, (e.data as Uint8Array).length, e.uid ?? 0, sha256(e.data as Uint8Array)]),
  );
});

test('a member of 9 GiB gets a pax size that GNU tar and Python read; the reader skips it in bounded memory', async () => {
  const size = 9 * 1024 ** 3;
  const header = encodeTarHeader({ path: 'huge.bin', size });
  assert.ok(new TextDecoder().decode(header.subarray(512, 1024)).includes(` size=${size}\n`));
  const tail = concat(tarPadding(size), encodeTarHeader({ path: 'after.txt', size: 2 }), new Uint8Array([104, 105]), tarPadding(2));
  const end = tarEnd(header.length + size + tail.length);

  // A sparse file: the 9 GiB body is a hole, so GNU tar and Python can seek over it.
  const file = join(work, 'huge.tar');
  const fd = openSync(file, 'w');
  writeSync(fd, header, 0, header.length, 0);
  writeSync(fd, concat(tail, end), 0, tail.length + end.length, header.length + size);
  closeSync(fd);
  const list = run('tar', ['-tvf', file]);
  assert.equal(list.stderr, '');
  assert.match(list.stdout, new RegExp(`bigdata/bigdata ${size} .* huge\\.bin\\n.* after\\.txt\\n$`));
  const py = run('python3', ['-W', 'error', '-c', 'import sys, tarfile; print([(m.name, m.size) for m in tarfile.open(sys.argv[1])])', file]);
  assert.equal(py.stdout.trim(), `[('huge.bin', ${size}), ('after.txt', 2)]`);

  // Our reader on a generated stream: the zero body comes as 4 MiB views of one buffer.
  const zeros = new Uint8Array(4 * 1024 * 1024);
  let sent = 0;
  const parts = [header];
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
        return c.enqueue(concat(tail, end));
      }
      c.close();
    },
  });
  const seen = [];
  for await (const m of readTar(stream, 'huge.tar', { requireEndMarker: true })) {
    seen.push([m.path, m.size]);
    if (m.path === 'after.txt') assert.deepEqual(await m.bytes(), new Uint8Array([104, 105]));
  }
  assert.deepEqual(seen, [['huge.bin', size], ['after.txt', 2]]);
});

test('TarWriter (push API) writes the same bytes as writeTar, streaming bodies given as chunks', async () => {
  const entries = sampleEntries();
  const writer = new TarWriter();
  const collected = readAll(writer.readable);
  for (const e of entries.slice(0, -1)) await writer.add(e);
  const last = entries.at(-1)!;
  const data = last.data as Uint8Array;
  await writer.add({ ...last, data: { size: data.length, chunks: [data.subarray(0, 1), data.subarray(1)] } });
  await writer.finish();
  assert.deepEqual(await collected, await readAll(writeTar(entries)));

  const bad = new TarWriter();
  const drained = readAll(bad.readable).catch((err: unknown) => err);
  await assert.rejects(bad.add({ path: 'short.bin', data: { size: 10, chunks: [new Uint8Array(3)] } }), /fewer bytes than its size 10/);
  await bad.abort(new Error('producer failed'));
  assert.match(String(await drained), /producer failed/);
});

test('the writer refuses unsafe paths and uses webdataset TarWriter defaults', () => {
  for (const path of ['', '/etc/passwd', '../x', 'a/../../x', 'a\0b', 'dir/']) {
    assert.throws(() => encodeTarHeader({ path, size: 0 }), TypeError, JSON.stringify(path));
  }
  assert.deepEqual(WEBDATASET_TAR_DEFAULTS, { mode: 0o444, mtime: 0, uid: 0, gid: 0, uname: 'bigdata', gname: 'bigdata' });
});
