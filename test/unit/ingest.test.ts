// Ingest of a real (small) embedded pool over real HTTP (the app server dcw serve runs) into the memory store:
// listing by JSON and by directory index, byte-exact storage, resume after an abort and after a crash
// mid-write, progress, bad input; then the Inspect table over the stored metadata, checked against Arrow.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { ParquetFile, readCommonPoolMetadata } from '../../src/core/formats/parquet.ts';
import { readSamples, writeSamples } from '../../src/core/formats/webdataset.ts';
import {
  checkListing, HttpPoolSource, ingestPool, parseDirectoryListing, type IngestProgress, type PoolSource,
} from '../../src/core/pool/ingest.ts';
import { MemoryPoolStore } from '../../src/core/pool/store.ts';
import { TRUTH_COLUMNS } from '../../src/core/pool/schema.ts';
import { fileReadStream, writeFileAtomic } from '../../server/io/streams.ts';
import { startAppServer } from '../../server/http/app-server.ts';
import { buildTable, histogram, runQuery, rowViews, wantedColumns, codePointLength } from '../../workers/pool-table.ts';
import { buildSmallPool, type SmallPool } from '../helpers/ingest-fixture.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-ingest-'));
let pool: SmallPool;
let server: Server;
let base: string;

before(async () => {
  pool = await buildSmallPool(tmp, { fraction: '0.004', shardSize: 50 });
  server = await startAppServer({ appDir: tmp, poolDir: pool.poolDir, host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const embedded = () => new HttpPoolSource({ baseUrl: `${base}/pool/`, listingUrl: `${base}/api/pool` });

async function tarSamples(path: string) {
  const out = [];
  for await (const s of readSamples(fileReadStream(path), path)) out.push(s);
  return out;
}

describe('ingest', () => {
  test('the fixture has several shards', () => {
    assert.ok(pool.shards >= 3, `${pool.shards} shards`);
    assert.ok(pool.samples > 100);
  });

  test('stores every file and sample byte for byte, and the ground truth only as a side file', async () => {
    const store = new MemoryPoolStore();
    const result = await ingestPool(embedded(), store);
    assert.equal(result.samples, pool.samples);
    assert.equal(result.shards, pool.shards);
    assert.equal(store.sampleCount, pool.samples);
    for (const name of pool.metadataFiles) {
      const src = (await store.openFile(`metadata/${name}`))!;
      const disk = readFileSync(join(pool.poolDir, 'metadata', name));
      assert.deepEqual(Buffer.from(await src.slice(0, src.byteLength)), disk);
    }
    assert.ok(await store.openFile('ground_truth/truth.parquet'));
    // Every sample of every tar is stored under its json uid with the same member bytes.
    let checked = 0;
    for (let shard = 0; shard < pool.shards; shard++) {
      for (const s of await tarSamples(join(pool.poolDir, 'shards', `${String(shard).padStart(8, '0')}.tar`))) {
        const uid = JSON.parse(new TextDecoder().decode(s.files.get('json')!)).uid as string;
        const stored = (await store.getSample(uid))!;
        assert.equal(stored.shard, shard);
        assert.equal(stored.key, s.__key__);
        assert.deepEqual(Object.keys(stored.files).sort(), [...s.files.keys()].sort());
        for (const [ext, bytes] of s.files) assert.deepEqual(stored.files[ext], bytes);
        checked++;
      }
    }
    assert.equal(checked, pool.samples);
    // The uids of the shards are the uids of the metadata.
    const metadata = await readCommonPoolMetadata(readFileSync(join(pool.poolDir, 'metadata', pool.metadataFiles[0]!)), 'm');
    for (let i = 0; i < metadata.numRows; i += 7) assert.ok(await store.getSample(String(metadata.getChild('uid')!.get(i))));
  });

  test('discovers the same files from directory indexes as from the JSON listing', async () => {
    const viaJson = await embedded().list();
    const viaIndex = await new HttpPoolSource({ baseUrl: `${base}/pool` }).list();
    assert.deepEqual(viaIndex.metadata, viaJson.metadata);
    assert.deepEqual(viaIndex.shards, viaJson.shards);
    assert.equal(viaIndex.shards.length, pool.shards);
    assert.equal(viaIndex.shards.reduce((n, s) => n + s.samples!, 0), pool.samples);
    assert.deepEqual(parseDirectoryListing('<a href="../">..</a><a href="00000001.tar">x</a><a href="./a%20b.parquet">y</a><a href="?C=M">s</a>'), ['00000001.tar', 'a b.parquet']);
  });

  test('an aborted ingest resumes where it stopped and fetches nothing twice', async () => {
    const store = new MemoryPoolStore();
    const controller = new AbortController();
    await assert.rejects(ingestPool(embedded(), store, {
      signal: controller.signal,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.shardsDone === 2) controller.abort(new Error('reload'));
      },
    }), /reload/);
    assert.equal((await store.completedShards()).length, 2);
    const before = store.writes.slice();
    const reports: IngestProgress[] = [];
    const result = await ingestPool(embedded(), store, { progressIntervalMs: 0, onProgress: (p) => reports.push(p) });
    assert.equal(result.samples, pool.samples);
    assert.equal(store.sampleCount, pool.samples);
    // Nothing stored before the abort was fetched again.
    for (const path of result.fetched) assert.ok(!before.includes(path), `${path} fetched twice`);
    assert.equal(result.fetched.filter((p) => p.startsWith('shards/') && p.endsWith('.tar')).length, pool.shards - 2);
    // Progress of the resumed session starts at what was stored, only grows, and ends at the totals.
    const first = reports[0]!;
    const stored = (await store.completedShards()).slice(0, 2).reduce((n, s) => n + s.bytes, 0);
    assert.ok(first.resumedBytes >= stored);
    for (let i = 1; i < reports.length; i++) assert.ok(reports[i]!.bytesDone >= reports[i - 1]!.bytesDone);
    const last = reports.at(-1)!;
    assert.equal(last.phase, 'done');
    assert.equal(last.bytesDone, last.bytesTotal);
    assert.equal(last.samplesDone, pool.samples);
    assert.equal(last.samplesTotal, pool.samples);
    assert.equal(last.etaSeconds, 0);
  });

  test('a crash while a shard is written leaves no part of it, and the next run completes', async () => {
    const store = new MemoryPoolStore();
    store.failAfterSamples = 75; // in the middle of the second shard of 50
    await assert.rejects(ingestPool(embedded(), store), /simulated crash/);
    assert.equal(store.sampleCount, 50);
    assert.deepEqual((await store.completedShards()).map((s) => s.shard), [0]);
    store.failAfterSamples = Infinity;
    const result = await ingestPool(embedded(), store);
    assert.equal(result.samples, pool.samples);
    assert.equal(store.sampleCount, pool.samples);
  });

  test('bad input: a sample without a uid fails naming the shard, and a listing cannot leave the pool', async () => {
    const bad = join(tmp, 'bad');
    const { poolDir } = pool;
    const samples = await tarSamples(join(poolDir, 'shards', '00000001.tar'));
    samples[3]!.files.set('json', new TextEncoder().encode('{"caption": "no uid"}'));
    cpSync(poolDir, bad, { recursive: true });
    await writeFileAtomic(join(bad, 'shards', '00000001.tar'), writeSamples(samples));
    const badServer = await startAppServer({ appDir: tmp, poolDir: bad, host: '127.0.0.1', port: 0 });
    try {
      const url = `http://127.0.0.1:${(badServer.address() as AddressInfo).port}`;
      const store = new MemoryPoolStore();
      const err = await ingestPool(new HttpPoolSource({ baseUrl: `${url}/pool/`, listingUrl: `${url}/api/pool` }), store).catch((e) => e);
      assert.ok(err instanceof FormatError, String(err));
      assert.match(err.message, /^shards\/00000001\.tar: sample \d+: "uid" in \d+\.json is not 32 hex digits$/);
      assert.deepEqual((await store.completedShards()).map((s) => s.shard), [0], 'the bad shard is not stored at all');
      assert.equal(store.sampleCount, 50);
    } finally {
      badServer.close();
    }
    assert.throws(() => checkListing({ metadata: [{ path: '../etc/passwd', bytes: 1 }], shards: [] }, 'listing.json'), /listing\.json: metadata\[0\]: "path" must be a relative path/);
    assert.throws(() => checkListing({ metadata: [{ path: 'metadata/a.parquet', bytes: 1 }], shards: [{ path: 'shards/x.tar', bytes: 1 }] }, 'l'), /shards are named/);
    assert.throws(() => checkListing({ metadata: [], shards: [] }, 'l'), /no metadata parquet files/);
    // A source whose listing says more bytes than arrive is refused before anything of that file is stored.
    const store = new MemoryPoolStore();
    const listing = await embedded().list();
    listing.shards[0]!.bytes! += 512;
    const lying = Object.assign(embedded(), { list: async () => listing });
    await assert.rejects(ingestPool(lying, store), /shards\/00000000\.tar: the listing says \d+ bytes, \d+ arrived/);
    assert.equal(store.sampleCount, 0);
  });

  test('a shard whose end-of-archive padding arrives in a chunk of its own is stored, not called short', async () => {
    // Networks cut responses anywhere: here every shard comes as its bytes up to the last 1 KiB, then that
    // last KiB (zero padding after the end marker, which the tar reader does not need) in a later chunk.
    const http = embedded();
    const split: PoolSource = {
      id: http.id,
      list: (signal) => http.list(signal),
      async open(path, signal) {
        const bytes = new Uint8Array(await new Response(await http.open(path, signal)).arrayBuffer());
        if (!path.endsWith('.tar')) return new Response(bytes).body!;
        const parts = [bytes.subarray(0, bytes.length - 1024), bytes.subarray(bytes.length - 1024)];
        return new ReadableStream<Uint8Array>({
          async pull(c) {
            const part = parts.shift();
            if (!part) return c.close();
            await new Promise((r) => setTimeout(r, 5));
            c.enqueue(part);
          },
        });
      },
    };
    const store = new MemoryPoolStore();
    const result = await ingestPool(split, store);
    assert.equal(result.samples, pool.samples);
    assert.equal(result.shards, pool.shards);
  });

  test('a resumed ingest from another source is refused', async () => {
    const store = new MemoryPoolStore();
    await ingestPool(embedded(), store);
    await assert.rejects(ingestPool(new HttpPoolSource({ baseUrl: `${base}/elsewhere/` }), store), /was ingested from http:\/\/.*\/pool\/; delete it/);
  });
});

describe('app server: what the browser ingest relies on', () => {
  test('single byte ranges (parquet footers and column chunks), and 416 for ranges past the end', async () => {
    const path = `metadata/${pool.metadataFiles[0]}`;
    const disk = readFileSync(join(pool.poolDir, path));
    let res = await fetch(`${base}/pool/${path}`, { headers: { Range: 'bytes=4-11' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes 4-11/${disk.length}`);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), disk.subarray(4, 12));
    res = await fetch(`${base}/pool/${path}`, { headers: { Range: 'bytes=-8' } });
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), disk.subarray(disk.length - 8));
    res = await fetch(`${base}/pool/${path}`, { headers: { Range: `bytes=${disk.length}-` } });
    assert.equal(res.status, 416);
    res = await fetch(`${base}/pool/${path}`);
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.equal(Number(res.headers.get('content-length')), disk.length);
  });

  test('/api/pool lists the official layout with sizes and sample counts; /eval/ only when an eval folder is given', async () => {
    const listing = checkListing(await (await fetch(`${base}/api/pool`)).json(), '/api/pool');
    assert.deepEqual(listing.metadata.map((m) => m.path), pool.metadataFiles.map((m) => `metadata/${m}`));
    assert.equal(listing.shards.length, pool.shards);
    assert.deepEqual(listing.extras.map((e) => e.path).filter((p) => !p.endsWith('_stats.json')), ['ground_truth/truth.parquet']);
    assert.equal((await fetch(`${base}/pool/shards`, { redirect: 'manual' })).status, 301);
    const empty = await startAppServer({ appDir: tmp, poolDir: join(tmp, 'nothing'), evalDir: join(tmp, 'built', 'eval'), host: '127.0.0.1', port: 0 });
    try {
      const url = `http://127.0.0.1:${(empty.address() as AddressInfo).port}`;
      assert.equal((await fetch(`${url}/api/pool`)).status, 404);
      assert.match(await (await fetch(`${url}/eval/`)).text(), /tasklist\.yml/);
    } finally {
      empty.close();
    }
    assert.equal((await fetch(`${base}/eval/tasklist.yml`)).status, 404, 'no eval folder given: nothing under /eval/');
  });
});

describe('inspect table', () => {
  let table: ReturnType<typeof buildTable>;
  let arrow: Awaited<ReturnType<typeof readCommonPoolMetadata>>;

  before(async () => {
    const store = new MemoryPoolStore();
    await ingestPool(embedded(), store);
    const parts = [];
    for (const name of pool.metadataFiles) {
      const path = `metadata/${name}`;
      const file = await ParquetFile.open((await store.openFile(path))!, path);
      parts.push({ file: path, table: await file.read({ columns: wantedColumns(file.schema.fields) }) });
    }
    table = buildTable(parts);
    arrow = await readCommonPoolMetadata(readFileSync(join(pool.poolDir, 'metadata', pool.metadataFiles[0]!)), 'm');
  });

  test('holds the metadata columns and derived ones, never the ground truth', () => {
    assert.equal(table.rows, arrow.numRows);
    const names = table.columns.map((c) => c.name);
    for (const c of ['uid', 'text', 'original_width', 'original_height', 'clip_b32_similarity_score', 'clip_l14_similarity_score', 'caption_length', 'aspect_ratio', 'face_count']) {
      assert.ok(names.includes(c), c);
    }
    for (const t of TRUTH_COLUMNS) if (t !== 'uid') assert.ok(!names.includes(t), `${t} is ground truth`);
    for (let i = 0; i < arrow.numRows; i++) {
      assert.equal(table.uid[i], arrow.getChild('uid')!.get(i));
      assert.equal(table.numbers.get('original_width')![i], Number(arrow.getChild('original_width')!.get(i)));
    }
    const scores = table.columns.find((c) => c.name === 'clip_b32_similarity_score')!;
    assert.equal(scores.nulls, arrow.getChild('clip_b32_similarity_score')!.nullCount);
    assert.equal(codePointLength('a😀b'), 3);
  });

  test('search, ranges and sort agree with a direct scan of the Arrow table', () => {
    const text = (i: number) => String(arrow.getChild('text')!.get(i));
    const width = (i: number) => Number(arrow.getChild('original_width')!.get(i));
    const word = text(0).split(/\s+/)[0]!.toLowerCase();
    const query = { search: word.toUpperCase(), ranges: { original_width: [65, null] as [number, null] }, sort: { column: 'caption_length', descending: true } };
    const order = runQuery(table, query);
    const expected = [...Array(arrow.numRows).keys()].filter((i) => text(i).toLowerCase().includes(word) && width(i) >= 65);
    assert.deepEqual([...order].sort((a, b) => a - b), expected);
    assert.ok(expected.length > 0);
    for (let i = 1; i < order.length; i++) {
      const a = [...text(order[i - 1]!)].length;
      const b = [...text(order[i]!)].length;
      assert.ok(a > b || (a === b && order[i - 1]! < order[i]!), 'descending, ties in pool order');
    }
    const ascUid = runQuery(table, { sort: { column: 'uid', descending: false } });
    const uids = [...ascUid].map((r) => table.uid[r]!);
    assert.deepEqual(uids, [...uids].sort());
    const views = rowViews(table, order, 0, 3);
    assert.equal(views[0]!.uid, table.uid[order[0]!]);
    assert.equal(views.length, Math.min(3, order.length));
  });

  test('the histogram counts every row once and its selection follows the other filters', () => {
    const h = histogram(table, 'original_width', { search: '', ranges: { original_width: [0, 10], caption_length: [0, 20] } });
    assert.equal(h.all.reduce((a, b) => a + b, 0) + h.nulls, table.rows);
    // Its own range is ignored for the selection; the caption_length range is not.
    const short = [...Array(table.rows).keys()].filter((i) => codePointLength(table.text[i]!) <= 20).length;
    assert.equal(h.selected.reduce((a, b) => a + b, 0), short);
    assert.ok(h.all.every((n, i) => h.selected[i]! <= n));
    // Whole-number columns get whole-number bins, so a brushed range is a range of integers.
    assert.ok(h.edges.every(Number.isInteger), `edges ${h.edges.slice(0, 4)}`);
    const w = table.numbers.get('original_width')!;
    h.edges.slice(0, -1).forEach((e, i) => {
      assert.equal(h.all[i], w.filter((v) => v >= e && v < h.edges[i + 1]!).length, `bin ${i}`);
    });
    const ratio = histogram(table, 'aspect_ratio', {});
    assert.ok(!ratio.edges.every(Number.isInteger), 'a fractional column keeps fractional edges');
  });
});
