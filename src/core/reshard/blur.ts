/**
 * Face blurring as resharder.py's `--apply-blur` does it: img2dataset's BoundingBoxBlurrer (boxes
 * `[x0, y0, x1, y1]` in [0, 1], "albumentations" format) on the decoded picture, with albumentations'
 * gaussian_blur = cv2.GaussianBlur(ksize × ksize, sigmaX = sigma) in float32, border BORDER_REFLECT_101.
 *
 * Followed to the letter, quirks included: box corners are `int()` (truncation toward zero) of the scaled
 * coordinates; the grown box is used as a numpy slice, so a negative start counts from the far edge (and
 * usually makes the slice empty) while an end past the edge is clipped; sigma comes from the largest box
 * of the picture and applies to all of them; the result is truncated, not rounded, to uint8.
 *
 * Not bit-exact with OpenCV: its separable filter's summation order (symmetric kernels, SIMD) differs from
 * the plain order here, so a channel value can differ by one where a float lands next to an integer.
 */
import type { RgbaImage } from '../formats/image.ts';

/** cv2.getGaussianKernel(ksize, sigma, CV_32F): computed in double, normalised, stored as float32. */
export function gaussianKernel(ksize: number, sigma: number): Float32Array {
  const s = sigma > 0 ? sigma : ((ksize - 1) * 0.5 - 1) * 0.3 + 0.8;
  const scale2 = -0.5 / (s * s);
  const values = new Float64Array(ksize);
  let sum = 0;
  for (let i = 0; i < ksize; i++) {
    const x = i - (ksize - 1) * 0.5;
    values[i] = Math.exp(scale2 * x * x);
    sum += values[i]!;
  }
  const out = new Float32Array(ksize);
  for (let i = 0; i < ksize; i++) out[i] = values[i]! / sum;
  return out;
}

/** cv2.borderInterpolate(p, len, BORDER_REFLECT_101). */
export function reflect101(p: number, len: number): number {
  if (p >= 0 && p < len) return p;
  if (len === 1) return 0;
  do {
    p = p < 0 ? -p : 2 * len - 2 - p;
  } while (p < 0 || p >= len);
  return p;
}

/** A separable float32 Gaussian blur of `planes` (each width × height), in place. */
function gaussianBlurPlanes(planes: Float32Array[], width: number, height: number, kernel: Float32Array): void {
  const r = (kernel.length - 1) / 2;
  const xs = Int32Array.from({ length: width + 2 * r }, (_, i) => reflect101(i - r, width));
  const ys = Int32Array.from({ length: height + 2 * r }, (_, i) => reflect101(i - r, height));
  const rows = new Float32Array(width * height);
  for (const plane of planes) {
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) {
        let acc = 0;
        for (let k = 0; k < kernel.length; k++) acc = Math.fround(acc + Math.fround(kernel[k]! * plane[row + xs[x + k]!]!));
        rows[row + x] = acc;
      }
    }
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let acc = 0;
        for (let k = 0; k < kernel.length; k++) acc = Math.fround(acc + Math.fround(kernel[k]! * rows[ys[y + k]! * width + x]!));
        plane[y * width + x] = acc;
      }
    }
  }
}

/** The [start, end) a numpy slice `a[start:stop]` covers on an axis of `len`. */
function pySlice(start: number, stop: number, len: number): [number, number] {
  const norm = (i: number) => (i < 0 ? Math.max(0, i + len) : Math.min(i, len));
  const a = norm(start);
  return [a, Math.max(a, norm(stop))];
}

/**
 * BoundingBoxBlurrer()(img, boxes) on an RGBA picture (the colour channels; alpha is kept as it is, since
 * cv2 decodes a JPEG without one). Returns the input itself when there is no box, as the blurrer does.
 */
export function blurBoundingBoxes(image: RgbaImage, boxes: readonly (readonly number[])[]): RgbaImage {
  if (!boxes.length) return image;
  const { width, height, data } = image;
  const n = width * height;
  const mask = new Float32Array(n);
  let maxDiagonal = 0;
  for (const box of boxes) {
    if (box.length < 4) throw new RangeError(`a face box has ${box.length} numbers, not 4`);
    const b = [Math.trunc(box[0]! * width), Math.trunc(box[1]! * height), Math.trunc(box[2]! * width), Math.trunc(box[3]! * height)];
    const diagonal = Math.max(b[2]! - b[0]!, b[3]! - b[1]!);
    maxDiagonal = Math.max(maxDiagonal, diagonal);
    const [x0, x1] = pySlice(Math.trunc(b[0]! - 0.1 * diagonal), Math.trunc(b[2]! + 0.1 * diagonal), width);
    const [y0, y1] = pySlice(Math.trunc(b[1]! - 0.1 * diagonal), Math.trunc(b[3]! + 0.1 * diagonal), height);
    for (let y = y0; y < y1; y++) mask.fill(1, y * width + x0, y * width + x1);
  }
  const sigma = 0.1 * maxDiagonal;
  const ksize = 2 * Math.ceil(4 * sigma) + 1;
  const kernel = gaussianKernel(ksize, sigma);

  const planes = [0, 1, 2].map((c) => {
    const plane = new Float32Array(n);
    for (let i = 0; i < n; i++) plane[i] = Math.fround(data[i * 4 + c]! / 255);
    return plane;
  });
  const original = planes.map((p) => p.slice());
  // the mask is the same in every channel: blur it once
  const blurredMask = mask.slice();
  gaussianBlurPlanes([blurredMask, ...planes], width, height, kernel);

  const out = new Uint8ClampedArray(data);
  for (let c = 0; c < 3; c++) {
    const img = original[c]!;
    const blurred = planes[c]!;
    for (let i = 0; i < n; i++) {
      const m = blurredMask[i]!;
      const v = Math.fround(Math.fround(img[i]! * Math.fround(1 - m)) + Math.fround(blurred[i]! * m));
      // numpy's astype(uint8) truncates; values stay in [0, 255] since the weights sum to one
      out[i * 4 + c] = Math.trunc(Math.fround(v * 255));
    }
  }
  return { width, height, data: out };
}
