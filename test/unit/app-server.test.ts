// The HTTP server that `npm start` runs: static app, pool files, status API, and no way out of its folders.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Server } from 'node:http';
import { safeJoin, startAppServer } from '../../server/http/app-server.ts';

const root = mkdtempSync(join(tmpdir(), 'dcw-serve-'));
const appDir = join(root, 'app');
const poolDir = join(root, 'pool');
let server: Server;
let base: string;

before(async () => {
  mkdirSync(appDir);
  mkdirSync(join(poolDir, 'shards'), { recursive: true });
  writeFileSync(join(appDir, 'index.html'), '<!doctype html><title>app</title>');
  writeFileSync(join(poolDir, 'shards', '00000000_stats.json'), '{"successes": 3}');
  writeFileSync(join(root, 'secret.txt'), 'do not serve');
  server = await startAppServer({ appDir, poolDir, host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.close();
  rmSync(root, { recursive: true, force: true });
});

test('serves the app shell with cross-origin isolation headers', async () => {
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin');
  assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp');
  assert.match(await res.text(), /<title>app<\/title>/);
  assert.equal((await fetch(`${base}/some/route`)).status, 200, 'client-side routes get the shell');
});

test('reports the pool as missing until metadata and shards both exist', async () => {
  let status = await (await fetch(`${base}/api/status`)).json();
  assert.equal(status.pool.ready, false);
  assert.match(status.pool.message, /no pool yet/);
  mkdirSync(join(poolDir, 'metadata'));
  status = await (await fetch(`${base}/api/status`)).json();
  assert.equal(status.pool.ready, true);
});

test('serves pool files', async () => {
  const res = await fetch(`${base}/pool/shards/00000000_stats.json`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { successes: 3 });
});

test('never serves files outside its folders (path traversal)', async () => {
  for (const path of ['/pool/..%2fsecret.txt', '/pool/%2e%2e/secret.txt', '/..%2f..%2fsecret.txt', '/pool/shards/%00', '/%E0%A4%A']) {
    const res = await fetch(base + path);
    assert.ok([400, 404].includes(res.status), `${path} gave ${res.status}`);
    assert.doesNotMatch(await res.text(), /do not serve/);
  }
  assert.equal(safeJoin('/srv/pool', '../etc/passwd'), null);
  assert.equal(safeJoin('/srv/pool', '/a/../../etc'), '/srv/pool/etc', 'a rooted path stays under the root');
  assert.equal(safeJoin('/srv/pool', 'shards/x.tar'), '/srv/pool/shards/x.tar');
});
