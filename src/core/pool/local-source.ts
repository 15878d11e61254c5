/**
 * A pool from local files (a folder the user picked or dropped) as a PoolSource, so it goes through the same
 * ingest as an HTTP pool (src/core/pool/ingest.ts): same plan, progress, atomic shards and resume.
 *
 * Paths are relative to what was picked: the folder itself (`metadata/x.parquet`), or, for a drop of several
 * items, the virtual folder holding them. Accepted layouts, tried in this order:
 *   1. the pool's own folder: `metadata/*.parquet` (+ same-stem `.npz`), `shards/{:08d}.tar` (+ `{:08d}_stats.json`,
 *      `{:08d}.parquet`), `ground_truth/*.parquet` — CommonPool's layout (download_upstream.py's `$data_dir`);
 *   2. a folder holding exactly one such pool folder (`small/metadata/…`, `small/shards/…`);
 *   3. a flat folder: `{:08d}.tar` shards with their `_stats.json` / `{:08d}.parquet`, and the metadata `.parquet`
 *      files (any other stem) with their `.npz` beside them.
 * The listing always uses the official paths (`metadata/…`, `shards/…`), whatever the layout on disk, so the
 * stored pool looks the same as one ingested over HTTP. Hidden files (`.DS_Store`, `._x`) and files outside
 * these places are ignored.
 *
 * Bytes are read with Blob.stream(): never a whole file at once, so a 2 GB tar streams like a download.
 */
import { FormatError } from '../formats/errors.ts';
import type { PoolFileEntry, PoolListing, PoolShardEntry, PoolSource } from './ingest.ts';
import { shardNumber } from './ingest.ts';
import { sha256Hex } from './sha256.ts';

/** A picked or dropped file: its path inside the pick (`metadata/x.parquet`, `/`-separated) and its bytes. */
export interface LocalFile {
  path: string;
  blob: Blob;
}

export type LocalLayoutKind = 'official' | 'flat';

export interface LocalLayout {
  kind: LocalLayoutKind;
  /** Folder of the pick that holds the pool: '' for the pick itself, or `name/`. */
  root: string;
  /** Official path → path in the pick. */
  paths: Map<string, string>;
  /** The files in official paths, without sample counts (those come from the `_stats.json` files). */
  listing: PoolListing;
}

const SHARD_TAR = /^\d{8,}\.tar$/;
const SHARD_SIDE = /^\d{8,}(?:_stats\.json|\.parquet)$/;
const LAYOUTS =
  'pick the pool’s folder (holding metadata/ and shards/), a folder holding one such folder, or a folder of {:08d}.tar shards with the metadata .parquet files beside them';

/** `a//b/./c` → `a/b/c`; undefined for a path that leaves the pick or is hidden (a component starting with '.'). */
function cleanPath(path: string): string | undefined {
  const parts = path.replace(/\\/g, '/').split('/').filter((p) => p !== '' && p !== '.');
  if (!parts.length || parts.some((p) => p === '..' || p.startsWith('.'))) return undefined;
  return parts.join('/');
}

/**
 * Finds the pool in a list of picked files (`where` names the pick in errors). Throws a FormatError naming the
 * problem and the accepted layouts when there is none.
 */
export function detectLocalLayout(files: readonly { path: string; size: number }[], where: string): LocalLayout {
  const sizes = new Map<string, number>();
  for (const f of files) {
    const path = cleanPath(f.path);
    if (path !== undefined) sizes.set(path, f.size);
  }
  if (!sizes.size) throw new FormatError(where, `no files: ${LAYOUTS}`);

  // Official layout: a metadata/ folder with parquet files, in the pick itself or one folder down.
  const roots = new Set<string>();
  for (const path of sizes.keys()) {
    const m = /^(?:([^/]+)\/)?metadata\/[^/]+\.parquet$/.exec(path);
    if (m) roots.add(m[1] === undefined ? '' : `${m[1]}/`);
  }
  if (roots.size > 1) {
    if (roots.has('')) roots.clear(), roots.add(''); // the pick is a pool; its subfolders are not looked at
    else throw new FormatError(where, `holds several pools (${[...roots].sort().join(', ')}): pick one of them`);
  }
  const paths = new Map<string, string>();
  const metadata: PoolFileEntry[] = [];
  const extras: PoolFileEntry[] = [];
  const shards: PoolShardEntry[] = [];
  const take = (official: string, onDisk: string, into: PoolFileEntry[]) => {
    paths.set(official, onDisk);
    into.push({ path: official, bytes: sizes.get(onDisk)! });
  };
  const takeShard = (name: string, onDisk: string) => {
    const path = `shards/${name}`;
    paths.set(path, onDisk);
    shards.push({ path, bytes: sizes.get(onDisk)!, shard: shardNumber(path)!, samples: null });
  };

  let kind: LocalLayoutKind;
  let root: string;
  if (roots.size === 1) {
    kind = 'official';
    root = [...roots][0]!;
    for (const [onDisk] of [...sizes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (!onDisk.startsWith(root)) continue;
      const rel = onDisk.slice(root.length);
      const [dir, name, deeper] = rel.split('/');
      if (deeper !== undefined || name === undefined) continue;
      if (dir === 'metadata' && name.endsWith('.parquet')) take(rel, onDisk, metadata);
      else if (dir === 'shards' && SHARD_TAR.test(name)) takeShard(name, onDisk);
      else if (dir === 'shards' && name.endsWith('.tar')) throw new FormatError(`${where}/${onDisk}`, 'shards are named {:08d}.tar (CommonPool’s layout)');
      else if (dir === 'shards' && SHARD_SIDE.test(name)) take(rel, onDisk, extras);
      else if (dir === 'ground_truth' && name.endsWith('.parquet')) take(rel, onDisk, extras);
    }
    for (const m of metadata) {
      const npz = m.path.replace(/\.parquet$/, '.npz');
      if (sizes.has(root + npz)) take(npz, root + npz, extras);
    }
  } else {
    kind = 'flat';
    // The files directly in the pick; a pick that holds a single folder is looked into.
    const tops = new Set([...sizes.keys()].map((p) => (p.includes('/') ? p.split('/')[0]! : '')));
    root = tops.size === 1 && !tops.has('') ? `${[...tops][0]!}/` : '';
    const names = [...sizes.keys()].filter((p) => p.startsWith(root) && !p.slice(root.length).includes('/')).map((p) => p.slice(root.length)).sort();
    for (const name of names) {
      if (SHARD_TAR.test(name)) takeShard(name, root + name);
      else if (name.endsWith('.tar')) throw new FormatError(`${where}/${root}${name}`, 'shards are named {:08d}.tar (CommonPool’s layout)');
      else if (SHARD_SIDE.test(name)) take(`shards/${name}`, root + name, extras);
      else if (name.endsWith('.parquet')) take(`metadata/${name}`, root + name, metadata);
    }
    for (const m of metadata) {
      const npz = m.path.slice('metadata/'.length).replace(/\.parquet$/, '.npz');
      if (sizes.has(root + npz)) take(`metadata/${npz}`, root + npz, extras);
    }
    if (!metadata.length) {
      const found = shards.length ? `${shards.length} shard tar${shards.length === 1 ? '' : 's'}${root ? ` in ${root}` : ''} but no metadata .parquet` : 'no metadata/*.parquet and no .parquet or {:08d}.tar files';
      throw new FormatError(where, `${found} — ${LAYOUTS}`);
    }
  }
  if (!metadata.length) throw new FormatError(`${where}/${root}metadata`, 'holds no .parquet files (the pool’s metadata)');
  shards.sort((a, b) => a.shard - b.shard);
  return { kind, root, paths, listing: { metadata, shards, extras } };
}

/** A short digest of a listing's paths and sizes: the same folder picked again gives the same one. */
export function listingFingerprint(listing: PoolListing): string {
  const lines = [...listing.metadata, ...listing.extras, ...listing.shards].map((f) => `${f.path}\t${f.bytes}`).sort();
  return sha256Hex(lines.join('\n')).slice(0, 16);
}

/**
 * Whether `current` (a folder picked again) holds every file of `planned` (what the ingest set out to read)
 * with the same size: null if so, else the first difference, for an error message.
 */
export function compareListings(planned: PoolListing, current: PoolListing): string | null {
  const now = new Map([...current.metadata, ...current.extras, ...current.shards].map((f) => [f.path, f.bytes]));
  for (const f of [...planned.metadata, ...planned.extras, ...planned.shards]) {
    if (!now.has(f.path)) return `${f.path} is missing`;
    if (f.bytes !== null && now.get(f.path) !== f.bytes) return `${f.path} is ${now.get(f.path)} bytes, it was ${f.bytes}`;
  }
  return null;
}

export interface LocalPoolSourceOptions {
  /** The source id the ingest plan records (a resumed ingest must come from the same id). */
  id: string;
  /** The pick's name, for errors (`pool`, `3 dropped items`). */
  name: string;
}

/** Local files in one of the accepted layouts (see the top of this file), read as streams. */
export class LocalPoolSource implements PoolSource {
  readonly id: string;
  readonly layout: LocalLayout;
  private readonly blobs = new Map<string, Blob>();

  constructor(files: readonly LocalFile[], private readonly options: LocalPoolSourceOptions) {
    this.id = options.id;
    this.layout = detectLocalLayout(files.map((f) => ({ path: f.path, size: f.blob.size })), options.name);
    const byPath = new Map(files.map((f) => [cleanPath(f.path), f.blob]));
    for (const [official, onDisk] of this.layout.paths) this.blobs.set(official, byPath.get(onDisk)!);
  }

  /** The listing with each shard's sample count from its `_stats.json` ("successes"), where there is one. */
  async list(signal?: AbortSignal): Promise<PoolListing> {
    const { metadata, extras, shards } = this.layout.listing;
    const counted: PoolShardEntry[] = [];
    for (const s of shards) {
      signal?.throwIfAborted();
      const stats = this.blobs.get(s.path.replace(/\.tar$/, '_stats.json'));
      let samples: number | null = null;
      if (stats && stats.size < 1 << 20) {
        try {
          const successes = (JSON.parse(await stats.text()) as { successes?: unknown }).successes;
          if (Number.isSafeInteger(successes) && (successes as number) >= 0) samples = successes as number;
        } catch {
          // an unreadable stats file: the ingest counts the samples as it reads the tar
        }
      }
      counted.push({ ...s, samples });
    }
    return { metadata: [...metadata], extras: [...extras], shards: counted };
  }

  async open(path: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    signal?.throwIfAborted();
    const blob = this.blobs.get(path);
    const onDisk = `${this.options.name}/${this.layout.paths.get(path) ?? path}`;
    if (!blob) throw new FormatError(onDisk, 'is not among the picked files');
    // A file moved, changed or deleted since it was picked fails to read (NotReadableError); no retry helps.
    const reader = blob.stream().getReader();
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          throw new FormatError(onDisk, `cannot be read (${(err as Error).message || (err as Error).name}): was it moved, changed or deleted since it was picked? Pick the folder again`);
        }
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
  }
}
