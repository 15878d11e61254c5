/**
 * The image codec for browsers and workers: the browser's own decoders through createImageBitmap, and
 * OffscreenCanvas.convertToBlob to encode. Core's header walk and pixel limit run before each decode.
 *
 * Decoding gives the stored pixels: no EXIF rotation, no colour-profile conversion, no premultiplied
 * alpha (as cv2.IMREAD_UNCHANGED and sharp give them). A 2D canvas keeps pixels premultiplied, so a
 * semi-transparent pixel's colour comes back rounded (exact where alpha is 255 or 0 only); JPEG
 * encoding composites on white first, so nothing of it is lost there.
 */
import { FormatError } from '../src/core/formats/errors.ts';
import {
  DEFAULT_IMAGE_LIMITS, IMAGE_MIME, checkImageSize, checkRgbaImage, compositeOnWhite, encodeQuality, withoutExifOrientation,
  type EncodeOptions, type ImageCodec, type ImageLimits, type RgbaImage,
} from '../src/core/formats/image.ts';

export class BrowserImageCodec implements ImageCodec {
  private readonly limits: ImageLimits;

  constructor(limits: Partial<ImageLimits> = {}) {
    this.limits = { ...DEFAULT_IMAGE_LIMITS, ...limits };
  }

  async decode(bytes: Uint8Array, name: string): Promise<RgbaImage> {
    const info = checkImageSize(bytes, name, this.limits);
    let bitmap: ImageBitmap;
    try {
      // Chromium rotates by EXIF whatever imageOrientation says, so the tag is set to 1 beforehand
      const blob = new Blob([ownBuffer(withoutExifOrientation(bytes))], { type: IMAGE_MIME[info.format] });
      bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    } catch (err) {
      throw new FormatError(name, `cannot decode ${info.format}: ${oneLine(err)}`);
    }
    try {
      const { width, height } = bitmap;
      if (width !== info.width || height !== info.height) {
        throw new FormatError(name, `${info.format} header says ${info.width}×${info.height}, the image data ${width}×${height}`);
      }
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
      if (!context) throw new Error('no 2D context for OffscreenCanvas');
      context.drawImage(bitmap, 0, 0);
      const pixels = context.getImageData(0, 0, width, height, { colorSpace: 'srgb' });
      return { width, height, data: pixels.data };
    } finally {
      bitmap.close();
    }
  }

  async encode(image: RgbaImage, options: EncodeOptions): Promise<Uint8Array> {
    checkRgbaImage(image);
    const source = options.format === 'jpeg' ? compositeOnWhite(image) : image;
    const canvas = new OffscreenCanvas(image.width, image.height);
    const context = canvas.getContext('2d');
    if (!context) throw new Error('no 2D context for OffscreenCanvas');
    context.putImageData(new ImageData(ownBuffer(source.data), image.width, image.height), 0, 0);
    const type = IMAGE_MIME[options.format];
    // Chromium's WebP encoder is lossless at quality 1.0
    const quality = options.format === 'png' ? undefined : options.lossless ? 1 : encodeQuality(options) / 100;
    const blob = await canvas.convertToBlob({ type, quality });
    // browsers fall back to PNG for a type they cannot write (Safari and WebP) rather than failing
    if (blob.type !== type) throw new Error(`this browser cannot encode ${options.format} (it wrote ${blob.type})`);
    return new Uint8Array(await blob.arrayBuffer());
  }
}

/** The view itself if it is backed by a plain ArrayBuffer, else a copy: Blob and ImageData refuse shared memory. */
function ownBuffer(view: Uint8Array): Uint8Array<ArrayBuffer>;
function ownBuffer(view: Uint8ClampedArray): Uint8ClampedArray<ArrayBuffer>;
function ownBuffer(view: Uint8Array | Uint8ClampedArray): Uint8Array<ArrayBuffer> | Uint8ClampedArray<ArrayBuffer> {
  return (view.buffer instanceof ArrayBuffer ? view : view.slice()) as Uint8Array<ArrayBuffer> | Uint8ClampedArray<ArrayBuffer>;
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).replace(/\s+/g, ' ').trim().slice(0, 200);
}
