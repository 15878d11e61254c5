/**
 * The held-out evaluation sets, read from the three evaluation packages only: Noto (emoji group, subgroup,
 * retrieval), Circle Flags (flag → country) and MDI (icon category). Class names come from the same text
 * packages as the pool's captions (emojibase, i18n-iso-countries) or from MDI's own tags.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../../src/core/util/random.ts';
import type { Catalog, SourceRef } from '../../src/core/pool/catalog.ts';
import { EMOJI_GROUP_KEYS, MDI_CLASS_NAMES, TASKS, type TaskDef } from '../../src/core/pool/tasks.ts';
import { POOL_SEED } from '../../src/core/pool/schema.ts';
import { normHex } from './catalog-load.ts';
import { npmUrl, packageDir, readPackageJson } from './packages.ts';
import { blocked } from './render-pool.ts';

export interface EvalItem {
  url: string;
  ref: SourceRef;
  aspect: number;
  /** Class index (classification) or captions (retrieval). */
  label: number | string[];
  concept: string;
}

export interface EvalTaskData {
  def: TaskDef;
  classnames: string[];
  items: EvalItem[];
}

/** Subgroups with fewer Noto emoji than this are left out of the subgroup task. */
export const MIN_SUBGROUP_SIZE = 5;
export const RETRIEVAL_SIZE = 1000;

function task(key: string): TaskDef {
  return TASKS.find((t) => t.key === key)!;
}

export function loadEvalTasks(catalog: Catalog, options: { fraction?: number; seed?: number } = {}): EvalTaskData[] {
  const fraction = options.fraction ?? 1;
  const rng = new Rng((options.seed ?? POOL_SEED) + 1);
  const keep = <T>(items: T[], min = 1): T[] => {
    if (fraction >= 1) return items;
    const n = Math.max(min, Math.round(items.length * fraction));
    const idx = rng.shuffle(items.map((_, i) => i)).slice(0, n).sort((a, b) => a - b);
    return idx.map((i) => items[i]!);
  };

  // --- Noto: the ids of the sprite's fragments, as base emoji concepts (no skin tones)
  const spriteFile = join(packageDir('@svgmoji/noto'), 'sprites/all.svg');
  const sprite = readFileSync(spriteFile, 'utf8');
  const noto: { id: string; concept: string }[] = [];
  for (const m of sprite.matchAll(/<svg [^>]*\bid="([0-9A-F-]+)"/g)) {
    const id = m[1]!;
    const concept = `emoji:${normHex(id)}`;
    const url = npmUrl('@svgmoji/noto', `sprites/all.svg#${id}`);
    if (!catalog.concepts.has(concept) || blocked(url)) continue;
    if (/-1F3F[B-F]/.test(id)) continue; // skin tones: one picture per base emoji
    noto.push({ id, concept });
  }
  noto.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const notoItem = (n: { id: string; concept: string }, label: number | string[]): EvalItem => ({
    url: npmUrl('@svgmoji/noto', `sprites/all.svg#${n.id}`), ref: { type: 'sprite', file: spriteFile, id: n.id }, aspect: 1, label, concept: n.concept,
  });

  const tasks: EvalTaskData[] = [];
  // emoji group
  {
    const groups = EMOJI_GROUP_KEYS;
    const messages = readPackageJson<{ groups: { key: string; message: string }[] }>('emojibase-data', 'en/messages.json');
    const classnames = groups.map((k) => messages.groups.find((g) => g.key === k)!.message);
    const items = noto.filter((n) => groups.includes(catalog.concepts.get(n.concept)!.groupKey))
      .map((n) => notoItem(n, groups.indexOf(catalog.concepts.get(n.concept)!.groupKey)));
    tasks.push({ def: task('emoji_group'), classnames, items: keep(items, groups.length) });
  }
  // emoji subgroup: subgroups with enough Noto emoji, outside components and flags
  {
    const counts = new Map<string, number>();
    const eligible = noto.filter((n) => EMOJI_GROUP_KEYS.includes(catalog.concepts.get(n.concept)!.groupKey));
    for (const n of eligible) {
      const sg = catalog.concepts.get(n.concept)!.subgroup;
      counts.set(sg, (counts.get(sg) ?? 0) + 1);
    }
    const order: string[] = [];
    for (const n of eligible) {
      const sg = catalog.concepts.get(n.concept)!.subgroup;
      if (counts.get(sg)! >= MIN_SUBGROUP_SIZE && !order.includes(sg)) order.push(sg);
    }
    const items = eligible.filter((n) => order.includes(catalog.concepts.get(n.concept)!.subgroup))
      .map((n) => notoItem(n, order.indexOf(catalog.concepts.get(n.concept)!.subgroup)));
    tasks.push({ def: task('emoji_subgroup'), classnames: order, items: keep(items, order.length) });
  }
  // flag → country: Circle Flags of ISO 3166 countries, named in English by i18n-iso-countries
  {
    const pkg = '@iconify-json/circle-flags';
    const icons = readPackageJson<{ icons: Record<string, { hidden?: boolean }> }>(pkg, 'icons.json');
    const items: EvalItem[] = [];
    const classnames: string[] = [];
    for (const name of Object.keys(icons.icons).sort()) {
      if (!/^[a-z]{2}$/.test(name) || icons.icons[name]!.hidden) continue;
      const c = catalog.concepts.get(`flag:${name.toUpperCase()}`);
      if (!c) continue;
      items.push({
        url: npmUrl(pkg, `icons.json#${name}`), ref: { type: 'iconify', file: join(packageDir(pkg), 'icons.json'), name }, aspect: 1,
        label: classnames.length, concept: c.id,
      });
      classnames.push(c.en);
    }
    tasks.push({ def: task('flag_country'), classnames, items: keep(items, 8) });
  }
  // icon category: MDI icons with exactly one tag, under the class names of MDI_CLASS_NAMES
  {
    const meta = readPackageJson<{ name: string; tags: string[]; deprecated?: boolean }[]>('@mdi/svg', 'meta.json');
    const single = meta.filter((m) => m.tags.length === 1 && !m.deprecated && MDI_CLASS_NAMES[m.tags[0]!]);
    const classnames = [...new Set(single.map((m) => MDI_CLASS_NAMES[m.tags[0]!]!))].sort();
    const dir = join(packageDir('@mdi/svg'), 'svg');
    const items = single.sort((a, b) => (a.name < b.name ? -1 : 1)).map((m) => ({
      url: npmUrl('@mdi/svg', `svg/${m.name}.svg`), ref: { type: 'svg-file' as const, file: join(dir, `${m.name}.svg`) }, aspect: 1,
      label: classnames.indexOf(MDI_CLASS_NAMES[m.tags[0]!]!), concept: `mdi:${m.name}`,
    }));
    tasks.push({ def: task('icon_category'), classnames, items: keep(items, classnames.length) });
  }
  // retrieval: Noto emoji ↔ their English CLDR names
  {
    const eligible = noto.filter((n) => EMOJI_GROUP_KEYS.includes(catalog.concepts.get(n.concept)!.groupKey));
    const picked = rng.shuffle(eligible.slice()).slice(0, Math.min(eligible.length, RETRIEVAL_SIZE)).sort((a, b) => (a.id < b.id ? -1 : 1));
    const items = picked.map((n) => notoItem(n, [catalog.concepts.get(n.concept)!.en]));
    tasks.push({ def: task('emoji_retrieval'), classnames: [], items: keep(items, 10) });
  }
  return tasks;
}
