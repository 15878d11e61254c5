// Node file ⇄ web stream adapters (server/io/streams.ts) used to read and write tar shards on disk.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readTar } from '../../src/core/formats/tar.ts';
import { readSamples, writeSamples } from '../../src/core/formats/webdataset.ts';
import { Rng } from '../../src/core/util/random.ts';
import { fileReadStream, fileWriteStream, writeFileAtomic } from '../../server/io/streams.ts';
import { FIXTURES, manifest, readAll } from '../fixtures/tar/helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'dcw-streams-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('fileReadStream gives the file bytes in chunks of the asked size and feeds the tar reader', async () => {
  const file = join(work, 'random.bin');
  const bytes = new Rng(1).bytes(new Uint8Array(100_003));
  writeFileSync(file, bytes);
  const sizes: number[] = [];
  const reader = fileReadStream(file, { chunkBytes: 4096 }).getReader();
  const parts = [];
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    sizes.push(r.value.length);
    parts.push(r.value);
  }
  assert.deepEqual(new Uint8Array(Buffer.concat(parts)), bytes);
  assert.deepEqual(new Set(sizes.slice(0, -1)), new Set([4096]));
  assert.equal(sizes.at(-1), 100_003 % 4096);

  const paths = [];
  for await (const m of readTar(fileReadStream(join(FIXTURES, 'gnu.tar'), { chunkBytes: 700 }), 'gnu.tar')) paths.push(m.path);
  assert.deepEqual(paths, manifest('gnu').map((m) => m.path));
});

test('fileReadStream reads ahead at most one chunk and reports a missing file', async () => {
  const file = join(work, 'big.bin');
  writeFileSync(file, new Uint8Array(64 * 4096));
  const reader = fileReadStream(file, { chunkBytes: 4096 }).getReader();
  await reader.read();
  await new Promise((r) => setTimeout(r, 50)); // room for any eager read-ahead to happen
  // Cut the file: whatever the stream had not read yet is gone, so what it still delivers is its read-ahead.
  truncateSync(file, 0);
  let later = 0;
  for (let r = await reader.read(); !r.done; r = await reader.read()) later++;
  assert.ok(later <= 1, `${later} chunks were read ahead`);

  await assert.rejects(readAll(fileReadStream(join(work, 'no-such-file.tar'))), /ENOENT/);
});

const partFiles = () => readdirSync(work).filter((n) => n.endsWith('.part'));

test('writeFileAtomic: the destination appears only once complete; a failing source leaves the old file', async () => {
  const dest = join(work, '00000000.tar');
  let sawDuringWrite: boolean | undefined;
  async function* samples() {
    for (let i = 0; i < 20; i++) {
      if (i === 10) sawDuringWrite = existsSync(dest);
      yield { __key__: String(i).padStart(12, '0'), files: { txt: new TextEncoder().encode(`caption ${i}`) } };
    }
  }
  const bytes = await writeFileAtomic(dest, writeSamples(samples()));
  assert.equal(sawDuringWrite, false);
  assert.equal(bytes, readFileSync(dest).length);
  assert.deepEqual(partFiles(), []);
  const tarList = spawnSync('tar', ['-tvf', dest], { encoding: 'utf8' });
  assert.equal(tarList.stderr, '');
  assert.equal(tarList.stdout.trim().split('\n').length, 20);
  let n = 0;
  for await (const s of readSamples(fileReadStream(dest), dest)) assert.equal(s.__key__, String(n++).padStart(12, '0'));
  assert.equal(n, 20);

  const before = readFileSync(dest);
  async function* failing() {
    yield new Uint8Array(1000);
    throw new Error('network dropped');
  }
  await assert.rejects(writeFileAtomic(dest, failing()), /network dropped/);
  const failingStream = new ReadableStream<Uint8Array>({
    pull(c) {
      c.error(new Error('stream broke'));
    },
  });
  await assert.rejects(writeFileAtomic(dest, failingStream), /stream broke/);
  assert.deepEqual(readFileSync(dest), before);
  assert.deepEqual(partFiles(), []);
});

test('fileWriteStream: abort discards the partial file; plain bytes and iterables are accepted', async () => {
  const dest = join(work, 'aborted.bin');
  const writer = fileWriteStream(dest).getWriter();
  await writer.write(new Uint8Array(10));
  assert.equal(partFiles().length, 1);
  await writer.abort(new Error('stop'));
  assert.equal(existsSync(dest), false);
  assert.deepEqual(partFiles(), []);

  assert.equal(await writeFileAtomic(dest, new Uint8Array([1, 2, 3])), 3);
  assert.equal(await writeFileAtomic(dest, [new Uint8Array([4]), new Uint8Array([5, 6])]), 3);
  assert.deepEqual(new Uint8Array(readFileSync(dest)), new Uint8Array([4, 5, 6]));
  await assert.rejects(writeFileAtomic(join(work, 'no-such-dir', 'x.tar'), new Uint8Array(1)), /ENOENT/);
  assert.deepEqual(partFiles(), []);
});
