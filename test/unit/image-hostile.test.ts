// Hostile images: wrong magic, truncation, garbage, decompression bombs. Each ends in a one-line
// FormatError naming the file — before the decoder allocates for it, where the headers give it away.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { checkImageSize, readImageSize } from '../../src/core/formats/image.ts';
import { fuzzReader } from '../helpers/fuzz.ts';
import { gifClaiming, imageFixture, jpegClaiming, pngClaiming, webpClaiming } from '../fixtures/images/helpers.ts';

const codec = new SharpImageCodec();
const NAME = 'hostile.img';

async function refused(bytes: Uint8Array, pattern: RegExp, c: SharpImageCodec = codec): Promise<void> {
  const started = performance.now();
  await assert.rejects(c.decode(bytes, NAME), (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
    assert.equal(err.file, NAME);
    assert.match(err.problem, pattern);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
  const took = performance.now() - started;
  assert.ok(took < 500, `took ${took.toFixed(0)} ms`);
}

test('wrong magic and empty files', async () => {
  await refused(new Uint8Array(0), /empty file/);
  await refused(new TextEncoder().encode('<html><body>404 not found</body></html>'), /unknown magic bytes/);
  await refused(imageFixture('source.ppm'), /unknown magic bytes/);
  await refused(new Uint8Array([0x50, 0x4b, 0x03, 0x04, 1, 2, 3]), /unknown magic bytes/);
});

test('decompression bombs are refused from their headers, before decoding', async () => {
  await refused(pngClaiming(100_000, 100_000), /100000×100000 png image \(10000 megapixels\) exceeds the limit of 67 megapixels/);
  await refused(jpegClaiming(65_535, 65_535), /65535×65535 jpeg image .* exceeds the limit/);
  await refused(webpClaiming(16_384, 16_384), /16384×16384 webp image .* exceeds the limit/);
  await refused(gifClaiming(65_535, 65_535), /65535×65535 gif image .* exceeds the limit/);
  // the limit is configurable: a real 96×64 photo is a bomb at 1000 pixels
  await refused(imageFixture('photo-q95.jpg'), /96×64 jpeg image \(0\.01 megapixels\) exceeds the limit of 0\.00 megapixels/, new SharpImageCodec({ maxPixels: 1000 }));
  assert.equal(checkImageSize(imageFixture('photo-q95.jpg'), 'ok.jpg', { maxPixels: 96 * 64 }).width, 96);
  // the hand-made headers are well formed: under the limit they reach the decoder
  assert.deepEqual([readImageSize(pngClaiming(3, 2), 'x').width, readImageSize(jpegClaiming(3, 2), 'x').height], [3, 2]);
  assert.equal(readImageSize(webpClaiming(300, 200), 'x').width, 300);
  assert.equal(readImageSize(gifClaiming(5, 7), 'x').height, 7);
});

test('zero-sized images are refused', async () => {
  await refused(pngClaiming(0, 10), /0×10/);
  await refused(jpegClaiming(10, 0), /DNL|0×/);
  await refused(gifClaiming(0, 0), /0×0/);
});

test('truncated files are refused, wherever they are cut', async () => {
  for (const name of ['photo-q95.jpg', 'photo-progressive.jpg', 'photo.png', 'alpha.png', 'photo-lossless.webp', 'photo-q80.webp', 'pattern.gif', 'animated.gif']) {
    const bytes = imageFixture(name);
    for (const keep of [0.99, 0.9, 0.5, 0.1]) {
      await refused(bytes.subarray(0, Math.floor(bytes.length * keep)), /truncated|damaged|cannot decode/);
    }
    await refused(bytes.subarray(0, 7), /truncated|damaged|unknown magic/);
  }
  // JPEG cut just before its end-of-image marker: the scan data never ends
  const jpeg = imageFixture('photo-q95.jpg');
  await refused(jpeg.subarray(0, jpeg.length - 2), /truncated JPEG: the image data ends/);
});

test('garbage inside the image data is refused by the structure walk or the decoder', async () => {
  const png = imageFixture('photo.png').slice();
  const idat = Buffer.from(png).indexOf('IDAT');
  png.fill(0x55, idat + 40, idat + 400);
  await refused(png, /cannot decode png/);
  const gif = imageFixture('pattern.gif').slice();
  gif.fill(0x21, 100, 140); // inside the LZW data of the first frame
  await refused(gif, /damaged|truncated|cannot decode/);
  const jpeg = imageFixture('photo-q95.jpg').slice();
  jpeg.fill(0xff, 2, 40); // over the header segments
  await refused(jpeg, /damaged|truncated|cannot decode/);
});

test('seeded fuzzing: header walk and sharp decode give FormatError or an image, never anything else', async () => {
  const names = ['photo-q95.jpg', 'photo-progressive.jpg', 'photo.png', 'alpha.png', 'palette.png', 'photo-lossless.webp',
    'photo-q80.webp', 'alpha.webp', 'pattern.gif', 'animated.gif', 'photo-exif6.jpg'];
  const seeds = names.map(imageFixture);
  const headers = await fuzzReader(seeds, (bytes) => readImageSize(bytes, 'fuzz'), { seed: 7, cases: 3000 });
  assert.ok(headers.rejected > 300 && headers.accepted > 300, JSON.stringify(headers));
  const decoded = await fuzzReader(seeds, async (bytes) => {
    const image = await codec.decode(bytes, 'fuzz');
    assert.equal(image.data.length, image.width * image.height * 4);
  }, { seed: 11, cases: 800 });
  assert.ok(decoded.rejected > 100 && decoded.accepted > 100, JSON.stringify(decoded));
});
