/**
 * Webdataset samples over tar members, grouped exactly as webdataset 0.2.x does it (the version DataComp
 * pins; `tariterators.py`):
 * - only regular files count; names "__…__" at the top level, or starting with a "__…__/" folder, are
 *   metadata and skipped (`tar_file_iterator`);
 * - `base_plus_ext` splits a path at the first dot of its basename: key = folder + basename up to that dot,
 *   extension = the rest ("a/b.seg.png" → "a/b", "seg.png"); a name without a dot is skipped;
 * - extensions are lowercased; a new sample starts whenever the key differs from the previous member's;
 * - the same extension twice in one sample is an error (webdataset raises ValueError). open_clip's
 *   `group_by_keys_nothrow` starts a new sample instead: `duplicates: 'new-sample'`.
 * Writing mirrors wds.TarWriter: one member "KEY.EXT" per extension, in sorted order, with its headers.
 */
import { FormatError } from './errors.ts';
import {
  readTar,
  WEBDATASET_TAR_DEFAULTS,
  writeTar,
  type TarEntry,
  type TarEntryDefaults,
  type TarMemberInfo,
  type TarReadOptions,
} from './tar.ts';

export interface WdsSample {
  /** The member path up to the first dot of its basename, e.g. "000000000042" or "part/000000000042". */
  readonly __key__: string;
  /** Extension (lowercased, may contain dots: "seg.png") → member bytes, in archive order. */
  readonly files: Map<string, Uint8Array>;
}

export interface WdsSampleInput {
  readonly __key__: string;
  readonly files: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>;
}

export interface GroupOptions {
  /** Lowercase extensions, as webdataset does by default. Default true. */
  lowercase?: boolean;
  /** What to do when one sample has the same extension twice. Default 'error' (webdataset). */
  duplicates?: 'error' | 'new-sample';
  /** Keep only these extensions (others are read past, not buffered). Default: all. */
  extensions?: ReadonlySet<string>;
}

export type ReadSamplesOptions = GroupOptions & TarReadOptions;

const BASE_PLUS_EXT = /^((?:.*\/|)[^.]+)[.]([^/]*)$/;
// Python's `$` also matches before a final newline; `\n?$` keeps that edge the same.
const META_PREFIX = /^__[^/]*__(?:\n?$|\/)/;

/** webdataset's `base_plus_ext`: [key, extension], or undefined for a name it would skip. */
export function basePlusExt(path: string): [key: string, ext: string] | undefined {
  const match = BASE_PLUS_EXT.exec(path);
  return match ? [match[1]!, match[2]!] : undefined;
}

/** Whether webdataset's `tar_file_iterator` reads this member at all. */
export function isSampleMember(member: Pick<TarMemberInfo, 'path' | 'type'>): boolean {
  const { path, type } = member;
  if (type !== 'file') return false;
  if (!path.includes('/') && path.startsWith('__') && path.endsWith('__')) return false;
  return !META_PREFIX.test(path);
}

/**
 * The grouping rule, on member names alone, so that describeTar can count samples without reading bodies.
 * `place` says where a member goes: undefined (skipped), or its key and extension and whether it starts a sample.
 */
class Grouper {
  private key: string | undefined;
  private readonly seen = new Set<string>();

  constructor(
    private readonly archive: string,
    private readonly options: GroupOptions,
  ) {}

  place(member: Pick<TarMemberInfo, 'path' | 'type'>): { key: string; ext: string; starts: boolean; keep: boolean } | undefined {
    if (!isSampleMember(member)) return undefined;
    const split = basePlusExt(member.path);
    if (!split) return undefined;
    const key = split[0];
    const ext = this.options.lowercase === false ? split[1] : split[1].toLowerCase();
    const keep = !this.options.extensions || this.options.extensions.has(ext);
    // webdataset's sample dict already holds "__key__" and "__url__", so those extensions collide too.
    const duplicate = key === this.key && (this.seen.has(ext) || ext === '__key__' || ext === '__url__');
    if (duplicate && this.options.duplicates !== 'new-sample') {
      throw new FormatError(this.archive, `member ${JSON.stringify(member.path)}: sample ${JSON.stringify(key)} already has a ${JSON.stringify(ext)} file`);
    }
    const starts = key !== this.key || duplicate;
    if (starts) {
      this.key = key;
      this.seen.clear();
    }
    // Like webdataset, only kept extensions occupy their slot in the sample.
    if (keep) this.seen.add(ext);
    return { key, ext, starts, keep };
  }
}

/** Groups tar members (from readTar) into samples, reading only the bodies that end up in a sample. */
export async function* groupSamples(
  members: AsyncIterable<TarMemberInfo & { bytes(): Promise<Uint8Array> }>,
  archive: string,
  options: GroupOptions = {},
): AsyncGenerator<WdsSample, void, undefined> {
  const grouper = new Grouper(archive, options);
  let sample: WdsSample | undefined;
  for await (const member of members) {
    const place = grouper.place(member);
    if (!place) continue;
    if (place.starts) {
      if (sample) yield sample;
      sample = { __key__: place.key, files: new Map() };
    }
    if (place.keep) sample!.files.set(place.ext, await member.bytes());
  }
  if (sample) yield sample;
}

/** Reads a webdataset shard from a stream and yields its samples. */
export function readSamples(
  stream: ReadableStream<Uint8Array>,
  archive: string,
  options: ReadSamplesOptions = {},
): AsyncGenerator<WdsSample, void, undefined> {
  return groupSamples(readTar(stream, archive, options), archive, options);
}

/** Code-point order, as Python's sorted() orders the extensions (JS sort compares UTF-16 units). */
function compareCodePoints(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d) return d;
  }
  return x.length - y.length;
}

/**
 * The tar entries wds.TarWriter writes for a sample: "KEY.EXT" per extension, in sorted order, skipping
 * extensions that start with "_" (webdataset's metadata). A key or extension that would not read back as
 * the same sample (a dot in the key's basename, a slash in the extension) is refused.
 */
export function sampleEntries(sample: WdsSampleInput, options: Omit<TarEntry, 'path' | 'data'> = {}): TarEntry[] {
  const files: [string, Uint8Array][] = sample.files instanceof Map ? [...sample.files] : Object.entries(sample.files);
  const key = sample.__key__;
  return files
    .filter(([ext]) => !ext.startsWith('_'))
    .sort(([a], [b]) => compareCodePoints(a, b))
    .map(([ext, data]) => {
      const path = `${key}.${ext}`;
      const split = basePlusExt(path);
      if (!split || split[0] !== key || split[1] !== ext) {
        throw new TypeError(`webdataset writer: ${JSON.stringify(path)} would not read back as key ${JSON.stringify(key)} + extension ${JSON.stringify(ext)}`);
      }
      return { ...options, path, data };
    });
}

/** Writes samples as a webdataset shard, with wds.TarWriter's headers unless `defaults` says otherwise. */
export function writeSamples(
  samples: Iterable<WdsSampleInput> | AsyncIterable<WdsSampleInput>,
  defaults: TarEntryDefaults = WEBDATASET_TAR_DEFAULTS,
): ReadableStream<Uint8Array> {
  async function* entries(): AsyncGenerator<TarEntry> {
    for await (const sample of samples) yield* sampleEntries(sample);
  }
  return writeTar(entries(), defaults);
}

export interface TarSummary {
  archive: string;
  /** Every member header, metadata headers (pax, long names) not counted. */
  members: number;
  kinds: Record<'file' | 'directory' | 'symlink' | 'hardlink' | 'other', number>;
  /** Body bytes of all regular files. */
  fileBytes: number;
  /** Webdataset samples, grouped as webdataset would. */
  samples: number;
  /** Per extension of sample members (lowercased): how many members, how many bytes. Sorted by extension. */
  extensions: { ext: string; members: number; bytes: number }[];
  /** Regular files that belong to no sample (no extension, or webdataset metadata). */
  filesOutsideSamples: number;
}

/** What a tar holds, for `dcw inspect`: reads headers only, skipping every body. */
export async function describeTar(stream: ReadableStream<Uint8Array>, archive: string, options: TarReadOptions = {}): Promise<TarSummary> {
  const summary: TarSummary = {
    archive,
    members: 0,
    kinds: { file: 0, directory: 0, symlink: 0, hardlink: 0, other: 0 },
    fileBytes: 0,
    samples: 0,
    extensions: [],
    filesOutsideSamples: 0,
  };
  const grouper = new Grouper(archive, {});
  const byExt = new Map<string, { ext: string; members: number; bytes: number }>();
  for await (const member of readTar(stream, archive, options)) {
    summary.members++;
    summary.kinds[member.type]++;
    if (member.type === 'file') summary.fileBytes += member.size;
    const place = grouper.place(member);
    if (!place) {
      if (member.type === 'file') summary.filesOutsideSamples++;
      continue;
    }
    if (place.starts) summary.samples++;
    const entry = byExt.get(place.ext) ?? { ext: place.ext, members: 0, bytes: 0 };
    entry.members++;
    entry.bytes += member.size;
    byExt.set(place.ext, entry);
  }
  summary.extensions = [...byExt.values()].sort((a, b) => compareCodePoints(a.ext, b.ext));
  return summary;
}
