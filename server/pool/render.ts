/**
 * Rendering one picture: source (SVG file, Iconify icon, sprite fragment, PNG) → artwork pixels at the
 * planned size (resvg, no system fonts) → composited on the planned canvas and background → JPEG or PNG
 * (sharp/libvips: the same bytes on every x86-64 machine). Runs inside render-worker.ts processes, because
 * resvg aborts the whole process on a few inputs.
 */
import { readFileSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import sharp from 'sharp';
import type { SourceRef } from '../../src/core/pool/catalog.ts';
import { artworkSize, type RenderSpec } from '../../src/core/pool/plan.ts';

/** Bumped when rendering changes, so that cached renders of an older renderer are not reused. */
export const RENDER_VERSION = 'render-v1 resvg-js@2.6.2 sharp@0.35 fingerprint-v2';

interface IconifyJson {
  icons: Record<string, { body: string; width?: number; height?: number; left?: number; top?: number }>;
  width?: number;
  height?: number;
  left?: number;
  top?: number;
}

const jsonCache = new Map<string, IconifyJson>();
const spriteCache = new Map<string, Map<string, string>>();

function iconifySvg(file: string, name: string): string {
  let set = jsonCache.get(file);
  if (!set) {
    set = JSON.parse(readFileSync(file, 'utf8')) as IconifyJson;
    jsonCache.set(file, set);
  }
  const icon = set.icons[name];
  if (!icon) throw new Error(`${file}: no icon ${name}`);
  const w = icon.width ?? set.width ?? 16;
  const h = icon.height ?? set.height ?? 16;
  const left = icon.left ?? set.left ?? 0;
  const top = icon.top ?? set.top ?? 0;
  return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${w}" height="${h}" viewBox="${left} ${top} ${w} ${h}" color="#000">${icon.body}</svg>`;
}

/** The nested `<svg id="…">` fragments of a sprite sheet (Noto's all.svg), by id. */
function spriteSvg(file: string, id: string): string {
  let map = spriteCache.get(file);
  if (!map) {
    map = new Map();
    const text = readFileSync(file, 'utf8');
    const re = /<svg\b[^>]*\bid="([^"]+)"[^>]*>[\s\S]*?<\/svg>/g;
    // fragments are not nested in one another, so the first </svg> after a start tag closes it
    for (const m of text.matchAll(re)) if (m.index !== 0) map.set(m[1]!, m[0]);
    spriteCache.set(file, map);
  }
  const frag = map.get(id);
  if (!frag) throw new Error(`${file}: no fragment ${id}`);
  return frag.includes('xmlns:xlink') ? frag : frag.replace('<svg ', '<svg xmlns:xlink="http://www.w3.org/1999/xlink" ');
}

export function sourceSvg(ref: SourceRef): string {
  switch (ref.type) {
    case 'svg-file': {
      const text = readFileSync(ref.file, 'utf8');
      return ref.fill ? text.replace(/<svg\b/, `<svg fill="${ref.fill}"`) : text;
    }
    case 'iconify':
      return iconifySvg(ref.file, ref.name);
    case 'sprite':
      return spriteSvg(ref.file, ref.id);
    case 'png-file':
      throw new Error('a PNG source has no SVG');
  }
}

/** Premultiplied RGBA pixels of the artwork, fitted to `width` × `height`. */
async function artwork(ref: SourceRef, width: number, height: number): Promise<{ data: Uint8Array; width: number; height: number; premultiplied: boolean }> {
  if (ref.type === 'png-file') {
    const { data, info } = await sharp(ref.file).resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, premultiplied: false };
  }
  const resvg = new Resvg(sourceSvg(ref), { fitTo: { mode: 'width', value: width }, font: { loadSystemFonts: false }, shapeRendering: 2, imageRendering: 0 });
  const img = resvg.render();
  return { data: img.pixels, width: img.width, height: img.height, premultiplied: true };
}

export interface Rendered {
  bytes: Uint8Array;
  width: number;
  height: number;
}

/** One picture, encoded as the spec says. */
export async function renderPicture(ref: SourceRef, aspect: number, spec: RenderSpec): Promise<Rendered> {
  const [aw, ah] = artworkSize(spec.size, aspect);
  const art = await artwork(ref, aw, ah);
  const [cw, ch] = spec.canvas ?? [art.width, art.height];
  const [ox, oy] = spec.offset ?? [0, 0];
  const out = Buffer.alloc(cw * ch * 3);
  const [br, bg, bb] = spec.bg;
  for (let i = 0; i < cw * ch; i++) {
    out[i * 3] = br;
    out[i * 3 + 1] = bg;
    out[i * 3 + 2] = bb;
  }
  const src = art.data;
  for (let y = 0; y < art.height; y++) {
    const ty = y + oy;
    if (ty < 0 || ty >= ch) continue;
    for (let x = 0; x < art.width; x++) {
      const tx = x + ox;
      if (tx < 0 || tx >= cw) continue;
      const s = (y * art.width + x) * 4;
      const a = src[s + 3]!;
      if (a === 0) continue;
      const d = (ty * cw + tx) * 3;
      const inv = 255 - a;
      for (let k = 0; k < 3; k++) {
        const fg = art.premultiplied ? src[s + k]! * 255 : src[s + k]! * a;
        out[d + k] = Math.min(255, Math.round((fg + inv * out[d + k]!) / 255));
      }
    }
  }
  const img = sharp(out, { raw: { width: cw, height: ch, channels: 3 } });
  const bytes = spec.format === 'png' ? await img.png({ compressionLevel: 9, adaptiveFiltering: false }).toBuffer() : await img.jpeg({ quality: spec.quality }).toBuffer();
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), width: cw, height: ch };
}

/** Width and height from a JPEG's SOF or a PNG's IHDR, without decoding. */
export function imageSize(bytes: Uint8Array): [number, number] {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) {
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return [v.getUint32(16), v.getUint32(20)];
  }
  let i = 2;
  while (i < bytes.length) {
    if (bytes[i] !== 0xff) throw new Error('not a JPEG');
    const marker = bytes[i + 1]!;
    const len = (bytes[i + 2]! << 8) | bytes[i + 3]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return [(bytes[i + 7]! << 8) | bytes[i + 8]!, (bytes[i + 5]! << 8) | bytes[i + 6]!];
    }
    i += 2 + len;
  }
  throw new Error('JPEG without a frame header');
}
