// The local pool source (src/core/pool/local-source.ts): which picked folders hold a pool and where, the errors
// for those that do not, and a real small pool read from disk (file-backed Blobs, as a browser's File objects
// are) through the ingest in each accepted layout, resumed from a folder picked again.
import assert from 'node:assert/strict';
import { mkdtempSync, openAsBlob, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { readSamples } from '../../src/core/formats/webdataset.ts';
import { ingestPool } from '../../src/core/pool/ingest.ts';
import { compareListings, detectLocalLayout, listingFingerprint, LocalPoolSource, type LocalFile } from '../../src/core/pool/local-source.ts';
import { MemoryPoolStore } from '../../src/core/pool/store.ts';
import { fileReadStream } from '../../server/io/streams.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-local-pool-'));
let pool: SmallPool;
/** Every file of the pool folder, path relative to it, as a file-backed Blob. */
let onDisk: LocalFile[];

before(async () => {
  pool = await buildSmallPool(tmp, { fraction: '0.004', shardSize: 50 });
  onDisk = [];
  for (const dir of readdirSync(pool.poolDir)) {
    for (const name of readdirSync(join(pool.poolDir, dir))) onDisk.push({ path: `${dir}/${name}`, blob: await openAsBlob(join(pool.poolDir, dir, name)) });
  }
});

after(() => rmSync(tmp, { recursive: true, force: true }));

const sized = (paths: string[]) => paths.map((path, i) => ({ path, size: 100 + i }));
const H = 'c0ffee00c0ffee00c0ffee00c0ffee00';

describe('local pool layouts', () => {
  test('the pool’s own folder: metadata, npz beside it, shards with their stats and status parquet, ground truth; the rest ignored', () => {
    const layout = detectLocalLayout(sized([
      `metadata/${H}.parquet`, `metadata/${H}.npz`, 'metadata/orphan.npz', 'shards/00000001.tar', 'shards/00000000.tar',
      'shards/00000000_stats.json', 'shards/00000000.parquet', 'ground_truth/truth.parquet', 'README.md', '.DS_Store',
      'shards/.00000002.tar', 'metadata/old/x.parquet', 'notes/x.parquet',
    ]), 'pool');
    assert.equal(layout.kind, 'official');
    assert.equal(layout.root, '');
    assert.deepEqual(layout.listing.metadata.map((f) => f.path), [`metadata/${H}.parquet`]);
    assert.deepEqual(layout.listing.shards.map((s) => [s.path, s.shard, s.samples]), [['shards/00000000.tar', 0, null], ['shards/00000001.tar', 1, null]]);
    assert.deepEqual(layout.listing.extras.map((f) => f.path).sort(), ['ground_truth/truth.parquet', `metadata/${H}.npz`, 'shards/00000000.parquet', 'shards/00000000_stats.json']);
    assert.equal(layout.listing.metadata[0]!.bytes, 100, 'sizes are the files’ sizes');
  });

  test('a folder holding one pool folder, and a flat folder of tars and parquet, give the official paths', () => {
    const nested = detectLocalLayout(sized([`small/metadata/${H}.parquet`, 'small/shards/00000000.tar', 'other.txt']), 'datacomp');
    assert.equal(nested.root, 'small/');
    assert.equal(nested.paths.get('shards/00000000.tar'), 'small/shards/00000000.tar');
    const flat = detectLocalLayout(sized([`${H}.parquet`, `${H}.npz`, '00000000.tar', '00000000_stats.json', '00000000.parquet', '00000001.tar', 'sub/y.parquet']), 'dl');
    assert.equal(flat.kind, 'flat');
    assert.deepEqual(flat.listing.metadata.map((f) => f.path), [`metadata/${H}.parquet`]);
    assert.deepEqual(flat.listing.shards.map((s) => s.path), ['shards/00000000.tar', 'shards/00000001.tar']);
    assert.deepEqual(flat.listing.extras.map((f) => f.path).sort(), [`metadata/${H}.npz`, 'shards/00000000.parquet', 'shards/00000000_stats.json']);
    assert.equal(flat.paths.get(`metadata/${H}.npz`), `${H}.npz`);
    // A flat folder inside the pick (a drop of one folder whose name was kept) is looked into.
    assert.equal(detectLocalLayout(sized([`dl/${H}.parquet`, 'dl/00000000.tar']), 'x').root, 'dl/');
    // A metadata-only pool (download_upstream.py --skip_shards) is a pool: it can be inspected and filtered.
    assert.equal(detectLocalLayout(sized([`metadata/${H}.parquet`]), 'm').listing.shards.length, 0);
  });

  test('folders that hold no pool fail with one line naming the pick and what is wrong', () => {
    const fails = (paths: string[], pattern: RegExp) => {
      const err = (() => {
        try {
          detectLocalLayout(sized(paths), 'picked');
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      assert.ok(err instanceof FormatError, `${paths.join(' ')}: ${String(err)}`);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'));
    };
    fails([], /^picked: no files: pick the pool’s folder/);
    fails(['.DS_Store'], /^picked: no files/);
    fails(['shards/00000000.tar', 'shards/00000001.tar'], /^picked: 2 shard tars in shards\/ but no metadata \.parquet — pick the pool’s folder \(holding metadata\/ and shards\/\)/);
    fails(['00000000.tar', '00000001.tar'], /^picked: 2 shard tars but no metadata \.parquet — /);
    fails(['a/metadata/x.parquet', 'b/metadata/y.parquet'], /^picked: holds several pools \(a\/, b\/\): pick one of them$/);
    fails([`metadata/${H}.parquet`, 'shards/shard-1.tar'], /^picked\/shards\/shard-1\.tar: shards are named \{:08d\}\.tar/);
    fails([`${H}.parquet`, 'data.tar'], /^picked\/data\.tar: shards are named \{:08d\}\.tar/);
    fails(['photos/cat.jpg', 'photos/cat.txt'], /^picked: no metadata\/\*\.parquet and no \.parquet or \{:08d\}\.tar files — /);
  });

  test('paths cannot leave the pick, and a folder picked again is compared by names and sizes', () => {
    assert.throws(() => detectLocalLayout(sized(['../metadata/x.parquet']), 'p'), /^FormatError: p: no files/);
    const a = detectLocalLayout(sized([`metadata/${H}.parquet`, 'shards/00000000.tar']), 'p').listing;
    const moved = detectLocalLayout(sized([`${H}.parquet`, '00000000.tar']), 'p').listing;
    assert.equal(compareListings(a, moved), null, 'the same files in another accepted layout are the same pool');
    assert.equal(listingFingerprint(a), listingFingerprint(moved));
    const bigger = detectLocalLayout([{ path: `metadata/${H}.parquet`, size: 100 }, { path: 'shards/00000000.tar', size: 999 }], 'p').listing;
    assert.equal(compareListings(a, bigger), 'shards/00000000.tar is 999 bytes, it was 101');
    assert.notEqual(listingFingerprint(a), listingFingerprint(bigger));
    const fewer = detectLocalLayout(sized([`metadata/${H}.parquet`]), 'p').listing;
    assert.equal(compareListings(a, fewer), 'shards/00000000.tar is missing');
  });
});

describe('local pool ingest (a real pool from disk)', () => {
  async function tarUids(): Promise<string[]> {
    const uids: string[] = [];
    for (let shard = 0; shard < pool.shards; shard++) {
      const path = join(pool.poolDir, 'shards', `${String(shard).padStart(8, '0')}.tar`);
      for await (const s of readSamples(fileReadStream(path), path)) uids.push(JSON.parse(new TextDecoder().decode(s.files.get('json')!)).uid);
    }
    return uids.sort();
  }

  test('each accepted layout ingests the same samples and files, byte for byte, with counts from _stats.json', async () => {
    const uids = await tarUids();
    assert.ok(pool.shards >= 3 && uids.length === pool.samples);
    const flatFiles = onDisk.map((f) => ({ ...f, path: f.path.replace(/^(metadata|shards)\//, '') }));
    const layouts: [string, LocalFile[]][] = [
      ['official', onDisk],
      ['nested', onDisk.map((f) => ({ ...f, path: `pool/${f.path}` }))],
      ['flat', flatFiles],
    ];
    for (const [label, files] of layouts) {
      const source = new LocalPoolSource(files, { id: `local:${label}`, name: label });
      const listing = await source.list();
      assert.deepEqual(listing.shards.map((s) => s.samples), Array.from({ length: pool.shards }, (_, i) => Math.min(50, pool.samples - 50 * i)), label);
      const store = new MemoryPoolStore();
      const result = await ingestPool(source, store);
      assert.equal(result.samples, pool.samples, label);
      assert.equal(result.shards, pool.shards, label);
      assert.equal(store.sampleCount, uids.length, label);
      for (const uid of uids) assert.ok(await store.getSample(uid), `${label}: ${uid} stored`);
      for (const name of pool.metadataFiles) {
        const file = (await store.openFile(`metadata/${name}`))!;
        assert.deepEqual(Buffer.from(await file.slice(0, file.byteLength)), readFileSync(join(pool.poolDir, 'metadata', name)), `${label}: ${name}`);
      }
      if (label !== 'flat') assert.ok(await store.openFile('ground_truth/truth.parquet'), `${label}: the side file is kept`);
      assert.ok(await store.openFile('shards/00000000_stats.json'), label);
    }
  });

  test('an interrupted ingest resumes from the folder picked again and reads nothing twice; a changed file is named', async () => {
    const store = new MemoryPoolStore();
    const controller = new AbortController();
    const first = new LocalPoolSource(onDisk, { id: 'local:pool/x', name: 'pool' });
    await assert.rejects(ingestPool(first, store, {
      signal: controller.signal,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.shardsDone === 2) controller.abort(new Error('reload'));
      },
    }), /reload/);
    const before = store.writes.slice();
    assert.equal((await store.completedShards()).length, 2);
    // The same folder, picked again: new Blobs of the same files.
    const again: LocalFile[] = [];
    for (const f of onDisk) again.push({ path: f.path, blob: await openAsBlob(join(pool.poolDir, f.path)) });
    const second = new LocalPoolSource(again, { id: 'local:pool/x', name: 'pool' });
    const plan = (await store.readPlan<{ listing: Parameters<typeof compareListings>[0] }>())!;
    assert.equal(compareListings(plan.listing, second.layout.listing), null);
    const result = await ingestPool(second, store);
    assert.equal(result.samples, pool.samples);
    for (const path of result.fetched) assert.ok(!before.includes(path), `${path} read twice`);
    assert.equal(result.fetched.filter((p) => p.endsWith('.tar')).length, pool.shards - 2);

    // A file changed after it was picked: the read fails naming it, and nothing of that shard is stored.
    const copy = join(tmp, 'changed.tar');
    writeFileSync(copy, readFileSync(join(pool.poolDir, 'shards', '00000000.tar')));
    const blob = await openAsBlob(copy);
    writeFileSync(copy, Buffer.alloc(blob.size, 1));
    const changed = new LocalPoolSource([...onDisk.filter((f) => f.path !== 'shards/00000000.tar'), { path: 'shards/00000000.tar', blob }], { id: 'local:c', name: 'pool' });
    const fresh = new MemoryPoolStore();
    const err = await ingestPool(changed, fresh).catch((e) => e);
    assert.ok(err instanceof FormatError, String(err));
    assert.match(err.message, /^pool\/shards\/00000000\.tar: cannot be read \(.+\): was it moved, changed or deleted since it was picked\? Pick the folder again$/);
    assert.equal((await fresh.completedShards()).length, 0);
  });
});

