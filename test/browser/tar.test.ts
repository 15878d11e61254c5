// The tar writer and reader in headless Chromium: the same modules, web streams only, no Node.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { manifest } from '../fixtures/tar/helpers.ts';

type TarModule = typeof import('../../src/core/formats/tar.ts');
type WdsModule = typeof import('../../src/core/formats/webdataset.ts');

let session: BrowserSession;
before(async () => {
  session = await openBrowser();
});
after(async () => {
  await session?.close();
});

test('Chromium writes a tar with long and UTF-8 names and reads it back through a ReadableStream', async () => {
  const out = await session.page.evaluate(async () => {
    // A variable specifier keeps TypeScript from resolving the server path; Vite serves the module.
    const tarUrl = '/src/core/formats/tar.ts';
    const { writeTar, readTar, TarWriter } = (await import(tarUrl)) as TarModule;
    const entries = [
      { path: 'a/' + 'long'.repeat(40) + '.bin', data: crypto.getRandomValues(new Uint8Array(1000)) },
      { path: 'données/名前.txt', data: new TextEncoder().encode('utf-8 name') },
      { path: '000000000000.jpg', data: crypto.getRandomValues(new Uint8Array(513)) },
    ];
    // Cut the written archive into 1-byte and 777-byte chunks on the way into the reader.
    const rechunk = (size: number) =>
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          for (let i = 0; i < chunk.length; i += size) controller.enqueue(chunk.slice(i, i + size));
        },
      });
    const results = [];
    for (const size of [1, 777]) {
      const back = [];
      for await (const m of readTar(writeTar(entries).pipeThrough(rechunk(size)), 'browser.tar', { requireEndMarker: true })) {
        back.push({ path: m.path, same: (await m.bytes()).join() === entries.find((e) => e.path === m.path)!.data.join() });
      }
      results.push(back);
    }
    // The push API, read concurrently.
    const writer = new TarWriter();
    const read = new Response(writer.readable).arrayBuffer();
    for (const e of entries) await writer.add(e);
    await writer.finish();
    const pushed = new Uint8Array(await read);
    const pulled = new Uint8Array(await new Response(writeTar(entries)).arrayBuffer());
    return { results, samePushPull: pushed.join() === pulled.join(), length: pushed.length };
  });
  const expected = [
    { path: 'a/' + 'long'.repeat(40) + '.bin', same: true },
    { path: 'données/名前.txt', same: true },
    { path: '000000000000.jpg', same: true },
  ];
  assert.deepEqual(out.results, [expected, expected]);
  assert.ok(out.samePushPull);
  assert.equal(out.length % 10240, 0);
});

test('Chromium fetches the committed GNU tar shard and reads its samples', async () => {
  const out = await session.page.evaluate(async () => {
    const wdsUrl = '/src/core/formats/webdataset.ts';
    const { readSamples, describeTar } = (await import(wdsUrl)) as WdsModule;
    const hex = async (b: Uint8Array) =>
      [...new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array(b)))].map((x) => x.toString(16).padStart(2, '0')).join('');
    const fetched = await fetch('/test/fixtures/tar/shard.tar');
    const samples = [];
    for await (const s of readSamples(fetched.body!, 'shard.tar')) {
      const files: [string, string][] = [];
      for (const [ext, data] of s.files) files.push([ext, await hex(data)]);
      samples.push([s.__key__, files]);
    }
    const summary = await describeTar((await fetch('/test/fixtures/tar/shard.tar')).body!, 'shard.tar');
    return { samples, summary };
  });
  const sha = new Map(manifest('shard').map((m) => [m.path, m.sha256]));
  assert.deepEqual(out.samples, [
    ['000000000000', [['jpg', sha.get('000000000000.jpg')], ['json', sha.get('000000000000.json')], ['txt', sha.get('000000000000.txt')]]],
    ['000000000001', [['jpg', sha.get('000000000001.jpg')], ['json', sha.get('000000000001.json')], ['txt', sha.get('000000000001.txt')]]],
    ['000000000002', [['jpg', sha.get('000000000002.JPG')], ['json', sha.get('000000000002.json')], ['txt', sha.get('000000000002.txt')]]],
    ['part/000000000003', [['seg.png', sha.get('part/000000000003.seg.png')], ['txt', sha.get('part/000000000003.txt')]]],
  ]);
  assert.equal(out.summary.samples, 4);
  assert.equal(out.summary.members, 14);
});
