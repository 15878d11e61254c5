/**
 * The image codec for Node: sharp (libvips with libjpeg-turbo/mozjpeg, libpng, libwebp, cgif).
 * Every decode is preceded by core's header walk and pixel limit, and libvips' own pixel limit is set to
 * the same number as a second fence.
 */
import sharp from 'sharp';
import { FormatError } from '../../src/core/formats/errors.ts';
import {
  DEFAULT_IMAGE_LIMITS, checkImageSize, checkRgbaImage, compositeOnWhite, encodeQuality, hasTransparency,
  type EncodeOptions, type ImageCodec, type ImageLimits, type RgbaImage,
} from '../../src/core/formats/image.ts';

export class SharpImageCodec implements ImageCodec {
  private readonly limits: ImageLimits;

  constructor(limits: Partial<ImageLimits> = {}) {
    this.limits = { ...DEFAULT_IMAGE_LIMITS, ...limits };
  }

  async decode(bytes: Uint8Array, name: string): Promise<RgbaImage> {
    const info = checkImageSize(bytes, name, this.limits);
    let data: Buffer;
    let width: number;
    let height: number;
    try {
      // no autoOrient and no ICC transform: the stored pixels, as cv2.IMREAD_UNCHANGED gives them
      const out = await sharp(bytes, { failOn: 'error', limitInputPixels: this.limits.maxPixels, animated: false, autoOrient: false })
        .ensureAlpha()
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      data = out.data;
      ({ width, height } = out.info);
      if (out.info.channels !== 4) throw new Error(`${out.info.channels} channels`);
    } catch (err) {
      throw new FormatError(name, `cannot decode ${info.format}: ${oneLine(err)}`);
    }
    if (width !== info.width || height !== info.height) {
      throw new FormatError(name, `${info.format} header says ${info.width}×${info.height}, the image data ${width}×${height}`);
    }
    return { width, height, data: new Uint8ClampedArray(data.buffer, data.byteOffset, data.byteLength) };
  }

  async encode(image: RgbaImage, options: EncodeOptions): Promise<Uint8Array> {
    checkRgbaImage(image);
    const source = options.format === 'jpeg' ? compositeOnWhite(image) : image;
    const raw = { width: image.width, height: image.height, channels: 4 as const };
    let input = sharp(Buffer.from(source.data.buffer, source.data.byteOffset, source.data.byteLength), { raw });
    // an opaque picture is stored as RGB, as other encoders do
    if (options.format === 'jpeg' || !hasTransparency(image)) input = input.removeAlpha();
    let out: Buffer;
    switch (options.format) {
      case 'jpeg':
        // baseline, 4:2:0, standard Huffman tables: what cv2.imencode('.jpg') writes by default
        out = await input.jpeg({ quality: encodeQuality(options), chromaSubsampling: '4:2:0', optimiseCoding: false, mozjpeg: false }).toBuffer();
        break;
      case 'png':
        out = await input.png({ compressionLevel: 6 }).toBuffer();
        break;
      case 'webp':
        out = await input.webp(options.lossless ? { lossless: true } : { quality: encodeQuality(options) }).toBuffer();
        break;
      default:
        throw new TypeError(`cannot encode images as ${String((options as EncodeOptions).format)}`);
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim().slice(0, 200);
}
