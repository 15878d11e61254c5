/**
 * The plan of the embedded pool: which pictures, at which size and with what done to them, with which
 * caption, and the ground truth of every row. Pure and seeded: the same catalog gives the same plan on
 * every machine. Proportions are exact quotas (not coin flips), so the documented counts are the counts.
 */
import { Rng } from '../util/random.ts';
import type { Catalog, Concept, Source } from './catalog.ts';
import { captionLanguages, englishCaption, genericCaption, identifierCaption, localizedCaption } from './captions.ts';
import { POOL_SEED, poolUid, type CaptionKind, type Component, type ImageKind, type TruthRow } from './schema.ts';

/** How to make a row's picture from its source. */
export interface RenderSpec {
  /** Longest side of the artwork in pixels. */
  size: number;
  /** Canvas size; the artwork's own size when absent. */
  canvas?: [number, number];
  /** Top-left corner of the artwork on the canvas (may be negative: shifted and cropped). */
  offset?: [number, number];
  /** Background the alpha is composited on (img2dataset: white). */
  bg: [number, number, number];
  format: 'jpeg' | 'png';
  quality: number;
}

export interface PlannedRow {
  uid: string;
  url: string;
  source: Source;
  spec: RenderSpec;
  caption: string;
  truth: TruthRow;
}

/** Rows taken from each style (all when absent). Icons are sampled so that no set dominates. */
export const STYLE_QUOTAS: Record<string, number> = {
  'fluent-system': 5000, tabler: 2000, ph: 2000, solar: 2000, 'game-icons': 2000, healthicons: 2000, iconoir: 2000, carbon: 2000, ri: 2000,
  'twitter-png': 1500,
};

/** Caption kinds per component, as fractions of the component's rows (the rest is clean English). */
export const CAPTION_QUOTAS: Record<Component, Partial<Record<CaptionKind, number>>> = {
  emoji: { other_language: 0.3, identifier: 0.08, mismatched: 0.09, generic: 0.03 },
  flag: { other_language: 0.45, identifier: 0.08, mismatched: 0.09, generic: 0.03 },
  icon: { other_language: 0, identifier: 0.1, mismatched: 0.09, generic: 0.03 },
  logo: { other_language: 0.01, identifier: 0.08, mismatched: 0.09, generic: 0.03 },
};

/** Image noise, as fractions of the original (non-copy) rows. */
export const IMAGE_QUOTAS = { tiny: 0.04, odd_aspect: 0.03, exact_duplicate: 0.04, near_duplicate: 0.03 } as const;

/**
 * The size each picture "was published at" (longest side), the pool's `original_width/height`. CommonPool
 * stores downloads resized to at most 512 px and records the size before resizing; the embedded pool stores
 * its pictures smaller still (64–128 px, to keep the pool small) and records a plausible web size, so that
 * size rules such as basic_filter's `min(w, h) >= 200` act as they do on real data: they drop the small
 * publications (128 and 192 px, 20% here) and the tiny and odd-aspect noise, not every row.
 */
export const ORIGINAL_SIZES: [longest: number, weight: number][] = [[128, 0.08], [192, 0.12], [256, 0.2], [384, 0.15], [512, 0.25], [768, 0.1], [1024, 0.1]];

/**
 * A row's original size from its stored size. Drawn from the uid's own bits (not the plan's generator, so the
 * rest of the plan is unchanged); duplicates and copies use the uid of the row they repeat, so an exact
 * duplicate reports the same original size as its source. Tiny pictures and package copies (the 64 px PNGs
 * emoji-datasource ships) were published at the size they are stored at.
 */
export function originalSize(stored: [number, number], imageKind: ImageKind, sizeUid: string): [number, number] {
  if (imageKind === 'tiny' || imageKind === 'package_copy') return stored;
  let r = parseInt(sizeUid.slice(-8), 16) / 2 ** 32;
  let longest = ORIGINAL_SIZES[ORIGINAL_SIZES.length - 1]![0];
  for (const [size, weight] of ORIGINAL_SIZES) {
    r -= weight;
    if (r < 0) {
      longest = size;
      break;
    }
  }
  const scale = Math.max(1, longest / Math.max(stored[0], stored[1]));
  return [Math.max(1, Math.round(stored[0] * scale)), Math.max(1, Math.round(stored[1] * scale))];
}

/** Render sizes of clean pictures (longest side) and their shares. */
export const SIZES: [size: number, weight: number][] = [[64, 0.45], [96, 0.35], [128, 0.2]];

export interface PlanOptions {
  /** Keep this fraction of every style (tests build a few hundred rows). Default 1. */
  fraction?: number;
  seed?: number;
}

const WHITE: [number, number, number] = [255, 255, 255];

function pickSize(rng: Rng): number {
  let r = rng.next();
  for (const [size, w] of SIZES) {
    r -= w;
    if (r < 0) return size;
  }
  return SIZES[SIZES.length - 1]![0];
}

/** Takes exactly `n` of `items` (or all), keeping their order. */
function sample<T>(rng: Rng, items: T[], n: number): T[] {
  if (n >= items.length) return items.slice();
  const idx = rng.shuffle(items.map((_, i) => i)).slice(0, n).sort((a, b) => a - b);
  return idx.map((i) => items[i]!);
}

export interface Plan {
  rows: PlannedRow[];
  /** Counts for the report: rows per caption kind, image kind, component, style. */
  counts: Record<string, Record<string, number>>;
}

export function planPool(catalog: Catalog, options: PlanOptions = {}): Plan {
  const fraction = options.fraction ?? 1;
  const rng = new Rng(options.seed ?? POOL_SEED);
  const concept = (id: string): Concept => catalog.concepts.get(id)!;

  // 1. Which sources: every style, sampled to its quota, scaled by `fraction`.
  const byStyle = new Map<string, Source[]>();
  for (const s of catalog.sources) {
    const list = byStyle.get(s.style) ?? [];
    list.push(s);
    byStyle.set(s.style, list);
  }
  const originals: Source[] = [];
  const copies: Source[] = [];
  for (const [style, list] of [...byStyle].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const quota = Math.min(list.length, STYLE_QUOTAS[style] ?? list.length);
    const n = Math.max(1, Math.round(quota * fraction));
    const picked = sample(rng, list, n);
    (style === 'twitter-png' ? copies : originals).push(...picked);
  }

  // 2. Image noise of originals, by exact quotas over a shuffled order.
  const rows: { source: Source; spec: RenderSpec; imageKind: ImageKind; duplicateOf: number; variant: number }[] = [];
  const order = rng.shuffle(originals.map((_, i) => i));
  const nTiny = Math.round(IMAGE_QUOTAS.tiny * originals.length);
  const nOdd = Math.round(IMAGE_QUOTAS.odd_aspect * originals.length);
  const kindOf = new Map<number, ImageKind>();
  order.forEach((i, k) => kindOf.set(i, k < nTiny ? 'tiny' : k < nTiny + nOdd ? 'odd_aspect' : 'clean'));
  const uses = new Map<string, number>();
  const variantOf = (s: Source): number => {
    const v = (uses.get(s.url) ?? 0) + 1;
    uses.set(s.url, v);
    return v;
  };
  originals.forEach((source, i) => {
    const kind = kindOf.get(i)!;
    let spec: RenderSpec;
    if (kind === 'tiny') spec = { size: 8 + rng.int(9), bg: WHITE, format: 'jpeg', quality: 95 };
    else if (kind === 'odd_aspect') {
      const size = pickSize(rng);
      const [w, h] = artworkSize(size, source.aspect);
      const [rw, rh] = rng.pick([[4, 1], [1, 4], [3, 1], [1, 3]] as const);
      // pad the artwork to the odd aspect ratio, centred, as a banner or a tall strip would
      const cw = rw > rh ? Math.max(w, Math.round((h * rw) / rh)) : w;
      const ch = rh > rw ? Math.max(h, Math.round((w * rh) / rw)) : h;
      spec = { size, canvas: [cw, ch], offset: [Math.floor((cw - w) / 2), Math.floor((ch - h) / 2)], bg: WHITE, format: 'jpeg', quality: 95 };
    } else spec = { size: pickSize(rng), bg: WHITE, format: 'jpeg', quality: 95 };
    rows.push({ source, spec, imageKind: kind, duplicateOf: -1, variant: variantOf(source) });
  });

  // 3. Duplicates: exact (the same bytes again) and near (re-encoded, resized, shifted, re-tinted).
  const cleanRows = rows.map((r, i) => [r, i] as const).filter(([r]) => r.imageKind === 'clean');
  const nExact = Math.round(IMAGE_QUOTAS.exact_duplicate * originals.length);
  const nNear = Math.round(IMAGE_QUOTAS.near_duplicate * originals.length);
  for (let k = 0; k < nExact + nNear && cleanRows.length; k++) {
    const [orig, index] = cleanRows[rng.int(cleanRows.length)]!;
    if (k < nExact) {
      rows.push({ source: orig.source, spec: orig.spec, imageKind: 'exact_duplicate', duplicateOf: index, variant: variantOf(orig.source) });
    } else {
      const size = 48 + rng.int(25);
      const [w, h] = artworkSize(size, orig.source.aspect);
      const tint: [number, number, number] = [205 + rng.int(51), 205 + rng.int(51), 205 + rng.int(51)];
      const shift: [number, number] = [rng.int(7) - 3, rng.int(7) - 3];
      rows.push({
        source: orig.source, spec: { size, canvas: [w, h], offset: shift, bg: tint, format: 'jpeg', quality: 20 + rng.int(31) },
        imageKind: 'near_duplicate', duplicateOf: index, variant: variantOf(orig.source),
      });
    }
  }
  // 4. Package copies: the same artwork from another package (Twitter PNGs of Twemoji).
  const firstOfConcept = new Map<string, number>();
  rows.forEach((r, i) => {
    const key = `${r.source.style}|${r.source.concept}`;
    if (!firstOfConcept.has(key)) firstOfConcept.set(key, i);
  });
  for (const source of copies) {
    const orig = firstOfConcept.get(`${source.copyOf}|${source.concept}`) ?? -1;
    rows.push({ source, spec: { size: 64, bg: WHITE, format: 'jpeg', quality: 95 }, imageKind: 'package_copy', duplicateOf: orig, variant: variantOf(source) });
  }

  // 5. Urls and uids: the source's url, with `#n` for its n-th use.
  const urls = rows.map((r) => (r.variant === 1 ? r.source.url : `${r.source.url}#${r.variant}`));
  const uids = urls.map(poolUid);

  // 6. Caption kinds by exact quotas per component; each row's caption is made for that row alone.
  const flagEmoji = (c: Concept): Concept | undefined => {
    if (c.component !== 'flag' || !/^[A-Z]{2}$/.test(c.code)) return undefined;
    const hex = [...c.code].map((ch) => (0x1f1e6 + ch.charCodeAt(0) - 65).toString(16).toUpperCase()).join('-');
    return catalog.concepts.get(`emoji:${hex}`);
  };
  const captionKind = new Array<CaptionKind>(rows.length).fill('clean');
  for (const component of ['emoji', 'flag', 'icon', 'logo'] as const) {
    const members = rng.shuffle(rows.map((r, i) => (r.source.component === component ? i : -1)).filter((i) => i >= 0));
    const n = members.length;
    const quotas = CAPTION_QUOTAS[component];
    const taken = new Set<number>();
    for (const kind of ['other_language', 'identifier', 'mismatched', 'generic'] as const) {
      let want = Math.round((quotas[kind] ?? 0) * n);
      for (const i of members) {
        if (want <= 0) break;
        if (taken.has(i)) continue;
        if (kind === 'other_language') {
          const c = concept(rows[i]!.source.concept);
          if (!captionLanguages(c, flagEmoji(c)).length) continue;
        }
        captionKind[i] = kind;
        taken.add(i);
        want--;
      }
    }
  }
  const planned: PlannedRow[] = rows.map((r, i) => {
    const c = concept(r.source.concept);
    let kind = captionKind[i]!;
    let text: string;
    let language = 'en';
    let captionConcept = c;
    if (kind === 'other_language') {
      language = rng.pick(captionLanguages(c, flagEmoji(c)));
      text = localizedCaption(rng, c, language, flagEmoji(c));
    } else if (kind === 'identifier') {
      text = identifierCaption(rng, c, r.source);
      language = 'zxx';
    } else if (kind === 'generic') {
      text = genericCaption(rng);
    } else if (kind === 'mismatched') {
      // the caption of another picture: a random row's concept, in English or (a quarter) its own language
      let other = rows[rng.int(rows.length)]!;
      for (let t = 0; t < 8 && other.source.concept === c.id; t++) other = rows[rng.int(rows.length)]!;
      captionConcept = concept(other.source.concept);
      const langs = captionLanguages(captionConcept, flagEmoji(captionConcept));
      if (langs.length && rng.next() < 0.25) {
        language = rng.pick(langs);
        text = localizedCaption(rng, captionConcept, language, flagEmoji(captionConcept));
      } else text = englishCaption(rng, captionConcept, other.source);
    } else {
      text = englishCaption(rng, c, r.source);
    }
    if (!text) {
      kind = 'clean';
      language = 'en';
      text = englishCaption(rng, c, r.source);
    }
    const truth: TruthRow = {
      uid: uids[i]!,
      concept: c.id,
      caption_concept: captionConcept.id,
      component: c.component,
      style: r.source.style,
      language,
      caption_kind: kind,
      image_kind: r.imageKind,
      duplicate_of: r.duplicateOf >= 0 ? uids[r.duplicateOf]! : '',
      group: c.component === 'icon' ? r.source.category.toLowerCase() : c.group,
      subgroup: c.subgroup,
    };
    return { uid: uids[i]!, url: urls[i]!, source: r.source, spec: r.spec, caption: text, truth };
  });

  // 7. Web order: a seeded shuffle.
  rng.shuffle(planned);
  return { rows: planned, counts: countRows(planned.map((r) => r.truth)) };
}

/** Width and height of the artwork drawn with longest side `size`. */
export function artworkSize(size: number, aspect: number): [number, number] {
  return aspect >= 1 ? [size, Math.max(1, Math.round(size / aspect))] : [Math.max(1, Math.round(size * aspect)), size];
}

/** Rows per caption kind, image kind, component, style and language. */
export function countRows(truth: Iterable<TruthRow>): Record<string, Record<string, number>> {
  const counts: Record<string, Record<string, number>> = { caption_kind: {}, image_kind: {}, component: {}, style: {}, language: {} };
  const inc = (table: string, key: string) => {
    counts[table]![key] = (counts[table]![key] ?? 0) + 1;
  };
  for (const t of truth) {
    inc('caption_kind', t.caption_kind);
    inc('image_kind', t.image_kind);
    inc('component', t.component);
    inc('style', t.style);
    inc('language', t.language);
  }
  for (const table of Object.values(counts)) {
    const sorted = Object.entries(table).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const k of Object.keys(table)) delete table[k];
    for (const [k, v] of sorted) table[k] = v;
  }
  return counts;
}
