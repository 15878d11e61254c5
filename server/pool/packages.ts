/**
 * The pinned npm packages the embedded pool is built from: where they are, which version is installed,
 * under which licence their pictures and texts are, and which art styles are held out for evaluation
 * (together with every package that copies them).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../cli/errors.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

export interface PackageInfo {
  name: string;
  /** The version package.json pins; the build refuses another installed version. */
  version: string;
  licence: string;
  role: 'pool' | 'eval' | 'text';
  what: string;
  attribution: string;
}

/** Every package the builder reads, with the licence of what it uses from it. */
export const PACKAGES: readonly PackageInfo[] = [
  { name: 'openmoji', version: '17.0.0', licence: 'CC-BY-SA-4.0', role: 'pool', what: 'emoji, colour and black outline styles (SVG)', attribution: 'OpenMoji, the open-source emoji and icon project, https://openmoji.org' },
  { name: '@twemoji/svg', version: '15.0.0', licence: 'CC-BY-4.0 (graphics)', role: 'pool', what: 'Twemoji emoji (SVG)', attribution: 'Twemoji, Copyright 2019 Twitter, Inc and other contributors; graphics licensed under CC-BY 4.0' },
  { name: 'emoji-datasource-twitter', version: '16.0.0', licence: 'CC-BY-4.0 (graphics)', role: 'pool', what: 'Twemoji 64 px PNGs (a second package copy of Twemoji)', attribution: 'Twemoji graphics via emoji-data by Cal Henderson; CC-BY 4.0' },
  { name: '@iconify-json/fluent-emoji-flat', version: '1.2.6', licence: 'MIT', role: 'pool', what: 'Fluent Emoji Flat (Microsoft)', attribution: 'Fluent Emoji, Copyright (c) Microsoft Corporation' },
  { name: '@iconify-json/fluent-emoji-high-contrast', version: '1.2.6', licence: 'MIT', role: 'pool', what: 'Fluent Emoji High Contrast (Microsoft)', attribution: 'Fluent Emoji, Copyright (c) Microsoft Corporation' },
  { name: '@iconify-json/emojione', version: '1.2.3', licence: 'CC-BY-4.0', role: 'pool', what: 'Emoji One (colored)', attribution: 'Emoji One by Ranks.com, CC BY 4.0' },
  { name: '@iconify-json/emojione-monotone', version: '1.2.1', licence: 'CC-BY-4.0', role: 'pool', what: 'Emoji One (monotone)', attribution: 'Emoji One by Ranks.com, CC BY 4.0' },
  { name: '@iconify-json/emojione-v1', version: '1.2.3', licence: 'CC-BY-SA-4.0', role: 'pool', what: 'Emoji One v1', attribution: 'Emoji One by Ranks.com, CC BY-SA 4.0' },
  { name: '@iconify-json/streamline-emojis', version: '1.2.4', licence: 'CC-BY-4.0', role: 'pool', what: 'Streamline Emojis', attribution: 'Streamline Emojis by Streamline, CC BY 4.0' },
  { name: '@iconify-json/fxemoji', version: '1.2.2', licence: 'Apache-2.0', role: 'pool', what: 'Firefox OS Emoji', attribution: 'Firefox OS Emoji, Copyright Mozilla Foundation, Apache License 2.0' },
  { name: 'flag-icons', version: '7.5.0', licence: 'MIT', role: 'pool', what: 'country flags, 4:3 and 1:1', attribution: 'flag-icons by Panayiotis Lipiridis, MIT' },
  { name: '@iconify-json/flagpack', version: '1.2.8', licence: 'MIT', role: 'pool', what: 'Flagpack country flags', attribution: 'Flagpack by Yummygum, MIT' },
  { name: '@iconify-json/cif', version: '1.2.7', licence: 'CC0-1.0', role: 'pool', what: 'CoreUI Flags', attribution: 'CoreUI Flags by creativeLabs, CC0 1.0' },
  { name: '@fluentui/svg-icons', version: '1.1.343', licence: 'MIT', role: 'pool', what: 'Fluent UI System Icons', attribution: 'Fluent UI System Icons, Copyright (c) Microsoft Corporation, MIT' },
  { name: 'lucide-static', version: '1.62.0', licence: 'ISC', role: 'pool', what: 'Lucide icons and their tags', attribution: 'Lucide, Copyright (c) Lucide Contributors (ISC); parts from Feather, Copyright (c) 2013-2023 Cole Bemis (MIT)' },
  { name: '@iconify-json/tabler', version: '1.2.41', licence: 'MIT', role: 'pool', what: 'Tabler Icons', attribution: 'Tabler Icons by Paweł Kuna, MIT' },
  { name: '@iconify-json/ph', version: '1.2.2', licence: 'MIT', role: 'pool', what: 'Phosphor icons', attribution: 'Phosphor Icons by Phosphor Icons, MIT' },
  { name: '@iconify-json/solar', version: '1.2.13', licence: 'CC-BY-4.0', role: 'pool', what: 'Solar icons and categories', attribution: 'Solar by 480 Design, CC BY 4.0' },
  { name: '@iconify-json/game-icons', version: '1.2.4', licence: 'CC-BY-3.0', role: 'pool', what: 'game-icons.net', attribution: 'Game Icons by GameIcons (game-icons.net), CC BY 3.0' },
  { name: '@iconify-json/healthicons', version: '1.2.13', licence: 'MIT', role: 'pool', what: 'Health Icons and categories', attribution: 'Health Icons by Resolve to Save Lives, MIT' },
  { name: '@iconify-json/iconoir', version: '1.2.11', licence: 'MIT', role: 'pool', what: 'Iconoir icons and categories', attribution: 'Iconoir by Luca Burgio, MIT' },
  { name: '@iconify-json/carbon', version: '1.2.29', licence: 'Apache-2.0', role: 'pool', what: 'IBM Carbon icons and categories', attribution: 'Carbon by IBM, Apache License 2.0' },
  { name: '@iconify-json/ri', version: '1.2.10', licence: 'Apache-2.0', role: 'pool', what: 'Remix Icon and categories', attribution: 'Remix Icon by Remix Design, Apache License 2.0' },
  { name: 'simple-icons', version: '16.37.0', licence: 'CC0-1.0 (icons with their own licence are left out); the logos are trademarks of their owners: research use only', role: 'pool', what: 'brand logos', attribution: 'Simple Icons collaborators, CC0 1.0' },
  { name: '@svgmoji/noto', version: '3.2.0', licence: 'Apache-2.0', role: 'eval', what: 'Noto Color Emoji (held out: emoji group, subgroup, retrieval)', attribution: 'Noto Emoji, Copyright Google Inc., Apache License 2.0' },
  { name: '@iconify-json/circle-flags', version: '1.2.11', licence: 'MIT', role: 'eval', what: 'Circle Flags (held out: flag → country)', attribution: 'Circle Flags by HatScripts, MIT' },
  { name: '@mdi/svg', version: '7.4.47', licence: 'Apache-2.0', role: 'eval', what: 'Material Design Icons and their tags (held out: icon category)', attribution: 'Pictogrammers Material Design Icons, Apache License 2.0' },
  { name: 'emojibase-data', version: '17.0.0', licence: 'MIT (data derived from Unicode CLDR)', role: 'text', what: 'emoji names, tags, groups and shortcodes in 28 locales', attribution: 'Emojibase by Miles Johnson, MIT; Unicode CLDR data' },
  { name: 'cldr-annotations-full', version: '48.2.0', licence: 'Unicode-3.0', role: 'text', what: 'emoji names in 100+ locales', attribution: 'Unicode CLDR, Copyright © 1991-2025 Unicode, Inc., Unicode License v3' },
  { name: 'i18n-iso-countries', version: '7.14.0', licence: 'MIT', role: 'text', what: 'country names in 78 languages', attribution: 'i18n-iso-countries by Michael Wittig, MIT' },
];

/**
 * Held-out styles and the packages that copy them (facts: realdata.md §2, §5): none of these may feed the
 * pool. The pool's sources are the `pool` packages above; this list documents, and the build checks, that
 * none of them is a copy of an evaluation style.
 */
export const HELD_OUT: readonly { style: string; packages: string[]; copies: string[] }[] = [
  { style: 'Noto Color Emoji', packages: ['@svgmoji/noto'], copies: ['emoji-datasource-google', '@iconify-json/noto', '@iconify-json/noto-v1', '@iconify/json (noto, noto-v1)'] },
  { style: 'Circle Flags', packages: ['@iconify-json/circle-flags'], copies: ['@iconify/json (circle-flags)', 'circle-flags'] },
  {
    style: 'Material Design Icons',
    packages: ['@mdi/svg'],
    copies: ['@mdi/js', '@mdi/font', '@iconify-json/mdi', '@iconify-json/mdi-light', '@iconify-json/ic', '@iconify-json/material-symbols', '@iconify-json/material-symbols-light', '@iconify-json/line-md', '@iconify/json (mdi, mdi-light, ic, material-symbols*, line-md)'],
  },
];

const versions = new Map<string, string>();

/** The folder of an installed package, after checking that its version is the pinned one. */
export function packageDir(name: string): string {
  const info = PACKAGES.find((p) => p.name === name);
  const dir = join(REPO_ROOT, 'node_modules', name);
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) throw new UserError(`pool build: the data package ${name} is not installed: run 'npm install' in ${REPO_ROOT}`);
  let version = versions.get(name);
  if (!version) {
    version = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
    versions.set(name, version);
  }
  if (info && version !== info.version) {
    throw new UserError(`pool build: ${manifest}: version ${version} is installed but the pool is pinned to ${info.version}: run 'npm ci'`);
  }
  return dir;
}

export function packageVersion(name: string): string {
  packageDir(name);
  return versions.get(name)!;
}

export function readPackageJson<T>(name: string, path: string): T {
  const file = join(packageDir(name), path);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new UserError(`pool build: ${file}: ${(err as Error).message}`);
  }
}

/** The url a row names: the package, its version and the path (or icon name) inside it. */
export function npmUrl(name: string, path: string): string {
  return `npm:${name}@${packageVersion(name)}/${path}`;
}

/** The NOTICE file written next to the pool and the evaluation suite. */
export function noticeText(): string {
  const lines = [
    'DataComp Workbench embedded pool and evaluation suite',
    '',
    'The images in this folder were rendered on this machine from the npm packages below, and the captions were',
    'built from the names, tags and translations those packages ship. Each package keeps its own licence; the',
    'rendered pictures are derivative works under the same licences. Share-alike (CC-BY-SA) pictures stay under',
    'CC-BY-SA. Logos (simple-icons) are trademarks of their owners and are included for research only.',
    'Never included: Apple and Facebook emoji images, icon sets with non-commercial or no-derivatives licences.',
    '',
  ];
  for (const role of ['pool', 'eval', 'text'] as const) {
    lines.push(role === 'pool' ? 'Pictures in the pool:' : role === 'eval' ? 'Pictures in the evaluation suite (held out of the pool):' : 'Names, tags and translations:');
    for (const p of PACKAGES.filter((q) => q.role === role)) {
      lines.push(`- ${p.name}@${p.version} — ${p.what}. Licence: ${p.licence}. ${p.attribution}.`);
    }
    lines.push('');
  }
  return `${lines.join('\n')}`;
}
