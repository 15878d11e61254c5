/**
 * The embedded pool's layout and record types: what CommonPool's files hold (facts §1), the rules that
 * name uids, keys and shards, and the ground-truth side file. Pure: the browser can read the same pool.
 */
import { sha256Hex } from './sha256.ts';

/** Bumped whenever anything that changes the pool's bytes changes (plan, captions, rendering). */
export const POOL_FORMAT_VERSION = 'dcw-embedded-pool-v1';
export const POOL_SEED = 20260127;

/** img2dataset's `number_sample_per_shard` as DataComp calls it. */
export const SAMPLES_PER_SHARD = 10_000;
/** Rows per metadata parquet: each file is cut into ceil(rows / 10 000) shards, ids contiguous across files. */
export const ROWS_PER_METADATA_FILE = 20_000;

/** The official metadata columns, in order (facts §1). */
export const METADATA_COLUMNS = [
  'uid', 'url', 'text', 'original_width', 'original_height',
  'clip_b32_similarity_score', 'clip_l14_similarity_score', 'face_bboxes', 'sha256',
] as const;

/** Columns of img2dataset's per-shard parquet (input columns, then the status columns it appends). */
export const SHARD_PARQUET_COLUMNS = [
  'uid', 'face_bboxes', 'caption', 'url', 'key', 'status', 'error_message',
  'width', 'height', 'original_width', 'original_height', 'exif', 'sha256',
] as const;

/** `{id:08d}` as img2dataset names shards. */
export function shardName(shard: number): string {
  return String(shard).padStart(8, '0');
}

/** img2dataset's compute_key: str(shard_id * 10**4 + idx).zfill(12). */
export function computeKey(shard: number, index: number, samplesPerShard = SAMPLES_PER_SHARD): string {
  const oom = Math.ceil(Math.log10(samplesPerShard));
  return String(shard * 10 ** oom + index).padStart(12, '0');
}

/**
 * A pool uid: the first 128 bits of sha256 over a canonical string naming the source and the variant
 * (its url, which is unique per row), so it is the same on every machine and never depends on row order.
 */
export function poolUid(url: string): string {
  return sha256Hex(`${POOL_FORMAT_VERSION}\n${url}`).slice(0, 32);
}

/** The sample json img2dataset writes, key order as webdataset's TarWriter stores it (facts §1). */
export interface SampleJson {
  uid: string;
  face_bboxes: number[][];
  caption: string;
  url: string;
  key: string;
  status: 'success';
  error_message: null;
  width: number;
  height: number;
  original_width: number;
  original_height: number;
  exif: string | null;
  sha256: string;
}

/** Python's json.dumps(obj, indent=4) for the flat sample json (ensure_ascii: non-ASCII as \uXXXX). */
export function pythonJsonDumps(value: unknown, indent = 4, level = 0): string {
  const pad = ' '.repeat(indent * (level + 1));
  const end = ' '.repeat(indent * level);
  if (value === null) return 'null';
  if (typeof value === 'string') return pythonString(value);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : pythonFloat(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[\n${value.map((v) => pad + pythonJsonDumps(v, indent, level + 1)).join(',\n')}\n${end}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (!entries.length) return '{}';
  return `{\n${entries.map(([k, v]) => `${pad}${pythonString(k)}: ${pythonJsonDumps(v, indent, level + 1)}`).join(',\n')}\n${end}}`;
}

function pythonFloat(x: number): string {
  const s = String(x);
  return /[.eE]/.test(s) ? s.replace(/e([+-])(\d)$/, 'e$10$2') : `${s}.0`;
}

function pythonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xffff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (c > 0xffff) {
      const v = c - 0x10000;
      out += `\\u${(0xd800 + (v >> 10)).toString(16)}\\u${(0xdc00 + (v & 0x3ff)).toString(16)}`;
    } else out += ch;
  }
  return `${out}"`;
}

// ---------------------------------------------------------------------------------------------------
// Ground truth (the side file filters never read)

/** What kind of caption a row carries. */
export const CAPTION_KINDS = ['clean', 'other_language', 'identifier', 'mismatched', 'generic'] as const;
export type CaptionKind = (typeof CAPTION_KINDS)[number];

/** What was done to a row's image. Several can apply (a near duplicate can also be tiny). */
export const IMAGE_KINDS = ['clean', 'tiny', 'odd_aspect', 'exact_duplicate', 'near_duplicate', 'package_copy'] as const;
export type ImageKind = (typeof IMAGE_KINDS)[number];

export type Component = 'emoji' | 'flag' | 'icon' | 'logo';

export interface TruthRow {
  uid: string;
  /** Concept the image shows, e.g. `emoji:1F436`, `flag:FR`, `icon:cloud rain`, `logo:github`. */
  concept: string;
  /** The concept the caption describes (differs from `concept` only for mismatched captions). */
  caption_concept: string;
  component: Component;
  /** Art style / source set of the image, e.g. `openmoji-color`, `tabler`. */
  style: string;
  /** BCP 47 tag of the caption's language; `zxx` for identifiers (no linguistic content). */
  language: string;
  caption_kind: CaptionKind;
  /** The image's kind; `clean` when nothing was done to it. */
  image_kind: ImageKind;
  /** For duplicates and copies: the uid of the row whose picture this repeats; '' otherwise. */
  duplicate_of: string;
  /** English names of the concept's categories (emoji group and subgroup, icon category); '' if none. */
  group: string;
  subgroup: string;
}

export const TRUTH_COLUMNS = [
  'uid', 'concept', 'caption_concept', 'component', 'style', 'language', 'caption_kind', 'image_kind', 'duplicate_of', 'group', 'subgroup',
] as const satisfies readonly (keyof TruthRow)[];

/** Whole-word, case-insensitive occurrence of `phrase` in `text` (Unicode letters and digits are word characters). */
export function containsPhrase(text: string, phrase: string): boolean {
  return phraseRegExp(phrase).test(text);
}

const phraseCache = new Map<string, RegExp>();
export function phraseRegExp(phrase: string): RegExp {
  let re = phraseCache.get(phrase);
  if (!re) {
    const escaped = phrase.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\s+/g, '\\s+');
    re = new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, 'iu');
    phraseCache.set(phrase, re);
  }
  return re;
}
