// Image sniffing, header reading and the sharp codec, on files ImageMagick wrote from numpy-made pixels.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import {
  DEFAULT_JPEG_QUALITY, compositeOnWhite, exifOrientation, readImageSize, sniffImageFormat, withoutExifOrientation,
  type RgbaImage,
} from '../../src/core/formats/image.ts';
import { firstLumaQuant, imageFixture, pixelDiff, readNetpbm } from '../fixtures/images/helpers.ts';

const codec = new SharpImageCodec();
const photo = readNetpbm('source.ppm'); // 96×64 RGB
const alpha = readNetpbm('source-alpha.pam'); // 64×48 RGBA
const pattern = readNetpbm('pattern.ppm'); // 48×32, 16 colours

/** Rec. 709 luma, as ImageMagick's -colorspace Gray computes it. */
function luma(image: RgbaImage): RgbaImage {
  const data = new Uint8ClampedArray(image.data.length);
  for (let i = 0; i < data.length; i += 4) {
    data[i] = data[i + 1] = data[i + 2] = Math.round(0.2126 * image.data[i]! + 0.7152 * image.data[i + 1]! + 0.0722 * image.data[i + 2]!);
    data[i + 3] = 255;
  }
  return { ...image, data };
}

test('sniffs JPEG, PNG, WebP and GIF by their magic bytes, and nothing else', () => {
  const formats: Record<string, string> = {
    'photo-q95.jpg': 'jpeg', 'photo-progressive.jpg': 'jpeg', 'photo.png': 'png', 'palette.png': 'png',
    'photo-lossless.webp': 'webp', 'photo-q80.webp': 'webp', 'pattern.gif': 'gif', 'animated.gif': 'gif',
  };
  for (const [name, format] of Object.entries(formats)) assert.equal(sniffImageFormat(imageFixture(name)), format, name);
  for (const other of ['source.ppm', 'source-alpha.pam', 'make-fixtures.sh']) assert.equal(sniffImageFormat(imageFixture(other)), undefined);
  assert.equal(sniffImageFormat(new Uint8Array(0)), undefined);
  assert.equal(sniffImageFormat(new TextEncoder().encode('RIFF\0\0\0\0WAVEfmt ')), undefined);
});

test('readImageSize reads sizes from the headers without decoding', () => {
  const sizes: [string, number, number, boolean, boolean][] = [
    ['photo-q95.jpg', 96, 64, false, false], ['photo-progressive.jpg', 96, 64, false, false], ['photo-gray.jpg', 96, 64, false, false],
    ['photo-cmyk.jpg', 96, 64, false, false], ['photo-exif6.jpg', 96, 64, false, false], ['photo.png', 96, 64, false, false],
    ['photo-gray16.png', 96, 64, false, false], ['alpha.png', 64, 48, true, false], ['palette.png', 48, 32, false, false],
    ['photo-lossless.webp', 96, 64, false, false], ['photo-q80.webp', 96, 64, false, false], ['alpha.webp', 64, 48, true, false],
    ['pattern.gif', 48, 32, false, false], ['animated.gif', 48, 32, false, true],
  ];
  for (const [name, width, height, hasAlpha, animated] of sizes) {
    const info = readImageSize(imageFixture(name), name);
    assert.deepEqual([info.width, info.height, info.hasAlpha, info.animated], [width, height, hasAlpha, animated], name);
  }
});

test('lossless files decode to exactly the source pixels', async () => {
  const exact: [string, RgbaImage][] = [
    ['photo.png', photo], ['photo-lossless.webp', photo], ['palette.png', pattern], ['pattern.gif', pattern],
    ['animated.gif', pattern], // the first frame
    ['alpha.png', alpha],
  ];
  for (const [name, want] of exact) {
    const got = await codec.decode(imageFixture(name), name);
    assert.equal(got.data.length, got.width * got.height * 4);
    assert.deepEqual(pixelDiff(got, want, { alpha: true }).max, 0, name);
  }
  // lossless WebP keeps alpha exactly, and colour wherever the pixel is not fully transparent
  const webp = await codec.decode(imageFixture('alpha.webp'), 'alpha.webp');
  assert.equal(pixelDiff(webp, alpha, { alpha: true, where: (p) => alpha.data[p * 4 + 3]! > 0 }).max, 0);
  assert.ok(Array.from({ length: webp.width * webp.height }, (_, p) => webp.data[p * 4 + 3] === alpha.data[p * 4 + 3]).every(Boolean));
});

test('lossy and grey files decode close to the source', async () => {
  for (const name of ['photo-q95.jpg', 'photo-progressive.jpg', 'photo-q80.webp']) {
    const d = pixelDiff(await codec.decode(imageFixture(name), name), photo);
    assert.ok(d.mean < 4.5 && d.psnr > 30, `${name}: ${JSON.stringify(d)}`);
  }
  for (const name of ['photo-gray.jpg', 'photo-gray16.png']) {
    const got = await codec.decode(imageFixture(name), name);
    assert.ok(Array.from({ length: got.width * got.height }, (_, p) => got.data[p * 4] === got.data[p * 4 + 1] && got.data[p * 4] === got.data[p * 4 + 2]).every(Boolean), name);
    const d = pixelDiff(got, luma(photo));
    assert.ok(d.mean < 1.5 && d.max <= 6, `${name}: ${JSON.stringify(d)}`);
  }
  // CMYK converts through a profile, not ImageMagick's naive formula: the same picture, not the same numbers
  const cmyk = pixelDiff(await codec.decode(imageFixture('photo-cmyk.jpg'), 'photo-cmyk.jpg'), photo);
  assert.ok(cmyk.mean < 20, JSON.stringify(cmyk));
});

test('EXIF orientation is not applied, as cv2.IMREAD_UNCHANGED does not', async () => {
  const rotated = await codec.decode(imageFixture('photo-exif6.jpg'), 'photo-exif6.jpg');
  const plain = await codec.decode(imageFixture('photo-q95.jpg'), 'photo-q95.jpg');
  assert.deepEqual([rotated.width, rotated.height], [96, 64]);
  assert.equal(pixelDiff(rotated, plain, { alpha: true }).max, 0);
  // for decoders that rotate regardless (Chromium), the tag can be set to 1 in a copy
  const bytes = imageFixture('photo-exif6.jpg');
  assert.equal(exifOrientation(bytes), 6);
  const upright = withoutExifOrientation(bytes);
  assert.equal(exifOrientation(upright), 1);
  assert.equal(exifOrientation(bytes), 6, 'the input is left alone');
  assert.equal(upright.length, bytes.length);
  assert.equal(upright.findIndex((b, i) => b !== bytes[i]) >= 0, true);
  const plainBytes = imageFixture('photo-q95.jpg');
  assert.equal(exifOrientation(plainBytes), 1);
  assert.equal(withoutExifOrientation(plainBytes), plainBytes);
});

test('compositeOnWhite matches numpy running img2dataset\'s alpha matting', () => {
  const matted = compositeOnWhite(alpha);
  assert.equal(pixelDiff(matted, readNetpbm('alpha-on-white.ppm'), { alpha: true }).max, 0);
  // alpha 0 is white, alpha 255 keeps the colour
  assert.deepEqual(Array.from(matted.data.subarray(0, 4)), [255, 255, 255, 255]);
  const last = (alpha.width * alpha.height - 1) * 4;
  assert.deepEqual(Array.from(matted.data.subarray(last, last + 3)), Array.from(alpha.data.subarray(last, last + 3)));
});

test('encode → decode round trips: PNG and lossless WebP exact, JPEG at quality 95 composited on white', async () => {
  for (const image of [photo, alpha, pattern]) {
    const png = await codec.encode(image, { format: 'png' });
    assert.equal(sniffImageFormat(png), 'png');
    assert.equal(pixelDiff(await codec.decode(png, 'x.png'), image, { alpha: true }).max, 0);
    const webp = await codec.encode(image, { format: 'webp', lossless: true });
    assert.equal(sniffImageFormat(webp), 'webp');
    const back = await codec.decode(webp, 'x.webp');
    assert.equal(pixelDiff(back, image, { alpha: true, where: (p) => image.data[p * 4 + 3]! > 0 }).max, 0);
  }
  const jpeg = await codec.encode(photo, { format: 'jpeg' });
  assert.equal(sniffImageFormat(jpeg), 'jpeg');
  assert.equal(DEFAULT_JPEG_QUALITY, 95);
  // libjpeg scales the standard luminance table (first entry 16) by (200 − 2·95)% at quality 95
  assert.equal(firstLumaQuant(jpeg), 2);
  assert.equal(firstLumaQuant(await codec.encode(photo, { format: 'jpeg', quality: 50 })), 16);
  const d = pixelDiff(await codec.decode(jpeg, 'x.jpg'), photo);
  assert.ok(d.mean < 4.5 && d.psnr > 30, JSON.stringify(d));

  const jpegOfAlpha = await codec.decode(await codec.encode(alpha, { format: 'jpeg' }), 'alpha.jpg');
  const onWhite = pixelDiff(jpegOfAlpha, readNetpbm('alpha-on-white.ppm'), { alpha: true });
  assert.ok(onWhite.mean < 1.5 && onWhite.psnr > 40, JSON.stringify(onWhite));

  const lossy = await codec.encode(photo, { format: 'webp', quality: 80 });
  assert.ok(pixelDiff(await codec.decode(lossy, 'x.webp'), photo).psnr > 28);
  await assert.rejects(codec.encode(photo, { format: 'jpeg', quality: 0 }), RangeError);
  await assert.rejects(codec.encode({ width: 2, height: 2, data: new Uint8ClampedArray(3) }, { format: 'png' }), TypeError);
});
