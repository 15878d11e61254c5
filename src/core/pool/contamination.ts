/**
 * Pixel-level near-duplicate detection between a pool and an evaluation set (DataComp's rule: no test image
 * in the pool). Each picture becomes a fingerprint: the uniform border is trimmed (so padding, shifts and a
 * tinted background do not hide a copy), then the content is averaged down to a 16×16 RGB thumbnail and a
 * 64-bit difference hash. Two pictures match when the hashes differ in at most `maxHamming` bits (a cheap
 * prefilter) and the thumbnails' mean absolute difference is below `maxMad` (realdata.md §5: dHash ≤ 10,
 * MAD < 6; here MAD < 8 after trimming). Pure: works on decoded pixels from any decoder.
 */

export const THUMB = 16;
export const THUMB_BYTES = THUMB * THUMB * 3;

export interface Fingerprint {
  /** 64-bit dHash as two 32-bit halves. */
  hash: [number, number];
  /** 16×16 RGB thumbnail of the trimmed content. */
  thumb: Uint8Array;
}

export interface MatchOptions {
  maxHamming?: number;
  maxMad?: number;
}

export const DEFAULT_MAX_HAMMING = 10;
export const DEFAULT_MAX_MAD = 8;

const BG_TOLERANCE = 60;
/** A hash bit is set only for a clear step in brightness, so flat areas do not flip bits on JPEG noise. */
const HASH_STEP = 3;

/**
 * The content box inside `within`: the rows and columns where more than 3% of the pixels differ from `bg`
 * by more than the tolerance (isolated JPEG noise does not widen the box).
 */
function contentBox(px: Uint8Array, w: number, ch: number, within: [number, number, number, number], bg: [number, number, number]): [number, number, number, number] {
  const [r0, g0, b0] = bg;
  const [wx0, wy0, wx1, wy1] = within;
  const rows = new Uint32Array(wy1 - wy0);
  const cols = new Uint32Array(wx1 - wx0);
  for (let y = wy0; y < wy1; y++) {
    for (let x = wx0; x < wx1; x++) {
      const i = (y * w + x) * ch;
      const d = Math.abs(px[i]! - r0) + Math.abs(px[i + 1]! - g0) + Math.abs(px[i + 2]! - b0);
      if (d > BG_TOLERANCE) {
        rows[y - wy0]!++;
        cols[x - wx0]!++;
      }
    }
  }
  const minRow = Math.max(1, Math.floor(0.03 * (wx1 - wx0)));
  const minCol = Math.max(1, Math.floor(0.03 * (wy1 - wy0)));
  let y0 = 0, y1 = rows.length - 1, x0 = 0, x1 = cols.length - 1;
  while (y0 <= y1 && rows[y0]! < minRow) y0++;
  while (y1 >= y0 && rows[y1]! < minRow) y1--;
  while (x0 <= x1 && cols[x0]! < minCol) x0++;
  while (x1 >= x0 && cols[x1]! < minCol) x1--;
  return y0 > y1 || x0 > x1 ? within : [wx0 + x0, wy0 + y0, wx0 + x1 + 1, wy0 + y1 + 1];
}

/** Box-averages the region [x0,x1)×[y0,y1) onto a tw×th grid of RGB cells (area-weighted). */
function resample(px: Uint8Array, w: number, ch: number, box: [number, number, number, number], tw: number, th: number): Float64Array {
  const [x0, y0, x1, y1] = box;
  const bw = x1 - x0, bh = y1 - y0;
  const out = new Float64Array(tw * th * 3);
  for (let ty = 0; ty < th; ty++) {
    const sy0 = y0 + (ty * bh) / th, sy1 = y0 + ((ty + 1) * bh) / th;
    for (let tx = 0; tx < tw; tx++) {
      const sx0 = x0 + (tx * bw) / tw, sx1 = x0 + ((tx + 1) * bw) / tw;
      let r = 0, g = 0, b = 0, area = 0;
      for (let y = Math.floor(sy0); y < Math.ceil(sy1); y++) {
        const wy = Math.min(y + 1, sy1) - Math.max(y, sy0);
        if (wy <= 0) continue;
        for (let x = Math.floor(sx0); x < Math.ceil(sx1); x++) {
          const wx = Math.min(x + 1, sx1) - Math.max(x, sx0);
          if (wx <= 0) continue;
          const a = wx * wy;
          const i = (y * w + x) * ch;
          r += px[i]! * a;
          g += px[i + 1]! * a;
          b += px[i + 2]! * a;
          area += a;
        }
      }
      const o = (ty * tw + tx) * 3;
      out[o] = r / area;
      out[o + 1] = g / area;
      out[o + 2] = b / area;
    }
  }
  return out;
}

/**
 * The fingerprint of decoded pixels (`channels` 3 or 4, alpha composited on white first; at least RGB).
 */
export function fingerprint(pixels: Uint8Array, width: number, height: number, channels: number): Fingerprint {
  let px = pixels;
  let ch = channels;
  if (channels === 4 || channels === 2) {
    // composite on white, as img2dataset does
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      const a = pixels[i * channels + channels - 1]! / 255;
      for (let k = 0; k < 3; k++) {
        const v = pixels[i * channels + (channels === 2 ? 0 : k)]!;
        rgb[i * 3 + k] = Math.round(v * a + 255 * (1 - a));
      }
    }
    px = rgb;
    ch = 3;
  } else if (channels === 1) {
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = pixels[i]!;
    px = rgb;
    ch = 3;
  }
  // Trim the uniform border (padding, a shift, a tinted page); the background colour (a tint, JPEG noise
  // around white) becomes pure white, so that only the content is compared.
  const bgs: [number, number, number][] = [[px[0]!, px[1]!, px[2]!]];
  const box = contentBox(px, width, ch, [0, 0, width, height], bgs[0]!);
  {
    const norm = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      const j = i * ch;
      const isBg = bgs.some(([r0, g0, b0]) => Math.abs(px[j]! - r0) + Math.abs(px[j + 1]! - g0) + Math.abs(px[j + 2]! - b0) <= BG_TOLERANCE);
      if (isBg) norm[i * 3] = norm[i * 3 + 1] = norm[i * 3 + 2] = 255;
      else {
        norm[i * 3] = px[j]!;
        norm[i * 3 + 1] = px[j + 1]!;
        norm[i * 3 + 2] = px[j + 2]!;
      }
    }
    px = norm;
    ch = 3;
  }
  const t = resample(px, width, ch, box, THUMB, THUMB);
  const thumb = new Uint8Array(THUMB_BYTES);
  for (let i = 0; i < THUMB_BYTES; i++) thumb[i] = Math.round(t[i]!);
  const d = resample(px, width, ch, box, 9, 8);
  let hi = 0, lo = 0;
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      const a = d[(y * 9 + x) * 3]! * 0.299 + d[(y * 9 + x) * 3 + 1]! * 0.587 + d[(y * 9 + x) * 3 + 2]! * 0.114;
      const b = d[(y * 9 + x + 1) * 3]! * 0.299 + d[(y * 9 + x + 1) * 3 + 1]! * 0.587 + d[(y * 9 + x + 1) * 3 + 2]! * 0.114;
      const bit = b - a > HASH_STEP ? 1 : 0;
      const n = y * 8 + x;
      if (n < 32) hi = (hi | (bit << n)) >>> 0;
      else lo = (lo | (bit << (n - 32))) >>> 0;
    }
  }
  return { hash: [hi, lo], thumb };
}

/** Set bits of a 32-bit word. */
export function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export function hamming(a: Fingerprint, b: Fingerprint): number {
  return popcount((a.hash[0] ^ b.hash[0]) >>> 0) + popcount((a.hash[1] ^ b.hash[1]) >>> 0);
}

export function mad(a: Fingerprint, b: Fingerprint): number {
  let s = 0;
  for (let i = 0; i < THUMB_BYTES; i++) s += Math.abs(a.thumb[i]! - b.thumb[i]!);
  return s / THUMB_BYTES;
}

/** Serialized fingerprint: 8 bytes of hash, then the thumbnail (776 bytes). */
export function encodeFingerprint(f: Fingerprint): Uint8Array {
  const out = new Uint8Array(8 + THUMB_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, f.hash[0], true);
  v.setUint32(4, f.hash[1], true);
  out.set(f.thumb, 8);
  return out;
}

export function decodeFingerprint(bytes: Uint8Array): Fingerprint {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { hash: [v.getUint32(0, true), v.getUint32(4, true)], thumb: bytes.slice(8, 8 + THUMB_BYTES) };
}

export interface Match {
  /** Index into the pool list. */
  pool: number;
  /** Index into the evaluation list. */
  eval: number;
  hamming: number;
  mad: number;
}

/**
 * Every (pool, eval) pair that matches. Brute force over hashes (a popcount per pair: ~10⁸ pairs a second),
 * then the thumbnail test on the survivors.
 */
export function findMatches(pool: readonly Fingerprint[], evalSet: readonly Fingerprint[], options: MatchOptions = {}): Match[] {
  const maxH = options.maxHamming ?? DEFAULT_MAX_HAMMING;
  const maxM = options.maxMad ?? DEFAULT_MAX_MAD;
  const eh = new Uint32Array(evalSet.length * 2);
  evalSet.forEach((f, i) => {
    eh[i * 2] = f.hash[0];
    eh[i * 2 + 1] = f.hash[1];
  });
  const out: Match[] = [];
  for (let p = 0; p < pool.length; p++) {
    const a = pool[p]!.hash[0], b = pool[p]!.hash[1];
    for (let e = 0; e < evalSet.length; e++) {
      const h = popcount((a ^ eh[e * 2]!) >>> 0) + popcount((b ^ eh[e * 2 + 1]!) >>> 0);
      if (h > maxH) continue;
      const m = mad(pool[p]!, evalSet[e]!);
      if (m < maxM) out.push({ pool: p, eval: e, hamming: h, mad: Math.round(m * 100) / 100 });
    }
  }
  return out;
}
