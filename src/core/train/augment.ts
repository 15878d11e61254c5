/**
 * Image preprocessing exactly as open_clip 2.16.1 + torchvision + Pillow do it on PIL images:
 * - training (`image_transform(is_train=True)`): RandomResizedCrop(size, scale (0.9, 1), ratio (3/4, 4/3),
 *   BICUBIC) on the RGB image (open_clip decodes training images with "pilrgb"), ToTensor, Normalize;
 * - evaluation: Resize(size) of the short side (BICUBIC), CenterCrop(size), convert RGB, ToTensor, Normalize.
 *
 * Bicubic is Pillow's `ImagingResample` for 8-bit images (libImaging/Resample.c), re-implemented from its
 * semantics: Keys cubic with a = −0.5, support 2 scaled by the downscale factor (so downscaling is
 * antialiased, upscaling is plain bicubic), coefficients normalised per output pixel, converted to 22-bit
 * fixed point, horizontal pass then vertical pass, each rounding and clipping to 8 bits. RGBA images with
 * transparency are resized premultiplied, as Pillow does for mode RGBA (evaluation only: training
 * images lose alpha at decoding, as "pilrgb" does). Palette images, which Pillow resizes with NEAREST, arrive
 * here already decoded to RGBA and are resized bicubically — a documented difference.
 *
 * ToTensor and Normalize are computed in float32 in torch's order: x = v / 255, (x − mean) / std.
 */
import type { RgbaImage } from '../formats/image.ts';
import type { Rng } from '../util/random.ts';

/** OpenAI CLIP's normalisation (open_clip OPENAI_DATASET_MEAN / _STD). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** An 8-bit image with 3 (RGB) or 4 (RGBA / premultiplied RGBa) interleaved channels. */
export interface Pixels {
  width: number;
  height: number;
  channels: 3 | 4;
  data: Uint8Array;
}

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 2 ** PRECISION_BITS;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** Per output pixel: first input pixel, number of input pixels. */
  bounds: Int32Array;
  /** Fixed-point weights, outSize × ksize. */
  kk: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis. */
function precomputeCoeffs(inSize: number, in0: number, in1: number, outSize: number): Coeffs {
  const scale = (in1 - in0) / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    // C's (int) cast truncates toward zero
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= ONE * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / ONE);
}

/**
 * Pillow's `Image.resize((outW, outH), BICUBIC, box)` of an 8-bit image (all channels alike).
 * `box` = [x0, y0, x1, y1] in source pixels, default the whole image.
 */
export function resampleBicubic(src: Pixels, outW: number, outH: number, box: readonly [number, number, number, number] = [0, 0, src.width, src.height]): Pixels {
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) throw new RangeError(`resize to ${outW}×${outH}`);
  const { width: inW, height: inH, channels: ch } = src;
  const needH = outW !== inW || box[0] !== 0 || box[2] !== outW;
  const needV = outH !== inH || box[1] !== 0 || box[3] !== outH;
  const horiz = precomputeCoeffs(inW, box[0], box[2], outW);
  const vert = precomputeCoeffs(inH, box[1], box[3], outH);
  let cur = src;
  let vBounds = vert.bounds;
  if (needH) {
    // only the rows the vertical pass reads
    const first = vert.bounds[0]!;
    const last = vert.bounds[(outH - 1) * 2]! + vert.bounds[(outH - 1) * 2 + 1]!;
    vBounds = vert.bounds.slice();
    for (let i = 0; i < outH; i++) vBounds[i * 2]! -= first;
    const rows = last - first;
    const out = new Uint8Array(outW * rows * ch);
    const { ksize, bounds, kk } = horiz;
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + first) * inW * ch;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2]!;
        const xmax = bounds[xx * 2 + 1]!;
        const kb = xx * ksize;
        for (let c = 0; c < ch; c++) {
          let ss = HALF;
          for (let x = 0; x < xmax; x++) ss += src.data[rowIn + (x + xmin) * ch + c]! * kk[kb + x]!;
          out[(y * outW + xx) * ch + c] = clip8(ss);
        }
      }
    }
    cur = { width: outW, height: rows, channels: ch, data: out };
  }
  if (needV) {
    const w = cur.width;
    const out = new Uint8Array(w * outH * ch);
    const { ksize, kk } = vert;
    for (let yy = 0; yy < outH; yy++) {
      const ymin = vBounds[yy * 2]!;
      const ymax = vBounds[yy * 2 + 1]!;
      const kb = yy * ksize;
      for (let xx = 0; xx < w; xx++) {
        for (let c = 0; c < ch; c++) {
          let ss = HALF;
          for (let y = 0; y < ymax; y++) ss += cur.data[((y + ymin) * w + xx) * ch + c]! * kk[kb + y]!;
          out[(yy * w + xx) * ch + c] = clip8(ss);
        }
      }
    }
    cur = { width: w, height: outH, channels: ch, data: out };
  }
  return cur === src ? { ...src, data: src.data.slice() } : cur;
}

/** PIL `convert('RGB')` of decoded RGBA: alpha is dropped (not composited). */
export function rgbOf(image: RgbaImage): Pixels {
  const n = image.width * image.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = image.data[i * 4]!;
    out[i * 3 + 1] = image.data[i * 4 + 1]!;
    out[i * 3 + 2] = image.data[i * 4 + 2]!;
  }
  return { width: image.width, height: image.height, channels: 3, data: out };
}

/** Pillow's RGBA → RGBa: each colour × alpha / 255, rounded as MULDIV255. */
function premultiply(image: RgbaImage): Pixels {
  const d = image.data;
  const out = new Uint8Array(d.length);
  for (let i = 0; i < d.length; i += 4) {
    const a = d[i + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = d[i + c]! * a + 128;
      out[i + c] = ((t >> 8) + t) >> 8;
    }
    out[i + 3] = a;
  }
  return { width: image.width, height: image.height, channels: 4, data: out };
}

/** Pillow's RGBa → RGBA, then the alpha dropped (convert('RGB')). */
function unpremultiplyToRgb(p: Pixels): Pixels {
  const n = p.width * p.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = p.data[i * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const v = p.data[i * 4 + c]!;
      out[i * 3 + c] = a === 255 || a === 0 ? v : Math.min(255, Math.floor((255 * v) / a));
    }
  }
  return { width: p.width, height: p.height, channels: 3, data: out };
}

function isOpaque(image: RgbaImage): boolean {
  for (let i = 3; i < image.data.length; i += 4) if (image.data[i] !== 255) return false;
  return true;
}

/** A copy of the rectangle (PIL `crop`); the rectangle must lie inside the image. */
export function cropPixels(p: Pixels, top: number, left: number, height: number, width: number): Pixels {
  if (top < 0 || left < 0 || top + height > p.height || left + width > p.width || height <= 0 || width <= 0) {
    throw new RangeError(`crop ${width}×${height}+${left}+${top} outside a ${p.width}×${p.height} image`);
  }
  const ch = p.channels;
  const out = new Uint8Array(width * height * ch);
  for (let y = 0; y < height; y++) out.set(p.data.subarray(((top + y) * p.width + left) * ch, ((top + y) * p.width + left + width) * ch), y * width * ch);
  return { width, height, channels: ch, data: out };
}

/** Python's round() of a float: half to even. */
export function pyRound(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision Resize(size) with an int: the short side becomes `size`, the long one int(size · long / short). */
export function shortSideSize(width: number, height: number, size: number): [width: number, height: number] {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [size, newLong] : [newLong, size];
}

/** torchvision center_crop offsets: int(round((H − h) / 2)), int(round((W − w) / 2)). */
export function centerCropOffsets(width: number, height: number, size: number): [top: number, left: number] {
  return [pyRound((height - size) / 2), pyRound((width - size) / 2)];
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** torchvision RandomResizedCrop.get_params (10 tries, then the centre crop fallback), with our Rng. */
export function randomResizedCropBox(width: number, height: number, rng: Rng, scale: readonly [number, number] = [0.9, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): CropBox {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * rng.next());
    const aspect = Math.exp(logRatio[0] + (logRatio[1] - logRatio[0]) * rng.next());
    const w = pyRound(Math.sqrt(targetArea * aspect));
    const h = pyRound(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(...ratio)) {
    w = width;
    h = pyRound(w / Math.min(...ratio));
  } else if (inRatio > Math.max(...ratio)) {
    h = height;
    w = pyRound(h * Math.max(...ratio));
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

const MEAN32 = CLIP_MEAN.map(Math.fround);
const STD32 = CLIP_STD.map(Math.fround);

/**
 * ToTensor + Normalize of every byte value as a table: PIXEL_TABLE[c·256 + v] = fround(fround(v / 255) − mean_c)
 * / std_c, in float32. Training uploads uint8 pixels and maps them through this table on the GPU
 * (Backend.pixels), which gives the very floats normalizeInto writes.
 */
export const PIXEL_TABLE: Float32Array = (() => {
  const t = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) t[c * 256 + v] = Math.fround(Math.fround(v / 255) - MEAN32[c]!) / STD32[c]!;
  return t;
})();

/** ToTensor + Normalize into `out` (CHW float32) at `offset`: fround(fround(v / 255) − mean) / std, in float32. */
export function normalizeInto(p: Pixels, out: Float32Array, offset = 0): void {
  if (p.channels !== 3) throw new TypeError('normalizeInto needs an RGB image');
  const plane = p.width * p.height;
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = PIXEL_TABLE[c * 256 + p.data[i * 3 + c]!]!;
  }
}

/** The RGB pixels as CHW bytes into `out` at `offset` (what ToTensor reads, before the division). */
export function chwInto(p: Pixels, out: Uint8Array, offset = 0): void {
  if (p.channels !== 3) throw new TypeError('chwInto needs an RGB image');
  const plane = p.width * p.height;
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = p.data[i * 3 + c]!;
  }
}

/** CHW bytes (any number of images) → the normalised CHW float32 values, through PIXEL_TABLE. */
export function normalizeChw(bytes: Uint8Array, plane: number, out = new Float32Array(bytes.length)): Float32Array {
  for (let e = 0; e < bytes.length; e++) out[e] = PIXEL_TABLE[(Math.floor(e / plane) % 3) * 256 + bytes[e]!]!;
  return out;
}

/** RandomResizedCrop(size, scale (0.9, 1), BICUBIC) of the RGB image: size × size RGB pixels. */
export function trainCrop(image: RgbaImage, size: number, rng: Rng): Pixels {
  const rgb = rgbOf(image);
  const box = randomResizedCropBox(rgb.width, rgb.height, rng);
  return resampleBicubic(cropPixels(rgb, box.top, box.left, box.height, box.width), size, size);
}

/** Resize(size, BICUBIC) of the short side + CenterCrop(size), then RGB: size × size RGB pixels. */
export function evalCrop(image: RgbaImage, size: number): Pixels {
  const [w, h] = shortSideSize(image.width, image.height, size);
  const opaque = isOpaque(image);
  // Pillow resizes RGBA premultiplied; an opaque image gives the same pixels as its RGB form
  const resized = opaque ? resampleBicubic(rgbOf(image), w, h) : unpremultiplyToRgb(resampleBicubic(premultiply(image), w, h));
  const [top, left] = centerCropOffsets(resized.width, resized.height, size);
  return cropPixels(resized, top, left, size, size);
}

/** The training transform into a CHW float32 tensor (3 × size × size) at `offset` of `out`. */
export function trainTransformInto(image: RgbaImage, size: number, rng: Rng, out: Float32Array, offset = 0): void {
  normalizeInto(trainCrop(image, size, rng), out, offset);
}

/** The training transform up to ToTensor: the crop's CHW bytes (3 × size × size) at `offset` of `out`. */
export function trainPixelsInto(image: RgbaImage, size: number, rng: Rng, out: Uint8Array, offset = 0): void {
  chwInto(trainCrop(image, size, rng), out, offset);
}

/** The evaluation transform into a CHW float32 tensor (3 × size × size) at `offset` of `out`. */
export function evalTransformInto(image: RgbaImage, size: number, out: Float32Array, offset = 0): void {
  normalizeInto(evalCrop(image, size), out, offset);
}
