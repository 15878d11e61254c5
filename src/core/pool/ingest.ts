/**
 * Ingest a pool in CommonPool's layout (facts §1: `metadata/*.parquet`, `shards/{:08d}.tar` with
 * `{:08d}_stats.json`) from a source into a PoolStore (src/core/pool/store.ts), resumably.
 *
 * Order: the listing is fetched once and stored as the plan (so a resumed ingest fetches the same files),
 * then the metadata files (small: the Inspect view can open as soon as they are in), then any side files,
 * then the shards one by one, each streamed through the webdataset reader and stored with its completion
 * record in one atomic write. Resuming skips what the store reports complete; a shard cut off mid-way is
 * fetched again from its start (a tar stream has no safe restart point inside a shard).
 *
 * Memory: one shard's samples at a time (CommonPool's shards are 10,000 samples, tens of MB), plus one
 * metadata file's chunks while it is downloaded.
 */
import { FormatError } from '../formats/errors.ts';
import { normalizeUid } from '../formats/uid.ts';
import { readSamples } from '../formats/webdataset.ts';
import type { PoolStore, StoredSample } from './store.ts';

export interface PoolFileEntry {
  /** Path relative to the pool root, e.g. `metadata/<stem>.parquet`. */
  path: string;
  /** Size in bytes when the source says; null when unknown. */
  bytes: number | null;
}

export interface PoolShardEntry extends PoolFileEntry {
  shard: number;
  /** Samples in the shard (its `_stats.json` "successes"), or null when unknown. */
  samples: number | null;
}

/** What a pool source holds. */
export interface PoolListing {
  metadata: PoolFileEntry[];
  shards: PoolShardEntry[];
  /** Other files worth keeping (stats, the embedded pool's ground-truth side file). */
  extras: PoolFileEntry[];
}

export interface IngestPlan {
  version: 1;
  /** The source's id (its base URL): a resumed ingest must come from the same place. */
  source: string;
  listing: PoolListing;
}

export interface PoolSource {
  /** Stable id of the source (its base URL). */
  readonly id: string;
  list(signal?: AbortSignal): Promise<PoolListing>;
  /** The bytes of one file of the listing, as a stream. */
  open(path: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
}

export interface IngestProgress {
  phase: 'listing' | 'metadata' | 'shards' | 'done';
  /** File being fetched now, if any. */
  current: string | null;
  /** Bytes stored (complete files and shards) plus the bytes of the file in flight. */
  bytesDone: number;
  /** Sum of the listed sizes; null while unknown. */
  bytesTotal: number | null;
  /** Samples in completely stored shards. */
  samplesDone: number;
  samplesTotal: number | null;
  filesDone: number;
  filesTotal: number;
  shardsDone: number;
  shardsTotal: number;
  /** Averages over this session (bytes fetched since this ingest call started). */
  bytesPerSecond: number;
  samplesPerSecond: number;
  /** Seconds left at this session's rate; null while unknown. */
  etaSeconds: number | null;
  /** Bytes that were already stored when this session started (a resume). */
  resumedBytes: number;
}

export interface IngestOptions {
  signal?: AbortSignal;
  onProgress?(progress: IngestProgress): void;
  /** Least time between two progress reports (the last one is always reported). Default 200 ms. */
  progressIntervalMs?: number;
  /** Clock in milliseconds (tests). */
  now?(): number;
  /** Tries per file on a network error before the ingest fails. Default 3. */
  attempts?: number;
}

export interface IngestResult {
  samples: number;
  shards: number;
  files: number;
  bytes: number;
  /** Files and shards fetched by this call (the rest were already stored). */
  fetched: string[];
}

/** The shard number of `shards/{:08d}.tar`, or undefined for other names. */
export function shardNumber(path: string): number | undefined {
  const m = /(?:^|\/)(\d{8,})\.tar$/.exec(path);
  return m ? Number(m[1]) : undefined;
}

/** Total of the listed sizes, or null if any is unknown. */
export function listedBytes(listing: PoolListing): number | null {
  let total = 0;
  for (const f of [...listing.metadata, ...listing.extras, ...listing.shards]) {
    if (f.bytes === null) return null;
    total += f.bytes;
  }
  return total;
}

export function listedSamples(listing: PoolListing): number | null {
  let total = 0;
  for (const s of listing.shards) {
    if (s.samples === null) return null;
    total += s.samples;
  }
  return total;
}

/** Checks a listing's shape (it may come from a JSON file on a server) and returns it normalised. */
export function checkListing(value: unknown, where: string): PoolListing {
  const fail = (problem: string): never => {
    throw new FormatError(where, problem);
  };
  if (!value || typeof value !== 'object') fail('a pool listing is a JSON object with "metadata" and "shards"');
  const v = value as Record<string, unknown>;
  const files = (name: string, required: boolean): PoolFileEntry[] => {
    const list = v[name];
    if (list === undefined && !required) return [];
    if (!Array.isArray(list)) return fail(`"${name}" must be a list of {path, bytes}`);
    return list.map((f, i) => {
      const path = (f as { path?: unknown })?.path;
      const bytes = (f as { bytes?: unknown })?.bytes ?? null;
      if (typeof path !== 'string' || !path || path.startsWith('/') || path.split('/').includes('..')) {
        return fail(`${name}[${i}]: "path" must be a relative path inside the pool`);
      }
      if (bytes !== null && !(Number.isSafeInteger(bytes) && (bytes as number) >= 0)) return fail(`${name}[${i}]: "bytes" must be a size or null`);
      return { path, bytes: bytes as number | null };
    });
  };
  const metadata = files('metadata', true);
  if (!metadata.length) fail('the pool has no metadata parquet files');
  for (const m of metadata) if (!m.path.endsWith('.parquet')) fail(`${m.path}: metadata files are .parquet`);
  const shards = files('shards', true).map((f, i): PoolShardEntry => {
    const shard = shardNumber(f.path);
    if (shard === undefined) return fail(`${f.path}: shards are named {:08d}.tar`);
    const samples = ((v.shards as unknown[])[i] as { samples?: unknown }).samples ?? null;
    if (samples !== null && !(Number.isSafeInteger(samples) && (samples as number) >= 0)) return fail(`${f.path}: "samples" must be a count or null`);
    return { ...f, shard, samples: samples as number | null };
  });
  const seen = new Set<number>();
  for (const s of shards) {
    if (seen.has(s.shard)) fail(`shard ${s.shard} is listed twice`);
    seen.add(s.shard);
  }
  shards.sort((a, b) => a.shard - b.shard);
  return { metadata, shards, extras: files('extras', false) };
}

class RateMeter {
  private readonly started: number;
  sessionBytes = 0;
  sessionSamples = 0;

  constructor(private readonly now: () => number) {
    this.started = now();
  }

  rates(): { bytesPerSecond: number; samplesPerSecond: number } {
    const seconds = (this.now() - this.started) / 1000;
    if (seconds <= 0) return { bytesPerSecond: 0, samplesPerSecond: 0 };
    return { bytesPerSecond: this.sessionBytes / seconds, samplesPerSecond: this.sessionSamples / seconds };
  }
}

/** Copies a chunk into a buffer of its own size (a view of a larger buffer would be stored whole). */
function own(chunk: Uint8Array): Uint8Array {
  return chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength ? chunk : chunk.slice();
}

/** Passes a stream through, counting its bytes and checking for an abort between chunks. */
function counted(stream: ReadableStream<Uint8Array>, onBytes: (n: number) => void, signal?: AbortSignal): ReadableStream<Uint8Array> {
  return stream.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      signal?.throwIfAborted();
      onBytes(chunk.byteLength);
      controller.enqueue(chunk);
    },
  }));
}

/** Bytes after a tar's end-of-archive marker that a shard may carry (GNU tar pads to 10 KiB records). */
const MAX_TAR_TRAILER = 64 * 1024;

/**
 * Like `counted`, for a stream read by the tar reader: it stops at the end-of-archive marker and cancels the
 * rest, but the record padding after the marker is part of the file the listing sized. Whether that padding
 * arrived in the last chunk or a later one depends on the network, so on cancel the trailer is read and counted
 * (up to MAX_TAR_TRAILER; more than that is left unread and the size check then reports the file as damaged).
 */
function countedTar(stream: ReadableStream<Uint8Array>, onBytes: (n: number) => void, signal?: AbortSignal): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      signal?.throwIfAborted();
      const { done, value } = await reader.read();
      if (done) return controller.close();
      onBytes(value.byteLength);
      controller.enqueue(value);
    },
    async cancel(reason) {
      let trailer = 0;
      while (trailer <= MAX_TAR_TRAILER && !signal?.aborted) {
        const { done, value } = await reader.read();
        if (done) return;
        trailer += value.byteLength;
        onBytes(value.byteLength);
      }
      await reader.cancel(reason);
    },
  });
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return Boolean(signal?.aborted) || (err as { name?: string })?.name === 'AbortError';
}

/**
 * Ingests `source` into `store`, resuming where an earlier (interrupted) ingest into the same store
 * stopped. Rejects with the signal's reason when aborted; what was stored completely stays stored.
 */
export async function ingestPool(source: PoolSource, store: PoolStore, options: IngestOptions = {}): Promise<IngestResult> {
  const { signal } = options;
  const now = options.now ?? (() => Date.now());
  const interval = options.progressIntervalMs ?? 200;
  const attempts = Math.max(1, options.attempts ?? 3);
  const meter = new RateMeter(now);
  let lastReport = -Infinity;

  let plan = await store.readPlan<IngestPlan>();
  const emptyListing: PoolListing = { metadata: [], shards: [], extras: [] };
  const state: IngestProgress = {
    phase: 'listing', current: null, bytesDone: 0, bytesTotal: null, samplesDone: 0, samplesTotal: null,
    filesDone: 0, filesTotal: 0, shardsDone: 0, shardsTotal: 0, bytesPerSecond: 0, samplesPerSecond: 0, etaSeconds: null, resumedBytes: 0,
  };
  let inFlight = 0;
  const report = (force = false) => {
    if (!options.onProgress) return;
    const t = now();
    if (!force && t - lastReport < interval) return;
    lastReport = t;
    const rates = meter.rates();
    const bytesDone = state.bytesDone + inFlight;
    const left = state.bytesTotal === null ? null : Math.max(0, state.bytesTotal - bytesDone);
    options.onProgress({
      ...state,
      bytesDone,
      ...rates,
      etaSeconds: state.phase === 'done' ? 0 : left !== null && rates.bytesPerSecond > 0 ? left / rates.bytesPerSecond : null,
    });
  };

  if (plan && plan.source !== source.id) {
    throw new FormatError(source.id, `this pool was ingested from ${plan.source}; delete it to ingest another source`);
  }
  if (!plan) {
    report(true);
    signal?.throwIfAborted();
    plan = { version: 1, source: source.id, listing: await source.list(signal) };
    signal?.throwIfAborted();
    await store.writePlan(plan);
  }
  const listing = plan.listing ?? emptyListing;
  const files = [...listing.metadata, ...listing.extras];
  const doneFiles = new Map((await store.completedFiles()).map((f) => [f.path, f.bytes]));
  const doneShards = new Map((await store.completedShards()).map((s) => [s.shard, s]));
  state.filesTotal = files.length;
  state.shardsTotal = listing.shards.length;
  state.bytesTotal = listedBytes(listing);
  state.samplesTotal = listedSamples(listing);
  for (const f of files) {
    if (doneFiles.has(f.path)) {
      state.filesDone++;
      state.bytesDone += doneFiles.get(f.path)!;
    }
  }
  for (const s of listing.shards) {
    const done = doneShards.get(s.shard);
    if (done) {
      state.shardsDone++;
      state.bytesDone += done.bytes;
      state.samplesDone += done.samples;
    }
  }
  state.resumedBytes = state.bytesDone;
  const fetched: string[] = [];
  const onBytes = (n: number) => {
    inFlight += n;
    meter.sessionBytes += n;
    report();
  };

  // Network errors get a few more tries; format errors and aborts end the ingest at once.
  async function withRetries<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const before = inFlight;
      try {
        return await work();
      } catch (err) {
        meter.sessionBytes -= inFlight - before;
        inFlight = before;
        if (isAbort(err, signal) || err instanceof FormatError || attempt >= attempts) throw err;
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      }
    }
  }

  state.phase = 'metadata';
  for (const file of files) {
    if (doneFiles.has(file.path)) continue;
    state.current = file.path;
    report(true);
    const chunks = await withRetries(async () => {
      const got: Uint8Array[] = [];
      const reader = counted(await source.open(file.path, signal), onBytes, signal).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        got.push(own(value));
      }
      return got;
    });
    const size = chunks.reduce((n, c) => n + c.byteLength, 0);
    if (file.bytes !== null && size !== file.bytes) throw new FormatError(file.path, `the listing says ${file.bytes} bytes, ${size} arrived`);
    signal?.throwIfAborted();
    await store.putFile(file.path, chunks);
    inFlight = 0;
    state.bytesDone += size;
    state.filesDone++;
    fetched.push(file.path);
    report();
  }

  state.phase = 'shards';
  for (const entry of listing.shards) {
    if (doneShards.has(entry.shard)) continue;
    state.current = entry.path;
    report(true);
    let size = 0;
    const samples = await withRetries(async () => {
      const got: StoredSample[] = [];
      const seen = new Set<string>();
      size = 0;
      const stream = countedTar(await source.open(entry.path, signal), (n) => {
        size += n;
        onBytes(n);
      }, signal);
      for await (const sample of readSamples(stream, entry.path, { duplicates: 'error' })) {
        got.push(toStoredSample(sample.__key__, sample.files, entry.shard, entry.path, seen));
      }
      return got;
    });
    if (entry.bytes !== null && size !== entry.bytes) throw new FormatError(entry.path, `the listing says ${entry.bytes} bytes, ${size} arrived`);
    signal?.throwIfAborted();
    await store.putShard({ shard: entry.shard, path: entry.path, samples: samples.length, bytes: size }, samples);
    inFlight = 0;
    state.bytesDone += size;
    state.samplesDone += samples.length;
    state.shardsDone++;
    meter.sessionSamples += samples.length;
    if (entry.samples !== null && entry.samples !== samples.length && state.samplesTotal !== null) {
      state.samplesTotal += samples.length - entry.samples; // the stats file was wrong; the tar is the truth
    }
    fetched.push(entry.path);
    report();
  }

  state.phase = 'done';
  state.current = null;
  report(true);
  return { samples: state.samplesDone, shards: state.shardsDone, files: state.filesDone, bytes: state.bytesDone, fetched };
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function toStoredSample(key: string, members: Map<string, Uint8Array>, shard: number, archive: string, seen: Set<string>): StoredSample {
  const json = members.get('json');
  if (!json) throw new FormatError(archive, `sample ${key} has no .json member (it carries the uid)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(json));
  } catch {
    throw new FormatError(archive, `sample ${key}: ${key}.json is not valid JSON`);
  }
  const raw = (parsed as { uid?: unknown })?.uid;
  const uid = typeof raw === 'string' ? normalizeUid(raw) : undefined;
  if (!uid) throw new FormatError(archive, `sample ${key}: "uid" in ${key}.json is not 32 hex digits`);
  if (seen.has(uid)) throw new FormatError(archive, `uid ${uid} occurs twice in the shard (sample ${key})`);
  seen.add(uid);
  return { uid, key, shard, files: Object.fromEntries(members) };
}

// ───────────────────────────── HTTP source ─────────────────────────────

/** The href targets of an HTML directory index (python -m http.server, nginx/Apache autoindex, dcw serve). */
export function parseDirectoryListing(html: string): string[] {
  const names = new Set<string>();
  for (const m of html.matchAll(/href\s*=\s*["']([^"'?#]+)["']/gi)) {
    let name = m[1]!;
    try {
      name = decodeURIComponent(name);
    } catch {
      continue;
    }
    name = name.replace(/^\.\//, '');
    const base = name.split('/').filter(Boolean).pop();
    if (base && !name.startsWith('..')) names.add(base);
  }
  return [...names].sort();
}

export interface HttpPoolSourceOptions {
  /** The pool's root, e.g. `https://host/commonpool/small/` or `/pool/`. */
  baseUrl: string;
  /** A JSON listing (PoolListing's shape) to use instead of discovering files (dcw serve's `/api/pool`). */
  listingUrl?: string;
  fetch?: typeof fetch;
  /** Concurrent HEAD / stats requests while listing. Default 6. */
  concurrency?: number;
}

/**
 * A pool behind HTTP in CommonPool's layout. Files are discovered from the directory indexes of
 * `metadata/` and `shards/` (the official layout has no manifest; its metadata stems are random hex),
 * shard sizes from HEAD, sample counts from each shard's `{:08d}_stats.json`, and a parquet's same-stem
 * `.npz` (its embeddings) as an extra; or all of it from one JSON listing when the server offers one.
 */
export class HttpPoolSource implements PoolSource {
  readonly id: string;
  private readonly base: string;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly options: HttpPoolSourceOptions) {
    this.base = options.baseUrl.endsWith('/') ? options.baseUrl : options.baseUrl + '/';
    this.id = this.base;
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
  }

  url(path: string): string {
    return this.base + path.split('/').map(encodeURIComponent).join('/');
  }

  async open(path: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await this.fetchFn(this.url(path), { signal });
    if (!res.ok || !res.body) throw new FormatError(this.url(path), `HTTP ${res.status} ${res.statusText}`.trim());
    return res.body;
  }

  async list(signal?: AbortSignal): Promise<PoolListing> {
    if (this.options.listingUrl) {
      const res = await this.fetchFn(this.options.listingUrl, { signal });
      if (!res.ok) throw new FormatError(this.options.listingUrl, `HTTP ${res.status}`);
      let json: unknown;
      try {
        json = await res.json();
      } catch {
        throw new FormatError(this.options.listingUrl, 'the pool listing is not JSON');
      }
      return checkListing(json, this.options.listingUrl);
    }
    const metadataDir = await this.directory('metadata/', signal);
    const metadataNames = metadataDir.filter((n) => n.endsWith('.parquet'));
    if (!metadataNames.length) {
      throw new FormatError(this.url('metadata/'), 'no .parquet files listed: the server must offer a directory index of metadata/ (or a JSON listing)');
    }
    const shardDir = await this.directory('shards/', signal).catch(() => null);
    let shardNames = shardDir?.filter((n) => /^\d{8,}\.tar$/.test(n)) ?? null;
    if (!shardNames?.length) shardNames = await this.probeShards(signal);
    const limit = this.options.concurrency ?? 6;
    const metadata = await mapLimit(metadataNames, limit, async (n) => ({ path: `metadata/${n}`, bytes: await this.size(`metadata/${n}`, signal) }));
    const shards = await mapLimit(shardNames, limit, async (n): Promise<PoolShardEntry> => {
      const path = `shards/${n}`;
      const [bytes, samples] = await Promise.all([this.size(path, signal), this.statsSamples(path.replace(/\.tar$/, '_stats.json'), signal)]);
      return { path, shard: shardNumber(path)!, bytes, samples };
    });
    shards.sort((a, b) => a.shard - b.shard);
    // A parquet's embeddings (`<stem>.npz`, CommonPool's --download_npz) come along as a side file.
    const npzNames = metadataDir.filter((n) => n.endsWith('.npz') && metadataNames.includes(`${n.slice(0, -4)}.parquet`));
    const extras = await mapLimit(npzNames, limit, async (n) => ({ path: `metadata/${n}`, bytes: await this.size(`metadata/${n}`, signal) }));
    return { metadata, shards, extras };
  }

  /** File names in a directory index, or throws when the server gives none. */
  private async directory(dir: string, signal?: AbortSignal): Promise<string[]> {
    const res = await this.fetchFn(this.url(dir), { signal });
    if (!res.ok) throw new FormatError(this.url(dir), `HTTP ${res.status}: no directory index`);
    return parseDirectoryListing(await res.text());
  }

  /** Without an index of shards/: HEAD 00000000.tar, 00000001.tar, … until one is missing. */
  private async probeShards(signal?: AbortSignal): Promise<string[]> {
    const names: string[] = [];
    for (let i = 0; ; i++) {
      const name = `${String(i).padStart(8, '0')}.tar`;
      const res = await this.fetchFn(this.url(`shards/${name}`), { method: 'HEAD', signal });
      if (!res.ok) break;
      names.push(name);
    }
    return names;
  }

  private async size(path: string, signal?: AbortSignal): Promise<number | null> {
    const res = await this.fetchFn(this.url(path), { method: 'HEAD', signal });
    if (!res.ok) throw new FormatError(this.url(path), `HTTP ${res.status} ${res.statusText}`.trim());
    const length = Number(res.headers.get('content-length'));
    return Number.isSafeInteger(length) && length >= 0 && res.headers.get('content-length') !== null ? length : null;
  }

  private async statsSamples(path: string, signal?: AbortSignal): Promise<number | null> {
    const res = await this.fetchFn(this.url(path), { signal });
    if (!res.ok) return null;
    try {
      const stats = (await res.json()) as { successes?: unknown };
      return Number.isSafeInteger(stats.successes) ? (stats.successes as number) : null;
    } catch {
      return null;
    }
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}
