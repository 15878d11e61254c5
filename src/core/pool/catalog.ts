/**
 * What the builder knows about the source packages once it has read them: concepts (what a picture shows,
 * with its human-written names in many languages) and sources (one picture of one concept in one style).
 * The server fills a Catalog from node_modules; the plan (plan.ts) only ever sees these plain objects.
 */
import type { Component } from './schema.ts';

export interface Concept {
  /** `emoji:1F436`, `flag:FR`, `icon:cloud rain`, `logo:github`. */
  id: string;
  component: Component;
  /** The English name a person would write ("dog face", "France", "cloud rain", "GitHub"). */
  en: string;
  /** Other English names for the same thing (aliases, official names). */
  alt: string[];
  /** English keywords (CLDR tags, Lucide tags). */
  tags: string[];
  /** Localized names, by BCP 47 tag, English excluded. */
  names: Record<string, string>;
  /** English group / subgroup (emoji) as the metadata names them; '' when unknown. */
  group: string;
  subgroup: string;
  /** Emojibase keys of the group and subgroup (`animals-nature`, `animal-mammal`), '' for non-emoji. */
  groupKey: string;
  subgroupKey: string;
  /** Localized group and subgroup names, by language. */
  groupNames: Record<string, string>;
  subgroupNames: Record<string, string>;
  /** Shortcodes without colons (emoji), e.g. "dog". */
  shortcodes: string[];
  /** Code of the concept: emoji hexcode, ISO 3166-1 alpha-2 (and alpha-3 after a space), icon slug. */
  code: string;
}

export type SourceRef =
  | { type: 'svg-file'; file: string; fill?: string }
  | { type: 'iconify'; file: string; name: string }
  | { type: 'png-file'; file: string }
  | { type: 'sprite'; file: string; id: string };

export interface Source {
  /** Art style (one per package and variant): `openmoji-color`, `twemoji`, `tabler`… */
  style: string;
  component: Component;
  concept: string;
  /** `npm:<package>@<version>/<path or json#name>`. */
  url: string;
  /** The file name a web page would give this picture (for identifier captions). */
  fileName: string;
  /** Icon name as its set spells it (`cloud-rain`, `animal_dog_24_regular`), for identifier captions. */
  setName: string;
  /** Width / height of the artwork. */
  aspect: number;
  /** Category from the set's own metadata (icons), '' when the set has none. */
  category: string;
  ref: SourceRef;
  /** For a package copy of another style: that style. */
  copyOf?: string;
}

export interface Catalog {
  concepts: Map<string, Concept>;
  sources: Source[];
  /** Languages that have localized names, for the report. */
  languages: string[];
}
