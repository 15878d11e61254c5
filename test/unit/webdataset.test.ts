// Webdataset sample grouping and writing, checked against webdataset's own rules (its regex run by
// Python) and against a shard written the way wds.TarWriter writes it (Python's tarfile).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { writeTar } from '../../src/core/formats/tar.ts';
import {
  basePlusExt,
  describeTar,
  isSampleMember,
  readSamples,
  sampleEntries,
  writeSamples,
  type ReadSamplesOptions,
  type WdsSample,
} from '../../src/core/formats/webdataset.ts';
import { fixture, manifest, readAll, sha256, streamOf } from '../fixtures/tar/helpers.ts';

async function samples(bytes: Uint8Array, options: ReadSamplesOptions = {}, chunk?: number): Promise<WdsSample[]> {
  const out = [];
  for await (const s of readSamples(streamOf(bytes, chunk), 'shard.tar', options)) out.push(s);
  return out;
}

const digest = (s: WdsSample) => [s.__key__, [...s.files].map(([ext, data]) => [ext, sha256(data)])];

test('basePlusExt splits names exactly as webdataset\'s regex does in Python', () => {
  const names = [
    '000000000042.jpg', '000000000042.seg.png', 'a/b.c/d.e.f', 'dir.x/file', 'dir.x/file.txt', 'noext', '.hidden',
    'a/.hidden', 'a/b/', 'x.', 'trailing.dot.', 'a/b.JPG', 'spaces in name.txt', 'ünï.cödé', 'a\nb.txt', 'a.b\n',
    '__key__.txt', '', '.', 'a..b', 'a/..b', './000.jpg',
  ];
  const py = spawnSync('python3', ['-c', `
import json, re, sys
out = []
for p in json.load(sys.stdin):
    m = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", p)
    out.append([m.group(1), m.group(2)] if m else None)
print(json.dumps(out))`], { input: JSON.stringify(names), encoding: 'utf8' });
  assert.equal(py.stderr, '');
  assert.deepEqual(names.map((n) => basePlusExt(n) ?? null), JSON.parse(py.stdout));
});

test('which members webdataset reads at all: regular files, not "__…__" metadata', () => {
  const file = (path: string) => isSampleMember({ path, type: 'file' });
  assert.equal(file('000.jpg'), true);
  assert.equal(file('__meta__'), false);
  assert.equal(file('___'), false);
  assert.equal(file('__index__/000.jpg'), false);
  assert.equal(file('__meta__.json'), true); // webdataset's regex needs "__" then end or "/"
  assert.equal(file('a/__meta__'), true);
  assert.equal(isSampleMember({ path: '000.jpg', type: 'symlink' }), false);
  assert.equal(isSampleMember({ path: 'dir/', type: 'directory' }), false);
});

test('reads the GNU tar shard sample by sample: keys, lowercased and multi-dot extensions, exact bytes', async () => {
  const bytes = fixture('shard.tar');
  const sha = new Map(manifest('shard').map((m) => [m.path, m.sha256]));
  const expected = [
    ['000000000000', [['jpg', sha.get('000000000000.jpg')], ['json', sha.get('000000000000.json')], ['txt', sha.get('000000000000.txt')]]],
    ['000000000001', [['jpg', sha.get('000000000001.jpg')], ['json', sha.get('000000000001.json')], ['txt', sha.get('000000000001.txt')]]],
    ['000000000002', [['jpg', sha.get('000000000002.JPG')], ['json', sha.get('000000000002.json')], ['txt', sha.get('000000000002.txt')]]],
    ['part/000000000003', [['seg.png', sha.get('part/000000000003.seg.png')], ['txt', sha.get('part/000000000003.txt')]]],
  ];
  assert.deepEqual((await samples(bytes)).map(digest), expected);
  assert.deepEqual((await samples(bytes, {}, 1)).map(digest), expected, 'one byte per chunk');
  const json = JSON.parse(new TextDecoder().decode((await samples(bytes))[1]!.files.get('json')));
  assert.equal(json.key, '000000000001');

  const upper = await samples(bytes, { lowercase: false });
  assert.deepEqual([...upper[2]!.files.keys()], ['JPG', 'json', 'txt']);
  const textOnly = await samples(bytes, { extensions: new Set(['txt']) });
  assert.deepEqual(textOnly.map((s) => [s.__key__, [...s.files.keys()]]), [
    ['000000000000', ['txt']], ['000000000001', ['txt']], ['000000000002', ['txt']], ['part/000000000003', ['txt']],
  ]);
});

test('a new sample starts whenever the key changes; a repeated extension is an error or, like open_clip, a new sample', async () => {
  const data = (s: string) => new TextEncoder().encode(s);
  const tar = await readAll(writeTar([
    { path: 'a.jpg', data: data('1') }, { path: 'a.txt', data: data('2') },
    { path: 'b.txt', data: data('3') },
    { path: 'a.txt', data: data('4') }, // same key again, not adjacent: a separate sample
    { path: 'a.TXT', data: data('5') }, // lowercased: a duplicate of the previous
  ]));
  await assert.rejects(samples(tar), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.equal(err.message, 'shard.tar: member "a.TXT": sample "a" already has a "txt" file');
    return true;
  });
  const split = await samples(tar, { duplicates: 'new-sample' });
  assert.deepEqual(split.map((s) => [s.__key__, [...s.files].map(([k, v]) => `${k}=${new TextDecoder().decode(v)}`)]), [
    ['a', ['jpg=1', 'txt=2']], ['b', ['txt=3']], ['a', ['txt=4']], ['a', ['txt=5']],
  ]);
});

test('writeSamples writes the bytes wds.TarWriter (Python tarfile) wrote for the same samples', async () => {
  const shard = (await samples(fixture('shard.tar'))).filter((s) => !s.__key__.includes('/'));
  // Extensions in a different order and a "_meta" key: the writer sorts and drops them like TarWriter.
  const shuffled = shard.map((s) => ({ __key__: s.__key__, files: Object.fromEntries([...s.files].reverse().concat([['_meta', new Uint8Array(1)]])) }));
  const written = await readAll(writeSamples(shuffled));
  assert.deepEqual(written, fixture('wds-python.tar'));
  assert.deepEqual((await samples(written)).map(digest), shard.map(digest));
});

test('writeSamples streams from an async source and refuses keys that would not read back', async () => {
  async function* source() {
    for (let i = 0; i < 50; i++) {
      yield { __key__: `${i}`.padStart(12, '0'), files: new Map([['txt', new TextEncoder().encode(`caption ${i}`)], ['cls', new TextEncoder().encode(String(i % 3))]]) };
    }
  }
  const back = await samples(await readAll(writeSamples(source())));
  assert.equal(back.length, 50);
  assert.deepEqual([...back[49]!.files.keys()], ['cls', 'txt']);
  assert.equal(new TextDecoder().decode(back[49]!.files.get('txt')), 'caption 49');

  assert.throws(() => sampleEntries({ __key__: 'a.b', files: { jpg: new Uint8Array(1) } }), /"a\.b\.jpg" would not read back/);
  assert.throws(() => sampleEntries({ __key__: 'a', files: { 'x/y': new Uint8Array(1) } }), /would not read back/);
  assert.deepEqual(sampleEntries({ __key__: 'dir.v2/k', files: { 'seg.png': new Uint8Array(1) } }).map((e) => e.path), ['dir.v2/k.seg.png']);
});

test('describeTar summarises a shard from headers alone', async () => {
  let read = 0;
  const bytes = fixture('shard.tar');
  const counting = streamOf(bytes, 512).pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ transform(c, ctl) { read += c.length; ctl.enqueue(c); } }));
  const summary = await describeTar(counting, 'shard.tar');
  const files = manifest('shard').filter((m) => m.type === 'file');
  assert.deepEqual(summary, {
    archive: 'shard.tar',
    members: 14,
    kinds: { file: 13, directory: 1, symlink: 0, hardlink: 0, other: 0 },
    fileBytes: files.reduce((n, m) => n + m.size, 0),
    samples: 4,
    extensions: [
      { ext: 'jpg', members: 3, bytes: 600 + 900 + 1200 },
      { ext: 'json', members: 3, bytes: 303 },
      { ext: 'seg.png', members: 1, bytes: 300 },
      { ext: 'txt', members: 4, bytes: 31 + 18 + 15 + 11 },
    ],
    filesOutsideSamples: 2, // README (no extension) and __meta__
  });
  assert.ok(read < bytes.length, 'stops at the end marker');
});
