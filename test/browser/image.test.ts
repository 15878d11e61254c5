// The browser image codec in headless Chromium against the sharp codec in Node, on the same fixtures.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import type { RgbaImage } from '../../src/core/formats/image.ts';
import { openBrowser, type BrowserSession } from '../helpers/browser.ts';
import { firstLumaQuant, imageFixture, jpegClaiming, pixelDiff, pngClaiming, readNetpbm } from '../fixtures/images/helpers.ts';

type CodecModule = typeof import('../../workers/image-codec.ts');
type ErrorsModule = typeof import('../../src/core/formats/errors.ts');

const sharp = new SharpImageCodec();
let session: BrowserSession;
before(async () => {
  session = await openBrowser();
});
after(async () => {
  await session?.close();
});

interface Wire {
  width: number;
  height: number;
  base64: string;
}
const fromWire = (w: Wire): RgbaImage => ({ width: w.width, height: w.height, data: new Uint8ClampedArray(Buffer.from(w.base64, 'base64')) });

/** Decodes fixtures in the page (main thread, or a module worker) and returns their pixels. */
async function decodeInBrowser(names: string[], where: 'page' | 'worker' = 'page'): Promise<Record<string, Wire | { error: string }>> {
  return session.page.evaluate(async ({ names, where }) => {
    // `base` is '' on the page; a blob: worker needs absolute URLs for its imports and fetches
    const decodeAll = async (list: string[], base: string) => {
      const { BrowserImageCodec } = (await import(`${base}/workers/image-codec.ts`)) as CodecModule;
      const codec = new BrowserImageCodec();
      const out: Record<string, Wire | { error: string }> = {};
      for (const name of list) {
        const bytes = new Uint8Array(await (await fetch(`${base}/test/fixtures/images/${name}`)).arrayBuffer());
        try {
          const image = await codec.decode(bytes, name);
          let binary = '';
          for (let i = 0; i < image.data.length; i += 0x8000) binary += String.fromCharCode(...image.data.subarray(i, i + 0x8000));
          out[name] = { width: image.width, height: image.height, base64: btoa(binary) };
        } catch (err) {
          out[name] = { error: String(err) };
        }
      }
      return out;
    };
    if (where === 'page') return decodeAll(names, '');
    // the same function in a module worker: OffscreenCanvas and createImageBitmap without a DOM
    const source = `onmessage = async (e) => {
      try { postMessage(await (${decodeAll.toString()})(e.data, ${JSON.stringify(location.origin)})); }
      catch (err) { postMessage({ failed: String(err) }); }
    };`;
    const worker = new Worker(URL.createObjectURL(new Blob([source], { type: 'text/javascript' })), { type: 'module' });
    try {
      return await new Promise<Record<string, Wire | { error: string }>>((resolve, reject) => {
        setTimeout(() => reject(new Error('the worker did not answer in 20 s')), 20_000);
        worker.onmessage = (e) => (e.data.failed ? reject(new Error(e.data.failed)) : resolve(e.data));
        worker.onerror = (e) => reject(new Error(`worker error: ${e.message}`));
        worker.postMessage(names);
      });
    } finally {
      worker.terminate();
    }
  }, { names, where });
}

function decoded(result: Wire | { error: string } | undefined, name: string): RgbaImage {
  assert.ok(result && !('error' in result), `${name}: ${JSON.stringify(result)}`);
  return fromWire(result as Wire);
}

const LOSSLESS = ['photo.png', 'palette.png', 'photo-lossless.webp', 'pattern.gif', 'animated.gif', 'photo-gray16.png'];
const LOSSY = ['photo-q95.jpg', 'photo-progressive.jpg', 'photo-gray.jpg', 'photo-q80.webp', 'photo-exif6.jpg'];

test('Chromium decodes the fixtures to the pixels sharp decodes in Node', async () => {
  const names = [...LOSSLESS, ...LOSSY, 'alpha.png', 'alpha.webp', 'photo-cmyk.jpg'];
  const browser = await decodeInBrowser(names);
  for (const name of names) {
    const got = decoded(browser[name], name);
    const want = await sharp.decode(imageFixture(name), name);
    assert.deepEqual([got.width, got.height], [want.width, want.height], name);
    const d = pixelDiff(got, want, { alpha: true });
    if (LOSSLESS.includes(name)) assert.equal(d.max, 0, `${name}: ${JSON.stringify(d)}`);
    else if (name === 'photo-cmyk.jpg') assert.ok(d.mean < 20, `${name}: ${JSON.stringify(d)}`); // CMYK conversion differs by design
    else if (LOSSY.includes(name)) assert.ok(d.max <= 3 && d.mean < 0.5, `${name}: ${JSON.stringify(d)}`);
  }
  // semi-transparent pixels pass through a premultiplied canvas: alpha is exact, colour exact where
  // opaque and within rounding of 255/alpha elsewhere
  const source = readNetpbm('source-alpha.pam');
  for (const name of ['alpha.png', 'alpha.webp']) {
    const got = decoded(browser[name], name);
    const a = (p: number) => source.data[p * 4 + 3]!;
    assert.equal(pixelDiff(got, source, { alpha: true, where: (p) => a(p) === 255 }).max, 0, name);
    for (let p = 0; p < got.width * got.height; p++) {
      assert.equal(got.data[p * 4 + 3], a(p), `${name} alpha at ${p}`);
      if (a(p) > 0) {
        for (let c = 0; c < 3; c++) {
          assert.ok(Math.abs(got.data[p * 4 + c]! - source.data[p * 4 + c]!) <= Math.ceil(255 / a(p)), `${name} colour at ${p}`);
        }
      }
    }
  }
  // EXIF orientation 6 is not applied here either
  assert.deepEqual([decoded(browser['photo-exif6.jpg'], 'exif').width, decoded(browser['photo-exif6.jpg'], 'exif').height], [96, 64]);
});

test('the codec works the same inside a module worker', async () => {
  const names = ['photo-q95.jpg', 'photo.png', 'pattern.gif'];
  const [page, worker] = [await decodeInBrowser(names), await decodeInBrowser(names, 'worker')];
  for (const name of names) assert.equal(pixelDiff(decoded(worker[name], name), decoded(page[name], name), { alpha: true }).max, 0, name);
});

test('Chromium encodes JPEG at quality 95 on white, PNG and WebP; sharp decodes them', async () => {
  const photo = readNetpbm('source.ppm');
  const alpha = readNetpbm('source-alpha.pam');
  const encoded = await session.page.evaluate(async ({ images }) => {
    const codecUrl = '/workers/image-codec.ts';
    const { BrowserImageCodec } = (await import(codecUrl)) as CodecModule;
    const codec = new BrowserImageCodec();
    const out: Record<string, string> = {};
    for (const [key, w] of Object.entries(images)) {
      const image = { width: w.width, height: w.height, data: Uint8ClampedArray.from(atob(w.base64), (c) => c.charCodeAt(0)) };
      for (const options of [{ format: 'jpeg' }, { format: 'png' }, { format: 'webp', lossless: true }, { format: 'webp', quality: 80 }] as const) {
        const bytes = await codec.encode(image, options);
        let binary = '';
        for (const b of bytes) binary += String.fromCharCode(b);
        out[`${key}.${options.format}${'lossless' in options ? '-lossless' : 'quality' in options ? '-80' : ''}`] = btoa(binary);
      }
    }
    return out;
  }, { images: Object.fromEntries(Object.entries({ photo, alpha }).map(([k, v]) => [k, { width: v.width, height: v.height, base64: Buffer.from(v.data).toString('base64') }])) });
  const bytes = (key: string) => new Uint8Array(Buffer.from(encoded[key]!, 'base64'));

  const jpeg = bytes('photo.jpeg');
  assert.equal(firstLumaQuant(jpeg), 2, 'quality 95');
  const d = pixelDiff(await sharp.decode(jpeg, 'chromium.jpg'), photo);
  assert.ok(d.mean < 4.5 && d.psnr > 30, JSON.stringify(d));
  const onWhite = pixelDiff(await sharp.decode(bytes('alpha.jpeg'), 'alpha.jpg'), readNetpbm('alpha-on-white.ppm'), { alpha: true });
  assert.ok(onWhite.mean < 1.5 && onWhite.psnr > 40, JSON.stringify(onWhite));

  assert.equal(pixelDiff(await sharp.decode(bytes('photo.png'), 'p.png'), photo, { alpha: true }).max, 0);
  assert.equal(pixelDiff(await sharp.decode(bytes('photo.webp-lossless'), 'p.webp'), photo, { alpha: true }).max, 0);
  assert.ok(pixelDiff(await sharp.decode(bytes('photo.webp-80'), 'p80.webp'), photo).psnr > 28);
  // alpha survives PNG exactly where opaque or transparent (the canvas premultiplies the rest)
  const alphaPng = await sharp.decode(bytes('alpha.png'), 'a.png');
  assert.equal(pixelDiff(alphaPng, alpha, { alpha: true, where: (p) => alpha.data[p * 4 + 3] === 255 }).max, 0);
});

test('hostile images are FormatErrors in the browser too, before the decoder runs', async () => {
  const cases = {
    bomb: Array.from(pngClaiming(100_000, 100_000)),
    jpegBomb: Array.from(jpegClaiming(65_535, 65_535)),
    truncated: Array.from(imageFixture('photo-q95.jpg').subarray(0, 1500)),
    html: Array.from(new TextEncoder().encode('<html>not an image</html>')),
  };
  const results = await session.page.evaluate(async (cases) => {
    const codecUrl = '/workers/image-codec.ts';
    const errorsUrl = '/src/core/formats/errors.ts';
    const { BrowserImageCodec } = (await import(codecUrl)) as CodecModule;
    const { FormatError } = (await import(errorsUrl)) as ErrorsModule;
    const codec = new BrowserImageCodec();
    const out: Record<string, { formatError: boolean; message: string; ms: number }> = {};
    for (const [name, bytes] of Object.entries(cases)) {
      const started = performance.now();
      try {
        await codec.decode(Uint8Array.from(bytes), `${name}.img`);
        out[name] = { formatError: false, message: 'decoded', ms: 0 };
      } catch (err) {
        out[name] = { formatError: err instanceof FormatError, message: String((err as Error).message), ms: performance.now() - started };
      }
    }
    return out;
  }, cases);
  assert.match(results.bomb!.message, /^bomb\.img: 100000×100000 png image .* exceeds the limit/);
  assert.match(results.jpegBomb!.message, /exceeds the limit/);
  assert.match(results.truncated!.message, /^truncated\.img: truncated JPEG/);
  assert.match(results.html!.message, /unknown magic bytes/);
  for (const [name, r] of Object.entries(results)) {
    assert.ok(r.formatError, `${name}: ${r.message}`);
    assert.ok(r.ms < 200, `${name} took ${r.ms} ms`);
  }
});
