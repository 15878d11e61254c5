/**
 * Caption rules of the embedded pool. Every caption is made from names the packages ship (CLDR/emojibase
 * labels and tags, country names, icon names and categories, brand names), in templates that mimic web
 * alt-text. Which kind of caption a row gets is decided by the plan (plan.ts) in documented proportions.
 */
import type { Rng } from '../util/random.ts';
import type { Concept, Source } from './catalog.ts';

export interface Caption {
  text: string;
  /** BCP 47 tag; `zxx` for identifiers. */
  language: string;
}

type Template = [weight: number, make: () => string | undefined];

/** Picks a template by weight; templates that cannot apply (undefined) are skipped, in order. */
function choose(rng: Rng, templates: Template[]): string {
  const total = templates.reduce((n, [w]) => n + w, 0);
  let r = rng.next() * total;
  let start = templates.length - 1;
  for (let i = 0; i < templates.length; i++) {
    r -= templates[i]![0];
    if (r < 0) {
      start = i;
      break;
    }
  }
  for (let k = 0; k < templates.length; k++) {
    const text = templates[(start + k) % templates.length]![1]();
    if (text !== undefined) return text;
  }
  throw new Error('caption: no template applies');
}

const titleCase = (s: string): string => s.replace(/(^|[\s(/-])(\p{Ll})/gu, (_, a: string, b: string) => a + b.toUpperCase());
const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** Display names of the styles, as a page would credit them. */
export const STYLE_LABELS: Record<string, string> = {
  'openmoji-color': 'OpenMoji', 'openmoji-black': 'OpenMoji', twemoji: 'Twemoji', 'twitter-png': 'Twitter',
  'fluent-emoji-flat': 'Fluent', 'fluent-emoji-high-contrast': 'Fluent', emojione: 'EmojiOne', 'emojione-monotone': 'EmojiOne',
  'emojione-v1': 'EmojiOne', 'streamline-emojis': 'Streamline', fxemoji: 'Firefox OS', 'fluent-system': 'Fluent UI', lucide: 'Lucide',
  tabler: 'Tabler', ph: 'Phosphor', solar: 'Solar', 'game-icons': 'Game Icons', healthicons: 'Health Icons', iconoir: 'Iconoir',
  carbon: 'Carbon', ri: 'Remix', 'simple-icons': 'Simple Icons',
};

/** A clean English caption of `concept`, drawn from its real names, tags and categories. */
export function englishCaption(rng: Rng, c: Concept, s: Source | undefined): string {
  const style = s ? STYLE_LABELS[s.style] ?? s.style : undefined;
  const tags = (n: number): string | undefined => {
    const t = [...new Set(c.tags)].filter((x) => x.toLowerCase() !== c.en.toLowerCase());
    if (!t.length) return undefined;
    return rng.shuffle(t.slice()).slice(0, Math.max(1, Math.min(n, t.length))).join(', ');
  };
  switch (c.component) {
    case 'emoji': {
      const label = c.en;
      const g = c.group || undefined;
      const sg = c.subgroup || undefined;
      return choose(rng, [
        [18, () => label],
        [12, () => `${label} emoji`],
        [12, () => { const t = tags(4); return t && `${label}, ${t}`; }],
        [12, () => g && `${titleCase(label)} emoji · ${titleCase(g)}`],
        [6, () => g && `${label} | ${g} emoji`],
        [10, () => sg && `${label} – ${sg}`],
        [6, () => g && sg && `${titleCase(g)} › ${capitalize(sg)} › ${label}`],
        [4, () => sg && `${sg} emoji: ${label}`],
        [5, () => `${label} icon`],
        [5, () => tags(5)],
        [4, () => `${label} ${rng.pick(['sticker', 'clipart', 'emoticon'])}`],
        [3, () => c.shortcodes.length ? `:${rng.pick(c.shortcodes)}: ${label}` : undefined],
        [3, () => style && `${label} – ${style} emoji`],
      ]);
    }
    case 'flag': {
      const name = c.alt.length && rng.next() < 0.25 ? rng.pick(c.alt) : c.en;
      return choose(rng, [
        [20, () => `flag of ${name}`],
        [18, () => `${name} flag`],
        [12, () => name],
        [10, () => `Flag: ${name}`],
        [8, () => `${name} national flag`],
        [8, () => `${name} flag icon`],
        [6, () => `the flag of ${name} (${c.code.split(' ')[0]})`],
        [6, () => `${name} flag vector`],
        [4, () => style && `${name} – ${style} flag`],
      ]);
    }
    case 'icon': {
      const words = c.en;
      const cat = s?.category ? s.category.toLowerCase() : undefined;
      return choose(rng, [
        [18, () => words],
        [22, () => `${words} icon`],
        [14, () => cat && `${words} icon, ${cat}`],
        [6, () => cat && `${capitalize(cat)} icon: ${words}`],
        [10, () => { const t = tags(4); return t && `${words}, ${t}`; }],
        [8, () => `${words} vector icon`],
        [8, () => `${words} ${rng.pick(['symbol', 'line icon', 'glyph', 'pictogram'])}`],
        [6, () => style && `${words} icon in ${style} style`],
        [4, () => `${capitalize(words)} - free icon`],
      ]);
    }
    case 'logo': {
      const name = c.alt.length && rng.next() < 0.15 ? rng.pick(c.alt) : c.en;
      return choose(rng, [
        [35, () => `${name} logo`],
        [20, () => name],
        [15, () => `${name} icon`],
        [8, () => `${name} logo png`],
        [8, () => `${name} brand logo`],
        [7, () => `logo of ${name}`],
        [7, () => `${name} logo vector`],
      ]);
    }
  }
}

/** Languages in which `concept` has a name of its own (never English). */
export function captionLanguages(c: Concept, flagEmoji?: Concept): string[] {
  const langs = new Set(Object.keys(c.names));
  if (flagEmoji) for (const l of Object.keys(flagEmoji.names)) langs.add(l);
  return [...langs].filter((l) => l !== 'en' && !l.startsWith('en-')).sort();
}

/**
 * A caption in language `lang`, from the localized names (and localized group names) of the concept.
 * For flags, `flagEmoji` is the concept of the flag emoji, whose localized CLDR label reads "Flagge: Frankreich".
 */
export function localizedCaption(rng: Rng, c: Concept, lang: string, flagEmoji?: Concept): string {
  const name = c.names[lang];
  switch (c.component) {
    case 'emoji': {
      const g = c.groupNames[lang];
      const sg = c.subgroupNames[lang];
      return choose(rng, [
        [50, () => name],
        [18, () => name && g && `${name} – ${g}`],
        [14, () => name && sg && `${name} · ${sg}`],
        [18, () => name && `${name} ${emojiChar(c.code)}`],
      ]);
    }
    case 'flag': {
      const label = flagEmoji?.names[lang];
      return choose(rng, [
        [50, () => label],
        [50, () => name],
      ]);
    }
    default:
      return name!;
  }
}

/** The emoji character(s) of a hexcode (the FE0F-free form). */
export function emojiChar(hex: string): string {
  if (!/^[0-9A-F]{4,6}(-[0-9A-F]{4,6})*$/.test(hex)) return '';
  return String.fromCodePoint(...hex.split('-').map((h) => parseInt(h, 16)));
}

/** A file name, shortcode or set name: what a page shows when nobody wrote alt-text. */
export function identifierCaption(rng: Rng, c: Concept, s: Source): string {
  const num = (): string => String(1000 + rng.int(9000));
  const lower = c.code.toLowerCase();
  switch (c.component) {
    case 'emoji':
      return choose(rng, [
        [30, () => s.fileName],
        [15, () => /^[0-9a-f-]+$/.test(lower) ? `emoji_u${lower.replace(/-/g, '_')}.png` : undefined],
        [20, () => c.shortcodes.length ? `:${rng.pick(c.shortcodes)}:` : undefined],
        [15, () => `IMG_${num()}.png`],
        [10, () => /^[0-9a-f-]+$/.test(lower) ? `u${c.code}` : undefined],
        [10, () => `emoji-${num()}-64x64.png`],
      ]);
    case 'flag':
      return choose(rng, [
        [30, () => s.fileName],
        [20, () => `flag-${lower.split(' ')[0]}-4x3.svg`],
        [20, () => `IMG_${num()}.jpg`],
        [15, () => `flag_${c.code.split(' ')[0]}.png`],
        [15, () => `${lower.split(' ')[0]}.png`],
      ]);
    case 'icon':
      return choose(rng, [
        [35, () => s.fileName],
        [25, () => s.setName],
        [15, () => `ic_${c.en.replace(/\s+/g, '_')}_24px.svg`],
        [15, () => `IMG_${num()}.png`],
        [10, () => `icon-${num()}.svg`],
      ]);
    case 'logo':
      return choose(rng, [
        [35, () => s.fileName],
        [25, () => `si-${c.code}`],
        [20, () => `logo_${c.code}.png`],
        [20, () => `IMG_${num()}.png`],
      ]);
  }
}

/** Generic alt-text that names no concept. */
export const GENERIC_CAPTIONS = [
  'emoji', 'icon', 'image', 'logo', 'clipart', 'free icon', 'vector illustration', 'download', 'untitled', 'picture',
  'graphic', 'symbol', 'sticker', 'png', 'icon set', 'flat design', 'cute emoji', 'image description', 'thumbnail', 'click here',
];

export function genericCaption(rng: Rng): string {
  return rng.pick(GENERIC_CAPTIONS);
}
