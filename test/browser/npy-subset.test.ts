// The uid codec and npy/npz modules in headless Chromium: a subset written in the browser equals numpy's file.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';

type UidModule = typeof import('../../src/core/formats/uid.ts');
type NpzModule = typeof import('../../src/core/formats/npz.ts');

let session: BrowserSession;
before(async () => {
  session = await openBrowser();
});
after(async () => {
  await session?.close();
});

test('Chromium writes a subset .npy byte-identical to the one numpy wrote, and reads numpy\'s npz', async () => {
  const out = await session.page.evaluate(async () => {
    // Variable specifiers keep TypeScript from resolving server paths; Vite serves the modules.
    const uidUrl = '/src/core/formats/uid.ts';
    const npzUrl = '/src/core/formats/npz.ts';
    const { encodeSubset, decodeSubset, parseUidList } = (await import(uidUrl)) as UidModule;
    const { readNpz, encodeNpz } = (await import(npzUrl)) as NpzModule;
    const fetchBytes = async (path: string) => {
      const res = await fetch(path);
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
      return new Uint8Array(await res.arrayBuffer());
    };
    const text = await (await fetch('/test/fixtures/numpy/uids/uids_1000.txt')).text();
    const numpyFile = await fetchBytes('/test/fixtures/numpy/uids/uids_1000.npy');
    const ours = encodeSubset(parseUidList(text, 'uids_1000.txt'));
    const firstDifference = ours.findIndex((b, i) => b !== numpyFile[i]);
    const decoded = decodeSubset(numpyFile, 'uids_1000.npy');

    const npzBytes = await fetchBytes('/test/fixtures/numpy/npz/embeddings_f2_compressed.npz');
    const npz = readNpz(npzBytes, 'embeddings_f2_compressed.npz', { only: ['l14_img'], float16: 'float32' });
    const stored = await fetchBytes('/test/fixtures/numpy/npz/embeddings_f4_stored.npz');
    const rewritten = encodeNpz(readNpz(stored, 'embeddings_f4_stored.npz'));
    return {
      lengths: [ours.length, numpyFile.length],
      firstDifference,
      decodedCount: decoded.length,
      decodedSorted: decoded.every((u, i) => i === 0 || decoded[i - 1]! <= u),
      npzKeys: Object.keys(npz),
      l14Shape: npz.l14_img!.shape,
      l14Type: npz.l14_img!.data.constructor.name,
      npzRewriteSame: rewritten.length === stored.length && rewritten.every((b, i) => b === stored[i]),
    };
  });
  assert.deepEqual(out.lengths, [16128, 16128]);
  assert.equal(out.firstDifference, -1, 'the browser-written subset equals numpy\'s bytes');
  assert.equal(out.decodedCount, 1000);
  assert.ok(out.decodedSorted);
  assert.deepEqual(out.npzKeys, ['l14_img']);
  assert.deepEqual(out.l14Shape, [2, 768]);
  assert.equal(out.l14Type, 'Float32Array');
  assert.ok(out.npzRewriteSame, 'np.savez bytes re-created in the browser');
});
