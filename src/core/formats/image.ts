/**
 * Images: the codec interface the pipeline decodes and encodes through, format sniffing, and the safety
 * checks that run before any decoder sees the bytes.
 *
 * The platform decoders (sharp/libvips in Node: server/io/image-codec.ts; createImageBitmap and
 * OffscreenCanvas in browsers: workers/image-codec.ts) are fast but trusting: told "100000×100000" they
 * allocate 40 GB, and handed a cut-off JPEG they paint the missing part grey and say nothing. So
 * `readImageSize` reads the dimensions from the headers without decoding and walks the container
 * (JPEG markers, PNG chunks, GIF blocks, RIFF chunks) to its end, and `checkImageSize` refuses
 * decompression bombs by pixel count, before a decoder is called.
 *
 * Decoding follows img2dataset (which made the CommonPool shards): pixels as stored, EXIF orientation
 * not applied (cv2.IMREAD_UNCHANGED ignores it), no colour-profile conversion; and JPEG output has alpha
 * composited on white exactly as its resizer does, at quality 95 by default.
 */
import { FormatError } from './errors.ts';

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif';
export type EncodeFormat = 'jpeg' | 'png' | 'webp';

/** Decoded pixels: 8-bit RGBA, row-major, not premultiplied; data.length === width * height * 4. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

export interface EncodeOptions {
  format: EncodeFormat;
  /** 1–100 for JPEG and lossy WebP (default 95, img2dataset's); ignored for PNG. */
  quality?: number;
  /** WebP only: encode losslessly. */
  lossless?: boolean;
}

export interface ImageCodec {
  /** Decodes `bytes` (JPEG, PNG, WebP, or the first frame of a GIF); `name` is used in errors. */
  decode(bytes: Uint8Array, name: string): Promise<RgbaImage>;
  encode(image: RgbaImage, options: EncodeOptions): Promise<Uint8Array>;
}

export interface ImageLimits {
  /** Most pixels (width × height) an image may have to be decoded. */
  maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({ maxPixels: 64 * 2 ** 20 });

/** img2dataset's default JPEG quality (cv2.IMWRITE_JPEG_QUALITY 95), which the CommonPool shards used. */
export const DEFAULT_JPEG_QUALITY = 95;

export const IMAGE_MIME: Readonly<Record<ImageFormat, string>> = Object.freeze({
  jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif',
});

export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
  /** Whether the file can carry transparency (an alpha channel, a tRNS chunk, a VP8X alpha flag). */
  hasAlpha: boolean;
  /** Animated GIF/APNG/WebP: only the first frame is decoded. */
  animated: boolean;
}

/** The image format from the file's magic bytes, or undefined if it is none of the four. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return 'webp';
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return 'gif';
  return undefined;
}

/**
 * Width, height and format from the headers, without decoding. Also walks the file's structure to its
 * end, so a truncated or garbled file is a FormatError here rather than a half-grey picture later.
 */
export function readImageSize(bytes: Uint8Array, name: string): ImageInfo {
  const format = sniffImageFormat(bytes);
  const fail = (problem: string): never => {
    throw new FormatError(name, problem);
  };
  if (!format) {
    fail(bytes.length === 0 ? 'empty file, not an image' : 'not a JPEG, PNG, WebP or GIF image (unknown magic bytes)');
  }
  const info = format === 'jpeg' ? jpegInfo(bytes, fail)
    : format === 'png' ? pngInfo(bytes, fail)
      : format === 'webp' ? webpInfo(bytes, fail)
        : gifInfo(bytes, fail);
  if (!(info.width > 0 && info.height > 0)) fail(`${format} image of ${info.width}×${info.height} pixels`);
  return { format: format!, ...info };
}

/** readImageSize plus the decompression-bomb check: what every codec runs before decoding. */
export function checkImageSize(bytes: Uint8Array, name: string, limits: Partial<ImageLimits> = {}): ImageInfo {
  const { maxPixels } = { ...DEFAULT_IMAGE_LIMITS, ...limits };
  const info = readImageSize(bytes, name);
  const pixels = info.width * info.height;
  if (pixels > maxPixels) {
    const mp = (n: number) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 0)} megapixels`;
    throw new FormatError(name, `${info.width}×${info.height} ${info.format} image (${mp(pixels)}) exceeds the limit of ${mp(maxPixels)}`);
  }
  return info;
}

/** Throws a TypeError unless `image` is well formed (a programming error, not bad input). */
export function checkRgbaImage(image: RgbaImage): void {
  const { width, height, data } = image;
  if (!(Number.isSafeInteger(width) && Number.isSafeInteger(height) && width > 0 && height > 0)) {
    throw new TypeError(`RgbaImage of ${width}×${height} pixels`);
  }
  if (!(data instanceof Uint8ClampedArray) || data.length !== width * height * 4) {
    throw new TypeError(`RgbaImage of ${width}×${height} needs ${width * height * 4} bytes of RGBA, has ${data?.length}`);
  }
}

/**
 * Alpha composited on white, as img2dataset's resizer does before encoding
 * (`alpha / 255 * rgb + 255 - alpha`, then numpy's rint: round half to even). Alpha becomes 255.
 */
export function compositeOnWhite(image: RgbaImage): RgbaImage {
  const src = image.data;
  const out = new Uint8ClampedArray(src.length);
  for (let i = 0; i < src.length; i += 4) {
    const a = src[i + 3]!;
    if (a === 255) {
      out[i] = src[i]!;
      out[i + 1] = src[i + 1]!;
      out[i + 2] = src[i + 2]!;
    } else {
      const f = a / 255;
      const bg = 255 - a;
      out[i] = rint(f * src[i]! + bg);
      out[i + 1] = rint(f * src[i + 1]! + bg);
      out[i + 2] = rint(f * src[i + 2]! + bg);
    }
    out[i + 3] = 255;
  }
  return { width: image.width, height: image.height, data: out };
}

/** Whether any pixel is not fully opaque. */
export function hasTransparency(image: RgbaImage): boolean {
  const d = image.data;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 255) return true;
  return false;
}

/** The quality an encoder should use: the caller's, else img2dataset's 95; checked to lie in 1–100. */
export function encodeQuality(options: EncodeOptions): number {
  const q = options.quality ?? DEFAULT_JPEG_QUALITY;
  if (!(Number.isInteger(q) && q >= 1 && q <= 100)) throw new RangeError(`image quality ${q} is not an integer in 1–100`);
  return q;
}

/** The EXIF orientation (1–8) of a JPEG (APP1), PNG (eXIf) or WebP (EXIF chunk); 1 when there is none. */
export function exifOrientation(bytes: Uint8Array): number {
  const at = orientationField(bytes);
  return at ? at.read() : 1;
}

/**
 * `bytes` with the EXIF orientation set to 1 (a copy; `bytes` itself when there is nothing to change).
 * For decoders that cannot be told to keep the stored orientation: Chromium's createImageBitmap rotates
 * by EXIF even when asked for imageOrientation 'none', while cv2 (and so the shards) never does.
 */
export function withoutExifOrientation(bytes: Uint8Array): Uint8Array {
  const at = orientationField(bytes);
  if (!at || at.read() === 1) return bytes;
  const copy = bytes.slice();
  at.write(copy, 1);
  return copy;
}

interface OrientationField {
  read(): number;
  write(target: Uint8Array, value: number): void;
}

/** Where the Orientation tag (0x0112) of IFD0 sits, if the file has EXIF data that holds one. */
function orientationField(b: Uint8Array): OrientationField | undefined {
  const format = sniffImageFormat(b);
  let tiff = -1;
  let end = b.length;
  if (format === 'jpeg') {
    for (let pos = 2; pos + 4 <= b.length && b[pos] === 0xff;) {
      const marker = b[pos + 1]!;
      if (marker === 0xda || marker === 0xd9) break;
      const length = u16be(b, pos + 2);
      if (marker === 0xe1 && ascii(b, pos + 4, 6) === 'Exif\0\0') {
        tiff = pos + 10;
        end = Math.min(b.length, pos + 2 + length);
        break;
      }
      pos += 2 + length;
    }
  } else if (format === 'png') {
    for (let pos = 8; pos + 12 <= b.length;) {
      const length = u32be(b, pos);
      if (ascii(b, pos + 4, 4) === 'eXIf') {
        tiff = pos + 8;
        end = Math.min(b.length, tiff + length);
        break;
      }
      if (ascii(b, pos + 4, 4) === 'IDAT') break;
      pos += 12 + length;
    }
  } else if (format === 'webp') {
    for (let pos = 12; pos + 8 <= b.length;) {
      const size = u32le(b, pos + 4);
      if (ascii(b, pos, 4) === 'EXIF') {
        tiff = pos + 8 + (ascii(b, pos + 8, 6) === 'Exif\0\0' ? 6 : 0);
        end = Math.min(b.length, pos + 8 + size);
        break;
      }
      pos += 8 + size + (size & 1);
    }
  }
  if (tiff < 0 || tiff + 8 > end) return undefined;
  const little = ascii(b, tiff, 2) === 'II';
  if (!little && ascii(b, tiff, 2) !== 'MM') return undefined;
  const u16 = (src: Uint8Array, at: number) => (little ? u16le(src, at) : u16be(src, at));
  const u32 = (at: number) => (little ? u32le(b, at) : u32be(b, at));
  if (u16(b, tiff + 2) !== 42) return undefined;
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return undefined;
  const entries = u16(b, ifd);
  for (let i = 0; i < entries; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > end) return undefined;
    if (u16(b, entry) === 0x0112 && u16(b, entry + 2) === 3) {
      const at = entry + 8;
      return {
        read: () => u16(b, at),
        write: (target, value) => {
          target[at] = little ? value & 255 : value >> 8;
          target[at + 1] = little ? value >> 8 : value & 255;
        },
      };
    }
  }
  return undefined;
}

// ───────────────────────────── container walks ─────────────────────────────

type Fail = (problem: string) => never;
type Dimensions = Omit<ImageInfo, 'format'>;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function ascii(bytes: Uint8Array, at: number, length: number): string {
  let s = '';
  for (let i = at; i < at + length && i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

const u16be = (b: Uint8Array, at: number) => (b[at]! << 8) | b[at + 1]!;
const u16le = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);
const u24le = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
const u32be = (b: Uint8Array, at: number) => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
const u32le = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

/** numpy's rint: round half to even. */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** JPEG: markers from SOI to EOI; the size is the first SOFn's; entropy-coded data is skipped over. */
function jpegInfo(b: Uint8Array, fail: Fail): Dimensions {
  const n = b.length;
  let pos = 2;
  let size: { width: number; height: number } | undefined;
  let scans = 0;
  for (;;) {
    if (pos >= n) fail(scans ? 'truncated JPEG: the image data ends before the end-of-image marker' : 'truncated JPEG: no image data');
    if (b[pos] !== 0xff) fail(`damaged JPEG: expected a marker at byte ${pos}`);
    while (pos < n && b[pos] === 0xff) pos++; // fill bytes
    if (pos >= n) fail('truncated JPEG');
    const marker = b[pos++]!;
    if (marker === 0xd9) break; // EOI
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue; // standalone
    if (marker === 0xd8 || marker === 0x00) fail(`damaged JPEG: unexpected marker 0xFF${marker.toString(16).padStart(2, '0')}`);
    if (pos + 2 > n) fail('truncated JPEG: a segment header is cut off');
    const length = u16be(b, pos);
    if (length < 2 || pos + length > n) fail(`truncated JPEG: a segment of ${length} bytes runs past the end of the file`);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && !size) {
      if (length < 8) fail('damaged JPEG: short frame header');
      size = { height: u16be(b, pos + 3), width: u16be(b, pos + 5) };
      if (size.height === 0) fail('JPEG whose height is given later in a DNL marker is not supported');
    }
    pos += length;
    if (marker === 0xda) {
      if (!size) fail('damaged JPEG: image data before the frame header');
      scans++;
      // entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart marker
      for (;;) {
        pos = b.indexOf(0xff, pos);
        if (pos < 0 || pos + 1 >= n) fail('truncated JPEG: the image data ends before the end-of-image marker');
        const next = b[pos + 1]!;
        if (next === 0x00 || (next >= 0xd0 && next <= 0xd7) || next === 0xff) pos += next === 0xff ? 1 : 2;
        else break;
      }
    }
  }
  if (!size || !scans) fail('damaged JPEG: no frame or no image data');
  return { ...size!, hasAlpha: false, animated: false };
}

/** PNG: IHDR first, then every chunk must fit the file, up to IEND, with image data before it. */
function pngInfo(b: Uint8Array, fail: Fail): Dimensions {
  const n = b.length;
  if (n < 33 || u32be(b, 8) !== 13 || ascii(b, 12, 4) !== 'IHDR') fail(n < 33 ? 'truncated PNG header' : 'damaged PNG: IHDR is not the first chunk');
  const width = u32be(b, 16);
  const height = u32be(b, 20);
  const colorType = b[25]!;
  if (width > 0x7fffffff || height > 0x7fffffff) fail(`damaged PNG: ${width}×${height} pixels`);
  let hasAlpha = colorType === 4 || colorType === 6;
  let animated = false;
  let sawData = false;
  let pos = 8;
  for (;;) {
    if (pos + 12 > n) fail('truncated PNG: it ends before the IEND chunk');
    const length = u32be(b, pos);
    const type = ascii(b, pos + 4, 4);
    if (length > 0x7fffffff || pos + 12 + length > n) fail(`truncated PNG: the ${type} chunk runs past the end of the file`);
    if (!/^[A-Za-z]{4}$/.test(type)) fail(`damaged PNG: chunk type ${JSON.stringify(type)}`);
    if (type === 'IDAT') sawData = true;
    if (type === 'tRNS') hasAlpha = true;
    if (type === 'acTL') animated = true;
    pos += 12 + length;
    if (type === 'IEND') break;
  }
  if (!sawData) fail('damaged PNG: no image data');
  return { width, height, hasAlpha, animated };
}

/** WebP: the RIFF container must be whole; the size is in the VP8, VP8L or VP8X header. */
function webpInfo(b: Uint8Array, fail: Fail): Dimensions {
  const riffEnd = u32le(b, 4) + 8;
  if (riffEnd > b.length) fail(`truncated WebP: the RIFF container says ${riffEnd} bytes, the file has ${b.length}`);
  let dims: Dimensions | undefined;
  let sawImage = false;
  let pos = 12;
  while (pos < riffEnd) {
    if (pos + 8 > riffEnd) fail('truncated WebP: a chunk header is cut off');
    const fourcc = ascii(b, pos, 4);
    const size = u32le(b, pos + 4);
    const data = pos + 8;
    if (data + size > riffEnd) fail(`truncated WebP: the ${fourcc} chunk runs past the end of the container`);
    if (fourcc === 'VP8 ') {
      if (size < 10 || b[data + 3] !== 0x9d || b[data + 4] !== 0x01 || b[data + 5] !== 0x2a) fail('damaged WebP: bad VP8 frame header');
      if (b[data]! & 1) fail('damaged WebP: the VP8 frame is not a key frame');
      dims ??= { width: u16le(b, data + 6) & 0x3fff, height: u16le(b, data + 8) & 0x3fff, hasAlpha: false, animated: false };
      sawImage = true;
    } else if (fourcc === 'VP8L') {
      if (size < 5 || b[data] !== 0x2f) fail('damaged WebP: bad VP8L header');
      const bits = u32le(b, data + 1);
      dims ??= { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, hasAlpha: ((bits >>> 28) & 1) === 1, animated: false };
      sawImage = true;
    } else if (fourcc === 'VP8X') {
      if (pos !== 12 || size < 10) fail('damaged WebP: bad VP8X header');
      const flags = b[data]!;
      dims = { width: u24le(b, data + 4) + 1, height: u24le(b, data + 7) + 1, hasAlpha: (flags & 0x10) !== 0, animated: (flags & 0x02) !== 0 };
    } else if (fourcc === 'ANMF') {
      sawImage = true;
    }
    pos = data + size + (size & 1);
  }
  if (!dims || !sawImage) fail('damaged WebP: no image data');
  return dims!;
}

/** GIF: header, colour table, then blocks; the first image must be whole. */
function gifInfo(b: Uint8Array, fail: Fail): Dimensions {
  const n = b.length;
  if (n < 13) fail('truncated GIF header');
  const width = u16le(b, 6);
  const height = u16le(b, 8);
  const flags = b[10]!;
  let pos = 13 + (flags & 0x80 ? 3 * 2 ** ((flags & 7) + 1) : 0);
  let images = 0;
  let transparent = false;
  const subBlocks = () => {
    for (;;) {
      if (pos >= n) fail('truncated GIF: it ends inside a data block');
      const size = b[pos++]!;
      if (size === 0) return;
      pos += size;
    }
  };
  while (pos < n) {
    const introducer = b[pos++]!;
    if (introducer === 0x3b) break; // trailer
    if (introducer === 0x21) {
      if (pos >= n) fail('truncated GIF');
      const label = b[pos++]!;
      if (label === 0xf9 && pos + 1 < n && b[pos] === 4 && b[pos + 1]! & 1) transparent = true;
      subBlocks();
    } else if (introducer === 0x2c) {
      if (pos + 9 > n) fail('truncated GIF: an image descriptor is cut off');
      const local = b[pos + 8]!;
      pos += 9 + (local & 0x80 ? 3 * 2 ** ((local & 7) + 1) : 0);
      pos++; // LZW minimum code size
      subBlocks();
      images++;
    } else {
      fail(`damaged GIF: unexpected block 0x${introducer.toString(16)} at byte ${pos - 1}`);
    }
  }
  if (!images) fail('truncated GIF: no image data');
  return { width, height, hasAlpha: transparent, animated: images > 1 };
}
