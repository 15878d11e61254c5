// dcw serve's /api/fetch (pictures of a BYOD URL table whose site refuses CORS): real servers on loopback, and
// the hostile cases — no header, another Host (DNS rebinding), other schemes, failing upstreams, lying and huge sizes.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startAppServer } from '../../server/http/app-server.ts';
import { MAX_BYTES } from '../../server/http/fetch-proxy.ts';
import { REPO } from '../helpers/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'dcw-fetch-proxy-'));
const picture = readFileSync(join(REPO, 'test/fixtures/images/photo-progressive.jpg'));
let app: Server;
let upstream: Server;
let base: string;
let far: string;

before(async () => {
  mkdirSync(join(root, 'app'));
  writeFileSync(join(root, 'app', 'index.html'), '<!doctype html>');
  app = await startAppServer({ appDir: join(root, 'app'), poolDir: join(root, 'pool'), host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  // The picture's own site: no CORS headers anywhere.
  upstream = createServer((req, res) => {
    if (req.url === '/a.jpg') {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      return res.end(picture);
    }
    if (req.url === '/moved') {
      res.writeHead(302, { Location: '/a.jpg' });
      return res.end();
    }
    if (req.url === '/lying') {
      // declares a small picture, then keeps sending past the limit
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      const block = Buffer.alloc(1 << 20, 7);
      let sent = 0;
      const more = () => {
        while (sent <= MAX_BYTES) {
          sent += block.length;
          if (!res.write(block)) return void res.once('drain', more);
        }
        res.end();
      };
      return more();
    }
    if (req.url === '/huge') {
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': String(MAX_BYTES + 1) });
      return res.end();
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not here');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  far = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

after(() => {
  app.close();
  upstream.close();
  rmSync(root, { recursive: true, force: true });
});

const viaProxy = (url: string, headers: Record<string, string> = { 'X-DCW-Fetch': '1' }) =>
  fetch(`${base}/api/fetch?url=${encodeURIComponent(url)}`, { headers });

test('a picture from a site without CORS comes back byte for byte, redirects followed', async () => {
  for (const path of ['/a.jpg', '/moved']) {
    const res = await viaProxy(`${far}${path}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    assert.equal(res.headers.get('cross-origin-resource-policy'), 'same-origin');
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), new Uint8Array(picture));
  }
});

test('only the workbench page: no X-DCW-Fetch header, or a Host that is not this server, is refused', async () => {
  const bare = await viaProxy(`${far}/a.jpg`, {});
  assert.equal(bare.status, 403);
  assert.match(((await bare.json()) as { error: string }).error, /X-DCW-Fetch/);
  // a DNS-rebinding page would reach us under its own name
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${base}/api/fetch?url=${encodeURIComponent(`${far}/a.jpg`)}`, { headers: { Host: 'attacker.example:80', 'X-DCW-Fetch': '1' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 403);
});

test('other schemes and non-URLs are refused in one line; an upstream failure is its status, as JSON', async () => {
  for (const [url, pattern] of [['file:///etc/passwd', /only http\(s\) URLs/], ['data:image/png;base64,AAAA', /only http\(s\) URLs/], ['not a url', /is not a URL/]] as const) {
    const res = await viaProxy(url);
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: string }).error, pattern);
  }
  const missing = await viaProxy(`${far}/nope.jpg`);
  assert.equal(missing.status, 502);
  assert.equal(((await missing.json()) as { error: string }).error, 'HTTP 404 Not Found');
  // a port that was just free: nothing listens there
  const gone = createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const port = (gone.address() as AddressInfo).port;
  await new Promise((r) => gone.close(r));
  const closed = await viaProxy(`http://127.0.0.1:${port}/a.jpg`);
  assert.equal(closed.status, 502);
  assert.match(((await closed.json()) as { error: string }).error, /^could not fetch it: .*ECONNREFUSED/);
});

test('a picture over the size limit is refused, whether it says so or lies about it, and nothing of it is sent', async () => {
  for (const path of ['/huge', '/lying']) {
    const res = await viaProxy(`${far}${path}`);
    assert.equal(res.status, 413, path);
    assert.match(((await res.json()) as { error: string }).error, new RegExp(`over the ${MAX_BYTES}-byte limit`));
  }
});
