/**
 * Reads the pinned packages into a Catalog: emoji (emojibase + CLDR names), flags (i18n-iso-countries),
 * icons (set names, Lucide tags, Iconify categories) and logos (simple-icons), and the sources of every
 * pool style. The evaluation sources (Noto, Circle Flags, MDI) are read by eval-sources.ts, never here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Catalog, Concept, Source } from '../../src/core/pool/catalog.ts';
import type { Component } from '../../src/core/pool/schema.ts';
import { SUBGROUP_NAMES } from '../../src/core/pool/tasks.ts';
import { npmUrl, packageDir, readPackageJson } from './packages.ts';

export const EMOJIBASE_LOCALES = ['bn', 'da', 'de', 'es', 'es-mx', 'et', 'fi', 'fr', 'hi', 'hu', 'it', 'ja', 'ko', 'lt', 'ms', 'nb', 'nl', 'pl', 'pt', 'ru', 'sv', 'th', 'uk', 'vi', 'zh', 'zh-hant'];
const BCP47: Record<string, string> = { 'es-mx': 'es-MX', 'zh-hant': 'zh-Hant' };

interface EmojibaseEntry {
  label: string;
  hexcode: string;
  tags?: string[];
  emoji: string;
  group?: number;
  subgroup?: number;
  skins?: EmojibaseEntry[];
}
interface Messages {
  groups: { key: string; message: string; order: number }[];
  subgroups: { key: string; message: string; order: number }[];
}

/** Hexcode as a key: upper case, FE0F dropped. */
export function normHex(hex: string): string {
  return hex.toUpperCase().split(/[-_ ]/).filter((c) => c !== 'FE0F' && c !== '').join('-');
}

export function slug(text: string): string {
  return text.toLowerCase().normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

function newConcept(id: string, component: Component, en: string, code: string): Concept {
  return { id, component, en, alt: [], tags: [], names: {}, group: '', subgroup: '', groupKey: '', subgroupKey: '', groupNames: {}, subgroupNames: {}, shortcodes: [], code };
}

interface IconifySet {
  prefix: string;
  icons: Record<string, { body: string; width?: number; height?: number; hidden?: boolean }>;
  width?: number;
  height?: number;
}

const iconifyCache = new Map<string, IconifySet>();
export function loadIconify(pkg: string): IconifySet {
  let set = iconifyCache.get(pkg);
  if (!set) {
    set = readPackageJson<IconifySet>(pkg, 'icons.json');
    iconifyCache.set(pkg, set);
  }
  return set;
}

function iconifyCategories(pkg: string): Map<string, string> {
  const out = new Map<string, string>();
  try {
    const meta = readPackageJson<{ categories?: Record<string, string[]> }>(pkg, 'metadata.json');
    for (const [cat, names] of Object.entries(meta.categories ?? {})) for (const n of names) if (!out.has(n)) out.set(n, cat);
  } catch {
    // a set without metadata has no categories
  }
  return out;
}

function iconifyAspect(set: IconifySet, name: string): number {
  const icon = set.icons[name]!;
  return (icon.width ?? set.width ?? 16) / (icon.height ?? set.height ?? 16);
}

export interface EmojiTables {
  /** normalized hexcode → concept id */
  byHex: Map<string, string>;
  /** slug of the English label → concept id */
  bySlug: Map<string, string>;
  groups: Messages['groups'];
  subgroups: Messages['subgroups'];
}

/** Emoji concepts with their names in every language emojibase and CLDR have. */
export function loadEmojiConcepts(concepts: Map<string, Concept>, languages: Set<string>): EmojiTables {
  const en = readPackageJson<EmojibaseEntry[]>('emojibase-data', 'en/data.json');
  const messages = readPackageJson<Messages>('emojibase-data', 'en/messages.json');
  const byHex = new Map<string, string>();
  const bySlug = new Map<string, string>();
  const byEmoji = new Map<string, Concept>();
  const add = (e: EmojibaseEntry, parent?: EmojibaseEntry): void => {
    const hex = normHex(e.hexcode);
    const c = newConcept(`emoji:${hex}`, 'emoji', e.label, hex);
    c.tags = (e.tags ?? parent?.tags ?? []).slice();
    const g = e.group ?? parent?.group;
    const sg = e.subgroup ?? parent?.subgroup;
    c.group = g === undefined ? '' : messages.groups.find((x) => x.order === g)?.message ?? '';
    const sgKey = sg === undefined ? '' : messages.subgroups.find((x) => x.order === sg)?.key ?? '';
    c.subgroup = sg === undefined ? '' : SUBGROUP_NAMES[sgKey] ?? messages.subgroups.find((x) => x.order === sg)?.message ?? '';
    c.groupKey = g === undefined ? '' : messages.groups.find((x) => x.order === g)?.key ?? '';
    c.subgroupKey = sg === undefined ? '' : messages.subgroups.find((x) => x.order === sg)?.key ?? '';
    concepts.set(c.id, c);
    byHex.set(hex, c.id);
    if (!bySlug.has(slug(e.label))) bySlug.set(slug(e.label), c.id);
    byEmoji.set(e.emoji.replace(/\uFE0F/g, ''), c);
  };
  for (const e of en) {
    add(e);
    for (const s of e.skins ?? []) add(s, e);
  }
  for (const [hex, codes] of Object.entries(readPackageJson<Record<string, string | string[]>>('emojibase-data', 'en/shortcodes/github.json'))) {
    const c = concepts.get(`emoji:${normHex(hex)}`);
    if (c) c.shortcodes = Array.isArray(codes) ? codes : [codes];
  }
  for (const loc of EMOJIBASE_LOCALES) {
    const lang = BCP47[loc] ?? loc;
    languages.add(lang);
    const data = readPackageJson<EmojibaseEntry[]>('emojibase-data', `${loc}/data.json`);
    const msg = readPackageJson<Messages>('emojibase-data', `${loc}/messages.json`);
    const gName = new Map(msg.groups.map((x) => [x.order, x.message]));
    const sgName = new Map(msg.subgroups.map((x) => [x.order, x.message]));
    const visit = (e: EmojibaseEntry, parent?: EmojibaseEntry): void => {
      const c = concepts.get(`emoji:${normHex(e.hexcode)}`);
      if (!c) return;
      if (e.label) c.names[lang] = e.label;
      const g = e.group ?? parent?.group;
      const sg = e.subgroup ?? parent?.subgroup;
      if (g !== undefined && gName.has(g)) c.groupNames[lang] = gName.get(g)!;
      if (sg !== undefined && sgName.has(sg)) c.subgroupNames[lang] = sgName.get(sg)!;
    };
    for (const e of data) {
      visit(e);
      for (const s of e.skins ?? []) visit(s, e);
    }
  }
  // CLDR: every base-language locale that names nearly all emoji and emojibase does not already cover.
  const cldrDir = join(packageDir('cldr-annotations-full'), 'annotations');
  const covered = new Set(['en', 'und', 'root', ...EMOJIBASE_LOCALES.map((l) => l.split('-')[0]!)]);
  for (const loc of readdirSync(cldrDir).sort()) {
    if (loc.includes('-') || covered.has(loc)) continue;
    const json = JSON.parse(readFileSync(join(cldrDir, loc, 'annotations.json'), 'utf8')) as {
      annotations?: { annotations?: Record<string, { default?: string[]; tts?: string[] }> };
    };
    const entries = Object.entries(json.annotations?.annotations ?? {});
    if (entries.length < 1800) continue;
    languages.add(loc);
    for (const [emoji, a] of entries) {
      const c = byEmoji.get(emoji.replace(/\uFE0F/g, ''));
      const name = a.tts?.[0];
      if (c && name && !c.names[loc]) c.names[loc] = name;
    }
  }
  return { byHex, bySlug, groups: messages.groups, subgroups: messages.subgroups };
}

/** Country names: English and 77 other languages from i18n-iso-countries. */
export function loadFlagConcepts(concepts: Map<string, Concept>, languages: Set<string>): Map<string, string> {
  const dir = join(packageDir('i18n-iso-countries'), 'langs');
  const codes = readPackageJson<Record<string, string[]>>('i18n-iso-countries', 'codes.json');
  const alpha3 = new Map<string, string>();
  for (const row of Object.values(codes) as unknown as string[][]) if (Array.isArray(row)) alpha3.set(row[0]!, row[1]!);
  const en = readPackageJson<{ countries: Record<string, string | string[]> }>('i18n-iso-countries', 'langs/en.json').countries;
  const byIso = new Map<string, string>();
  for (const [code, name] of Object.entries(en)) {
    const names = Array.isArray(name) ? name : [name];
    const c = newConcept(`flag:${code}`, 'flag', names[0]!, code);
    c.alt = names.slice(1);
    c.group = 'flags';
    c.subgroup = 'country flags';
    concepts.set(c.id, c);
    byIso.set(code, c.id);
  }
  // The English name people write is CLDR's short name ("flag: Iran" → Iran), the ISO name an alias.
  for (const c of concepts.values()) {
    if (c.component !== 'flag' || !/^[A-Z]{2}$/.test(c.code)) continue;
    const hex = [...c.code].map((ch) => (0x1f1e6 + ch.charCodeAt(0) - 65).toString(16).toUpperCase()).join('-');
    const label = concepts.get(`emoji:${hex}`)?.en;
    const short = label?.replace(/^flag:\s*/i, '');
    if (short && short !== c.en) {
      c.alt = [c.en, ...c.alt.filter((a) => a !== short)];
      c.en = short;
    }
  }
  for (const file of readdirSync(dir).sort()) {
    const lang = file.replace(/\.json$/, '');
    if (lang === 'en') continue;
    const data = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { locale: string; countries: Record<string, string | string[]> };
    languages.add(lang);
    for (const [code, name] of Object.entries(data.countries)) {
      const c = concepts.get(`flag:${code}`);
      const first = Array.isArray(name) ? name[0] : name;
      if (c && first) c.names[lang] = first;
    }
  }
  return byIso;
}


const ICON_SUFFIXES: Record<string, RegExp> = {
  ph: /-(thin|light|bold|fill|duotone)$/,
  solar: /-(bold-duotone|line-duotone|bold|linear|outline|broken)$/,
  ri: /-(line|fill)$/,
  tabler: /-filled$/,
  iconoir: /-solid$/,
  healthicons: /-(outline|negative|filled)(-24px)?$/,
  carbon: /$^/,
  'game-icons': /$^/,
};

/** An icon's name as words, without the set's style suffix: `cloud-rain-bold` → `cloud rain`. */
export function iconWords(set: string, name: string): string {
  const base = name.replace(ICON_SUFFIXES[set] ?? /$^/, '');
  return base.replace(/--+/g, ' ').replace(/[-_]+/g, ' ').replace(/\s+/g, ' ').trim();
}

function iconConcept(concepts: Map<string, Concept>, words: string, tags: string[] = []): string {
  const id = `icon:${words}`;
  let c = concepts.get(id);
  if (!c) {
    c = newConcept(id, 'icon', words, slug(words));
    concepts.set(id, c);
  }
  for (const t of tags) if (!c.tags.includes(t)) c.tags.push(t);
  return id;
}

export const ICONIFY_ICON_SETS = ['tabler', 'ph', 'solar', 'game-icons', 'healthicons', 'iconoir', 'carbon', 'ri'] as const;
export const ICONIFY_EMOJI_SETS = ['fluent-emoji-flat', 'fluent-emoji-high-contrast', 'emojione', 'emojione-monotone', 'emojione-v1', 'streamline-emojis', 'fxemoji'] as const;

/** The whole catalog of pool concepts and pool sources, in a fixed order. */
export function loadCatalog(): Catalog {
  const concepts = new Map<string, Concept>();
  const languages = new Set<string>();
  const sources: Source[] = [];
  const emoji = loadEmojiConcepts(concepts, languages);
  const flags = loadFlagConcepts(concepts, languages);

  // --- emoji: OpenMoji colour and black
  const om = readPackageJson<{ hexcode: string; annotation: string; group: string; subgroups: string; tags: string; openmoji_tags: string }[]>('openmoji', 'data/openmoji.json');
  for (const variant of ['color', 'black'] as const) {
    for (const e of om) {
      let id = emoji.byHex.get(normHex(e.hexcode));
      if (!id) {
        // OpenMoji's own extras: a concept of their own, named by OpenMoji's annotation
        id = `emoji:openmoji-${e.hexcode}`;
        if (!concepts.has(id)) {
          const c = newConcept(id, 'emoji', e.annotation, e.hexcode);
          c.tags = [e.tags, e.openmoji_tags].join(',').split(',').map((t) => t.trim()).filter(Boolean);
          concepts.set(id, c);
        }
      }
      const path = `${variant}/svg/${e.hexcode}.svg`;
      sources.push({
        style: `openmoji-${variant}`, component: 'emoji', concept: id, url: npmUrl('openmoji', path), fileName: `${e.hexcode}.svg`,
        setName: e.hexcode, aspect: 1, category: '', ref: { type: 'svg-file', file: join(packageDir('openmoji'), path) },
      });
    }
  }
  // --- emoji: Twemoji SVG
  const twDir = join(packageDir('@twemoji/svg'));
  const twemojiConcepts = new Set<string>();
  for (const file of readdirSync(twDir).filter((f) => f.endsWith('.svg')).sort()) {
    const id = emoji.byHex.get(normHex(file.replace(/\.svg$/, '')));
    if (!id) continue;
    twemojiConcepts.add(id);
    sources.push({
      style: 'twemoji', component: 'emoji', concept: id, url: npmUrl('@twemoji/svg', file), fileName: file, setName: file.replace(/\.svg$/, ''),
      aspect: 1, category: '', ref: { type: 'svg-file', file: join(twDir, file) },
    });
  }
  // --- emoji: Iconify emoji sets (by their chars table, else by the slug of the English name)
  for (const set of ICONIFY_EMOJI_SETS) {
    const pkg = `@iconify-json/${set}`;
    const icons = loadIconify(pkg);
    const chars = readPackageJson<Record<string, string>>(pkg, 'chars.json');
    const byName = new Map<string, string>();
    for (const [hex, name] of Object.entries(chars)) if (!byName.has(name)) byName.set(name, normHex(hex));
    const cats = iconifyCategories(pkg);
    for (const name of Object.keys(icons.icons).sort()) {
      if (icons.icons[name]!.hidden) continue;
      const hex = byName.get(name);
      const id = (hex && emoji.byHex.get(hex)) || emoji.bySlug.get(name) || emoji.bySlug.get(name.replace(/-/g, '-'));
      if (!id) continue;
      sources.push({
        style: set, component: 'emoji', concept: id, url: npmUrl(pkg, `icons.json#${name}`), fileName: `${name}.svg`, setName: `${set}:${name}`,
        aspect: iconifyAspect(icons, name), category: cats.get(name) ?? '', ref: { type: 'iconify', file: join(packageDir(pkg), 'icons.json'), name },
      });
    }
  }
  // --- emoji: the Twemoji PNGs of emoji-datasource-twitter (a package copy of Twemoji)
  const ed = readPackageJson<{ unified: string; image: string; has_img_twitter: boolean }[]>('emoji-datasource-twitter', 'emoji.json');
  for (const e of ed) {
    const id = emoji.byHex.get(normHex(e.unified));
    if (!id || !e.has_img_twitter || !twemojiConcepts.has(id)) continue;
    const path = `img/twitter/64/${e.image}`;
    sources.push({
      style: 'twitter-png', component: 'emoji', concept: id, url: npmUrl('emoji-datasource-twitter', path), fileName: e.image, setName: e.image.replace(/\.png$/, ''),
      aspect: 1, category: '', ref: { type: 'png-file', file: join(packageDir('emoji-datasource-twitter'), path) }, copyOf: 'twemoji',
    });
  }

  // --- flags
  const fi = readPackageJson<{ code: string; name: string; iso: boolean; flag_1x1: string; flag_4x3: string }[]>('flag-icons', 'country.json');
  for (const f of fi) {
    let id = flags.get(f.code.toUpperCase());
    if (!id) {
      id = `flag:${f.code.toUpperCase()}`;
      if (!concepts.has(id)) {
        const c = newConcept(id, 'flag', f.name, f.code.toUpperCase());
        c.group = 'flags';
        concepts.set(id, c);
      }
    } else {
      const c = concepts.get(id)!;
      if (f.name !== c.en && !c.alt.includes(f.name)) c.alt.push(f.name);
    }
    for (const [variant, path, aspect] of [['4x3', f.flag_4x3, 4 / 3], ['1x1', f.flag_1x1, 1]] as const) {
      sources.push({
        style: `flag-icons-${variant}`, component: 'flag', concept: id, url: npmUrl('flag-icons', path), fileName: path.split('/').pop()!, setName: f.code,
        aspect, category: '', ref: { type: 'svg-file', file: join(packageDir('flag-icons'), path) },
      });
    }
  }
  for (const set of ['flagpack', 'cif'] as const) {
    const pkg = `@iconify-json/${set}`;
    const icons = loadIconify(pkg);
    for (const name of Object.keys(icons.icons).sort()) {
      const id = flags.get(name.toUpperCase());
      if (!id || icons.icons[name]!.hidden) continue;
      sources.push({
        style: set, component: 'flag', concept: id, url: npmUrl(pkg, `icons.json#${name}`), fileName: `${name}.svg`, setName: `${set}:${name}`,
        aspect: iconifyAspect(icons, name), category: '', ref: { type: 'iconify', file: join(packageDir(pkg), 'icons.json'), name },
      });
    }
  }

  // --- icons: Fluent UI System Icons (regular and filled at 24 px, else the nearest size)
  const fluentDir = join(packageDir('@fluentui/svg-icons'), 'icons');
  const fluent = new Map<string, Map<string, string>>();
  for (const file of readdirSync(fluentDir).sort()) {
    const m = /^(.+?)_(\d+)_(regular|filled)\.svg$/.exec(file);
    if (!m) continue;
    const key = `${m[1]}|${m[3]}`;
    const sizes = fluent.get(key) ?? new Map<string, string>();
    sizes.set(m[2]!, file);
    fluent.set(key, sizes);
  }
  for (const [key, sizes] of fluent) {
    const [name] = key.split('|') as [string, string];
    const size = sizes.has('24') ? '24' : sizes.has('20') ? '20' : [...sizes.keys()].sort((a, b) => Number(a) - Number(b)).pop()!;
    const file = sizes.get(size)!;
    const id = iconConcept(concepts, iconWords('fluent', name));
    sources.push({
      style: 'fluent-system', component: 'icon', concept: id, url: npmUrl('@fluentui/svg-icons', `icons/${file}`), fileName: file, setName: file.replace(/\.svg$/, ''),
      aspect: 1, category: '', ref: { type: 'svg-file', file: join(fluentDir, file) },
    });
  }
  // --- icons: Lucide with its tags
  const lucideTags = readPackageJson<Record<string, string[]>>('lucide-static', 'tags.json');
  const lucideDir = join(packageDir('lucide-static'), 'icons');
  for (const file of readdirSync(lucideDir).filter((f) => f.endsWith('.svg')).sort()) {
    const name = file.replace(/\.svg$/, '');
    const id = iconConcept(concepts, iconWords('lucide', name), lucideTags[name] ?? []);
    sources.push({
      style: 'lucide', component: 'icon', concept: id, url: npmUrl('lucide-static', `icons/${file}`), fileName: file, setName: name,
      aspect: 1, category: '', ref: { type: 'svg-file', file: join(lucideDir, file) },
    });
  }
  // --- icons: Iconify sets, with their categories where the set has them
  for (const set of ICONIFY_ICON_SETS) {
    const pkg = `@iconify-json/${set}`;
    const icons = loadIconify(pkg);
    const cats = iconifyCategories(pkg);
    for (const name of Object.keys(icons.icons).sort()) {
      if (icons.icons[name]!.hidden) continue;
      const id = iconConcept(concepts, iconWords(set, name));
      sources.push({
        style: set, component: 'icon', concept: id, url: npmUrl(pkg, `icons.json#${name}`), fileName: `${name}.svg`, setName: `${set}:${name}`,
        aspect: iconifyAspect(icons, name), category: cats.get(name) ?? '', ref: { type: 'iconify', file: join(packageDir(pkg), 'icons.json'), name },
      });
    }
  }

  // --- logos: simple-icons in brand colour (icons with a licence of their own are left out)
  const si = readPackageJson<{ title: string; slug: string; hex: string; aliases?: { aka?: string[]; loc?: Record<string, string> }; license?: unknown }[]>('simple-icons', 'data/simple-icons.json');
  const siDir = join(packageDir('simple-icons'), 'icons');
  for (const s of si) {
    if (s.license) continue;
    const id = `logo:${s.slug}`;
    const c = newConcept(id, 'logo', s.title, s.slug);
    c.alt = s.aliases?.aka ?? [];
    for (const [loc, name] of Object.entries(s.aliases?.loc ?? {})) {
      c.names[loc] = name;
      languages.add(loc);
    }
    concepts.set(id, c);
    sources.push({
      style: 'simple-icons', component: 'logo', concept: id, url: npmUrl('simple-icons', `icons/${s.slug}.svg`), fileName: `${s.slug}.svg`, setName: s.slug,
      aspect: 1, category: '', ref: { type: 'svg-file', file: join(siDir, `${s.slug}.svg`), fill: `#${s.hex}` },
    });
  }
  return { concepts, sources, languages: [...languages].sort() };
}
