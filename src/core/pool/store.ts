/**
 * Where an ingested pool lives: a small interface that the ingest (src/core/pool/ingest.ts) writes through,
 * so the same ingest runs against IndexedDB in a browser worker (workers/idb-pool-store.ts), the memory
 * store below in Node tests, or a file store on a server.
 *
 * Layout choice: each sample is stored on its own, keyed by uid, with every member of the webdataset
 * sample kept as raw bytes by extension (jpg, json, txt, …). A viewer fetches one picture by uid with one
 * keyed read, and nothing has to parse a tar to show a sample. Metadata parquet files are kept whole (as
 * Blobs in IndexedDB, which browsers keep on disk), so they are read back by byte ranges and only the
 * columns a view needs come into memory: a pool larger than memory still opens.
 *
 * Atomicity: `putShard` stores all of a shard's samples and the shard's completion record together (one
 * IndexedDB transaction), and `putFile` stores a file whole or not at all, so a reload or crash mid-way never
 * leaves a half-written shard that counts as done; resuming simply ingests that shard again.
 */

/** A file of the pool stored whole (metadata parquet, stats json, ground truth side file). */
export interface StoredFileRecord {
  /** Path relative to the pool root, e.g. `metadata/<stem>.parquet`. */
  path: string;
  bytes: number;
}

/** The completion record of a shard: written in the same transaction as its samples. */
export interface StoredShardRecord {
  shard: number;
  /** Path relative to the pool root, e.g. `shards/00000000.tar`. */
  path: string;
  /** Samples stored from this shard. */
  samples: number;
  /** Bytes of the tar as downloaded. */
  bytes: number;
}

/** One webdataset sample, keyed by its uid (from the sample's json). */
export interface StoredSample {
  uid: string;
  /** The webdataset key (`000000030042`). */
  key: string;
  shard: number;
  /** Member bytes by extension (`jpg`, `json`, `txt`, …), exactly as they were in the tar. */
  files: Record<string, Uint8Array>;
}

/** Anything that can hand out byte ranges of a stored file (src/core/formats/parquet.ts reads through it). */
export interface StoredByteSource {
  byteLength: number;
  slice(start: number, end: number): Uint8Array | Promise<Uint8Array>;
}

export interface PoolStore {
  /** The ingest plan stored when the ingest started (what to fetch), or undefined for a new pool. */
  readPlan<T>(): Promise<T | undefined>;
  writePlan<T>(plan: T): Promise<void>;
  /** Files and shards stored completely so far. */
  completedFiles(): Promise<StoredFileRecord[]>;
  completedShards(): Promise<StoredShardRecord[]>;
  /** Stores a whole file at once (all chunks or nothing). */
  putFile(path: string, chunks: readonly Uint8Array[]): Promise<void>;
  /** Stores every sample of a shard and the shard's completion record atomically. */
  putShard(record: StoredShardRecord, samples: readonly StoredSample[]): Promise<void>;
  /** A stored file for range reads, or undefined if it is not (completely) stored. */
  openFile(path: string): Promise<StoredByteSource | undefined>;
  getSample(uid: string): Promise<StoredSample | undefined>;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * A pool store in memory, with the same all-or-nothing semantics as the IndexedDB one. `failAfterSamples`
 * makes `putShard` throw once that many samples are stored in total (a crash in the middle of a write),
 * before anything of that shard becomes visible; tests use it to check that a resumed ingest ends complete.
 */
export class MemoryPoolStore implements PoolStore {
  private plan: unknown;
  private readonly files = new Map<string, Uint8Array>();
  private readonly shards = new Map<number, StoredShardRecord>();
  private readonly samples = new Map<string, StoredSample>();
  /** Every putShard and putFile call, in order (what a resumed ingest fetched again). */
  readonly writes: string[] = [];
  failAfterSamples = Infinity;

  async readPlan<T>(): Promise<T | undefined> {
    return this.plan === undefined ? undefined : (structuredClone(this.plan) as T);
  }

  async writePlan<T>(plan: T): Promise<void> {
    this.plan = structuredClone(plan);
  }

  async completedFiles(): Promise<StoredFileRecord[]> {
    return [...this.files].map(([path, bytes]) => ({ path, bytes: bytes.byteLength }));
  }

  async completedShards(): Promise<StoredShardRecord[]> {
    return [...this.shards.values()].sort((a, b) => a.shard - b.shard);
  }

  async putFile(path: string, chunks: readonly Uint8Array[]): Promise<void> {
    this.files.set(path, concat(chunks));
    this.writes.push(path);
  }

  async putShard(record: StoredShardRecord, samples: readonly StoredSample[]): Promise<void> {
    if (this.samples.size + samples.length > this.failAfterSamples) throw new Error('simulated crash while writing a shard');
    // Staged first, then committed in one step: nothing of a failed write is visible.
    for (const s of samples) this.samples.set(s.uid, s);
    this.shards.set(record.shard, { ...record });
    this.writes.push(record.path);
  }

  async openFile(path: string): Promise<StoredByteSource | undefined> {
    const bytes = this.files.get(path);
    return bytes && { byteLength: bytes.byteLength, slice: (start, end) => bytes.subarray(start, end) };
  }

  async getSample(uid: string): Promise<StoredSample | undefined> {
    return this.samples.get(uid);
  }

  /** Number of samples stored (for tests). */
  get sampleCount(): number {
    return this.samples.size;
  }
}
