// The in-memory pieces of the browser's `dcw run` (src/core/pipeline/run-in-memory.ts, http-pool.ts,
// src/core/eval/http-store.ts) against the real ones on a small embedded pool: the in-memory reshard gives the
// very shard bytes `dcw reshard` writes (duplicates repeated, shards split at --shard-size), and the HTTP stores
// read what `dcw serve --pool --eval` serves.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startAppServer } from '../../server/http/app-server.ts';
import { FileShardStore } from '../../server/train/shard-store.ts';
import { HttpEvalStore } from '../../src/core/eval/http-store.ts';
import { runBaseline } from '../../src/core/filters/baselines.ts';
import { decodeSubsetWords, encodeSubset, wordsToUids } from '../../src/core/formats/uid.ts';
import { openHttpPool } from '../../src/core/pipeline/http-pool.ts';
import { reshardInMemory } from '../../src/core/pipeline/run-in-memory.ts';
import { SubsetIndex } from '../../src/core/reshard/plan.ts';

const ROOT = join(import.meta.dirname, '../..');
let dir: string;

const bytesOf = async (stream: ReadableStream<Uint8Array>) => new Uint8Array(await new Response(stream).arrayBuffer());

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dcw-run-memory-'));
  const pool = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.equal(pool.status, 0, pool.stderr);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function metadataFiles() {
  const names = readdirSync(join(dir, 'pool/metadata')).filter((n) => n.endsWith('.parquet'));
  return names.map((n) => ({ name: n, source: new Uint8Array(readFileSync(join(dir, 'pool/metadata', n))) }));
}

test('reshardInMemory writes the shards dcw reshard writes: every 3rd uid, every 6th twice, 40 per shard', async () => {
  const all = wordsToUids((await runBaseline(metadataFiles(), { name: 'no_filter' })).words);
  const picked = all.flatMap((uid, i) => (i % 6 === 0 ? [uid, uid] : i % 3 === 0 ? [uid] : []));
  const subsetBytes = encodeSubset(picked);
  writeFileSync(join(dir, 'subset.npy'), subsetBytes);
  const cli = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'reshard', '-i', join(dir, 'pool/shards'), '-o', join(dir, 'resharded'), '-s', join(dir, 'subset.npy'), '-j', '1', '--shard-size', '40'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.equal(cli.status, 0, cli.stderr);
  const memory = await reshardInMemory(new FileShardStore(join(dir, 'pool/shards')), new SubsetIndex(decodeSubsetWords(subsetBytes, 'subset.npy')), 40);
  assert.equal(memory.outputCount, picked.length);
  assert.equal(memory.processed, all.length);
  assert.deepEqual(memory.errors, []);
  const files = readdirSync(join(dir, 'resharded')).filter((n) => n.endsWith('.tar')).sort();
  const shards = await memory.store.listShards();
  assert.deepEqual(shards.map((s) => s.name), files);
  assert.equal(shards.length, Math.ceil(picked.length / 40));
  assert.deepEqual(shards.map((s) => s.samples), shards.map((_, i) => Math.min(40, picked.length - 40 * i)));
  for (const name of files) {
    assert.ok(Buffer.from(await bytesOf(await memory.store.openShard(name))).equals(readFileSync(join(dir, 'resharded', name))), `${name} differs`);
  }
  await assert.rejects(memory.store.openShard('nope.tar'), /nope.tar: no such shard in memory/);
});

test('openHttpPool and HttpEvalStore read what dcw serve serves', async () => {
  const server: Server = await startAppServer({ appDir: join(dir, 'pool'), poolDir: join(dir, 'pool'), evalDir: join(dir, 'eval'), host: '127.0.0.1', port: 0 });
  try {
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    const origin = `http://127.0.0.1:${address.port}`;
    const pool = await openHttpPool(origin);
    assert.deepEqual(pool.metadata.map((m) => Buffer.from(m.source as Uint8Array)), metadataFiles().map((m) => Buffer.from(m.source)));
    assert.deepEqual((await pool.shards.listShards()).map((s) => s.name), ['pool/shards/00000000.tar']);

    const store = new HttpEvalStore(`${origin}/eval`);
    assert.equal(await store.readText('tasklist.yml'), readFileSync(join(dir, 'eval/tasklist.yml'), 'utf8'));
    assert.equal(await store.readText('no/such/file.txt'), undefined);
    const set = readdirSync(join(dir, 'eval'), { withFileTypes: true }).find((e) => e.isDirectory())!.name;
    const tar = join(set, 'test/0.tar');
    assert.ok(Buffer.from(await bytesOf(await store.openStream(tar))).equals(readFileSync(join(dir, 'eval', tar))));
    await assert.rejects(store.openStream('no/such/0.tar'), /no\/such\/0.tar: HTTP 404/);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
