/**
 * A contact sheet of pool samples with their captions and (from the ground truth) what kind of noise each
 * carries, for the README: `node --import tsx server/pool/contact-sheet.ts data/pool docs/pool-contact-sheet.png`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { readParquet } from '../../src/core/formats/parquet.ts';
import { readSamples } from '../../src/core/formats/webdataset.ts';
import { Rng } from '../../src/core/util/random.ts';
import { fileReadStream } from '../io/streams.ts';

const COLS = 6;
const CELL_W = 190;
const CELL_H = 190;
const IMG = 96;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function wrap(text: string, width: number, lines: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if ((line + ' ' + word).trim().length > width && line) {
      out.push(line);
      line = word;
    } else line = (line + ' ' + word).trim();
  }
  if (line) out.push(line);
  if (out.length > lines) {
    out.length = lines;
    out[lines - 1] = `${out[lines - 1]!.slice(0, width - 1)}…`;
  }
  return out.map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
}

export async function makeContactSheet(poolDir: string, outPng: string, n = 36): Promise<void> {
  const truth = await readParquet(readFileSync(join(poolDir, 'ground_truth', 'truth.parquet')), 'truth.parquet');
  const kinds = new Map<string, { caption: string; image: string; language: string; style: string }>();
  for (const r of truth.toArray()) {
    const o = r.toJSON() as Record<string, string>;
    kinds.set(o.uid!, { caption: o.caption_kind!, image: o.image_kind!, language: o.language!, style: o.style! });
  }
  // a varied sample: a few of every noise kind, the rest clean
  const samples: { jpg: Uint8Array; caption: string; uid: string; w: number; h: number }[] = [];
  for await (const s of readSamples(fileReadStream(join(poolDir, 'shards', '00000000.tar')), '00000000.tar')) {
    const json = JSON.parse(new TextDecoder().decode(s.files.get('json')!)) as { uid: string; caption: string; width: number; height: number };
    samples.push({ jpg: s.files.get('jpg')!, caption: json.caption, uid: json.uid, w: json.width, h: json.height });
    if (samples.length >= 3000) break;
  }
  const rng = new Rng(7);
  const want: [(k: { caption: string; image: string }) => boolean, number][] = [
    [(k) => k.caption === 'clean' && k.image === 'clean', 14], [(k) => k.caption === 'other_language', 6], [(k) => k.caption === 'identifier', 3],
    [(k) => k.caption === 'mismatched', 3], [(k) => k.caption === 'generic', 2], [(k) => k.image === 'tiny', 2], [(k) => k.image === 'odd_aspect', 2],
    [(k) => k.image === 'near_duplicate', 2], [(k) => k.image === 'package_copy', 2],
  ];
  const picked: typeof samples = [];
  for (const [pred, count] of want) {
    const pool = rng.shuffle(samples.filter((s) => pred(kinds.get(s.uid)!) && !picked.includes(s)));
    picked.push(...pool.slice(0, count));
  }
  const chosen = rng.shuffle(picked).slice(0, n);
  const rows = Math.ceil(chosen.length / COLS);
  const parts: string[] = [];
  chosen.forEach((s, i) => {
    const x = (i % COLS) * CELL_W;
    const y = Math.floor(i / COLS) * CELL_H;
    const k = kinds.get(s.uid)!;
    const scale = Math.min(IMG / s.w, IMG / s.h, s.w < 32 ? 1 : Infinity);
    const w = Math.round(s.w * Math.min(scale, 4));
    const h = Math.round(s.h * Math.min(scale, 4));
    const href = `data:image/jpeg;base64,${Buffer.from(s.jpg).toString('base64')}`;
    parts.push(`<rect x="${x + 4}" y="${y + 4}" width="${CELL_W - 8}" height="${CELL_H - 8}" fill="#fafafa" stroke="#ddd"/>`);
    parts.push(`<image x="${x + (CELL_W - w) / 2}" y="${y + 10 + (IMG - h) / 2}" width="${w}" height="${h}" href="${href}" image-rendering="optimizeSpeed"/>`);
    wrap(s.caption, 28, 3).forEach((line, j) => parts.push(`<text x="${x + CELL_W / 2}" y="${y + IMG + 28 + j * 14}" font-size="12" text-anchor="middle" fill="#111">${esc(line)}</text>`));
    const tag = [k.caption !== 'clean' ? k.caption.replace('_', ' ') : '', k.image !== 'clean' ? k.image.replace('_', ' ') : '', k.language !== 'en' && k.language !== 'zxx' ? k.language : ''].filter(Boolean).join(' · ') || 'clean';
    parts.push(`<text x="${x + CELL_W / 2}" y="${y + CELL_H - 12}" font-size="10" text-anchor="middle" fill="${tag === 'clean' ? '#2a7a2a' : '#b04a00'}">${esc(`${tag} — ${k.style}`)}</text>`);
  });
  const W = COLS * CELL_W;
  const H = rows * CELL_H;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, Noto Sans, sans-serif"><rect width="${W}" height="${H}" fill="#fff"/>${parts.join('')}</svg>`;
  const png = new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  writeFileSync(outPng, png);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [poolDir = 'data/pool', out = 'docs/pool-contact-sheet.png'] = process.argv.slice(2);
  await makeContactSheet(poolDir, out);
  console.log(`wrote ${out}`);
}
