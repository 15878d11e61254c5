// Parquet ↔ Arrow in headless Chromium: the DuckDB fixtures read over HTTP range requests, and a file
// written in the browser read back in Node.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readParquet } from '../../src/core/formats/parquet.ts';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { expectedRows, tableJson } from '../fixtures/parquet/helpers.ts';

type ParquetModule = typeof import('../../src/core/formats/parquet.ts');

let session: BrowserSession;
before(async () => {
  session = await openBrowser();
  // On a cold Vite cache the first import makes Vite pre-bundle hyparquet, hyparquet-writer, fflate and
  // apache-arrow, and that import fails with "outdated optimize dep"; once bundled, a reload imports fine.
  for (let attempt = 0; ; attempt++) {
    const ok = await session.page.evaluate(async () => {
      const parquetUrl = '/src/core/formats/parquet.ts';
      return import(parquetUrl).then(() => true, () => false);
    });
    if (ok) break;
    if (attempt === 4) throw new Error('Vite could not serve src/core/formats/parquet.ts');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await session.page.reload();
  }
});
after(async () => {
  await session?.close();
});

test('Chromium reads CommonPool parquet by HTTP ranges into Arrow, and writes parquet Node reads back', async () => {
  const out = await session.page.evaluate(async () => {
    const parquetUrl = '/src/core/formats/parquet.ts';
    const { ParquetFile, readParquet, writeParquet } = (await import(parquetUrl)) as ParquetModule;
    // Arrow tables as JSON rows, int64 as decimal strings (the fixtures' expected.json shape)
    const json = (table: { toArray(): { toJSON(): unknown }[] }) =>
      JSON.stringify(table.toArray().map((row) => row.toJSON()), (_, v) => (typeof v === 'bigint' ? v.toString() : v));
    const url = '/test/fixtures/parquet/commonpool-50.rowgroups.parquet';
    const size = Number((await fetch(url, { method: 'HEAD' })).headers.get('content-length'));
    const ranges: string[] = [];
    const source = {
      byteLength: size,
      async slice(start: number, end: number) {
        ranges.push(`${start}-${end - 1}`);
        const response = await fetch(url, { headers: { Range: `bytes=${start}-${end - 1}` } });
        if (response.status !== 206) throw new Error(`no range support: HTTP ${response.status}`);
        return response.arrayBuffer();
      },
    };
    const file = await ParquetFile.open(source, 'http.parquet');
    const footerRanges = ranges.length;
    const some = await file.read({ columns: ['uid', 'face_bboxes'], rowStart: 20, rowEnd: 30 });
    const chunkRanges = ranges.length - footerRanges;
    const all = await file.read();
    const whole = new Uint8Array(await (await fetch('/test/fixtures/parquet/commonpool-50.snappy.parquet')).arrayBuffer());
    const snappy = await readParquet(whole, 'snappy.parquet');
    const written = writeParquet(snappy);
    const toBase64 = (bytes: Uint8Array) => {
      let binary = '';
      for (const b of bytes) binary += String.fromCharCode(b);
      return btoa(binary);
    };
    return {
      size, footerRanges, chunkRanges,
      some: json(some), all: json(all), types: all.schema.fields.map((f) => String(f.type)), written: toBase64(written),
    };
  });
  const expected = expectedRows('commonpool-50.snappy.expected.json').rows;
  const fromBase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
  assert.ok(out.size > 10_000);
  assert.equal(out.chunkRanges, 2, 'one row group, two columns: two ranges');
  assert.deepEqual(JSON.parse(out.some), expected.slice(20, 30).map((r) => ({ uid: r.uid, face_bboxes: r.face_bboxes })));
  assert.deepEqual(out.types, ['Utf8', 'Utf8', 'Utf8', 'Int64', 'Int64', 'Float32', 'Float32', 'List<List<Float64>>', 'Utf8']);
  assert.deepEqual(JSON.parse(out.all), expected);
  assert.deepEqual(tableJson(await readParquet(fromBase64(out.written), 'browser-written.parquet')), expected);
});

test('hostile parquet is a FormatError in the browser too', async () => {
  const out = await session.page.evaluate(async () => {
    const parquetUrl = '/src/core/formats/parquet.ts';
    const errorsUrl = '/src/core/formats/errors.ts';
    const { readParquet } = (await import(parquetUrl)) as ParquetModule;
    const { FormatError } = (await import(errorsUrl)) as typeof import('../../src/core/formats/errors.ts');
    const good = new Uint8Array(await (await fetch('/test/fixtures/parquet/commonpool-50.snappy.parquet')).arrayBuffer());
    const damaged = good.slice();
    damaged.fill(0x07, 200, 400);
    const cut = good.slice(0, good.length - 30);
    const results = [];
    for (const [name, bytes] of [['damaged.parquet', damaged], ['cut.parquet', cut]] as const) {
      try {
        await readParquet(bytes, name);
        results.push({ name, formatError: false, message: 'read' });
      } catch (err) {
        results.push({ name, formatError: err instanceof FormatError, message: (err as Error).message });
      }
    }
    return results;
  });
  for (const r of out) {
    assert.ok(r.formatError, `${r.name}: ${r.message}`);
    assert.ok(r.message.startsWith(`${r.name}: `), r.message);
  }
});
