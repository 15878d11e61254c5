// /api/bpe: the CLIP vocabulary `dcw serve --bpe` hands to the page for training, byte for byte, or a 404
// that says what to do; `dcw serve --bpe` with a missing file stops with the file named.
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startAppServer } from '../../server/http/app-server.ts';
import { dcw } from '../helpers/cli.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';

const root = mkdtempSync(join(tmpdir(), 'dcw-serve-bpe-'));
const servers: Server[] = [];
mkdirSync(join(root, 'app'));
writeFileSync(join(root, 'app', 'index.html'), '<!doctype html><title>app</title>');

async function serve(bpeFile?: string): Promise<string> {
  const server = await startAppServer({ appDir: join(root, 'app'), poolDir: join(root, 'pool'), bpeFile, host: '127.0.0.1', port: 0 });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

after(() => {
  for (const s of servers) s.close();
  rmSync(root, { recursive: true, force: true });
});

test('/api/bpe serves the vocabulary file unchanged, with the isolation headers', { skip: BPE_SKIP }, async () => {
  const base = await serve(BPE_PATH);
  const res = await fetch(`${base}/api/bpe`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cross-origin-resource-policy'), 'same-origin');
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), new Uint8Array(readFileSync(BPE_PATH)));
});

test('/api/bpe without a vocabulary is a 404 saying how to give one', async () => {
  for (const bpe of [undefined, join(root, 'gone.txt.gz')]) {
    const res = await fetch(`${await serve(bpe)}/api/bpe`);
    assert.equal(res.status, 404);
    assert.match(((await res.json()) as { error: string }).error, /--bpe/);
  }
});

test('dcw serve --bpe with a missing file: one line naming it, non-zero exit', () => {
  const missing = join(root, 'no-such-vocab.txt.gz');
  const run = dcw(['serve', '--port', '0', '--bpe', missing]);
  assert.notEqual(run.status, 0);
  assert.match(run.stderr, new RegExp(`${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file`));
});
