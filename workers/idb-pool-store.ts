/**
 * The browser's pool store: one IndexedDB database per pool (`dcw-pool-<id>`), through idb, and a small
 * registry database (`dcw-workbench`) that lists the pools. See src/core/pool/store.ts for the layout:
 * samples keyed by uid with their members as raw bytes (values over Chromium's inline limit are kept as
 * blobs on disk by the browser itself), metadata files as one Blob each (read back by byte ranges), and
 * a shard's samples written in the same transaction as the shard's completion record.
 */
import { deleteDB, openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { PoolStore, StoredByteSource, StoredFileRecord, StoredSample, StoredShardRecord } from '../src/core/pool/store.ts';

export type PoolSourceSpec =
  | { kind: 'embedded' }
  | { kind: 'http'; baseUrl: string }
  // A picked or dropped folder (src/core/pool/local-source.ts). The File System Access handle, where the browser
  // gave one, is stored so a reload needs only a permission prompt; without it the folder is picked again.
  | { kind: 'local'; name: string; handle: FileSystemDirectoryHandle | null };

export type PoolState = 'ingesting' | 'paused' | 'complete' | 'error';

export interface PoolRecord {
  id: string;
  name: string;
  source: PoolSourceSpec;
  /** Absolute base URL the files come from (the ingest plan's source id); `local:<name>/<fingerprint>` for a folder. */
  baseUrl: string;
  createdAt: number;
  state: PoolState;
  error?: string;
}

interface RegistrySchema extends DBSchema {
  pools: { key: string; value: PoolRecord };
}

interface PoolSchema extends DBSchema {
  meta: { key: string; value: unknown };
  files: { key: string; value: StoredFileRecord & { blob: Blob } };
  shards: { key: number; value: StoredShardRecord };
  samples: { key: string; value: StoredSample; indexes: { shard: number } };
}

const REGISTRY = 'dcw-workbench';
const ignore = () => {};

export function poolDatabaseName(id: string): string {
  return `dcw-pool-${id}`;
}

let registry: Promise<IDBPDatabase<RegistrySchema>> | undefined;

function openRegistry(): Promise<IDBPDatabase<RegistrySchema>> {
  registry ??= openDB<RegistrySchema>(REGISTRY, 1, {
    upgrade(db) {
      db.createObjectStore('pools', { keyPath: 'id' });
    },
  });
  return registry;
}

export async function listPoolRecords(): Promise<PoolRecord[]> {
  return (await (await openRegistry()).getAll('pools')).sort((a, b) => a.createdAt - b.createdAt);
}

export async function getPoolRecord(id: string): Promise<PoolRecord | undefined> {
  return (await openRegistry()).get('pools', id);
}

export async function putPoolRecord(record: PoolRecord): Promise<void> {
  await (await openRegistry()).put('pools', record);
}

/** Deletes a pool's database (other connections close themselves when asked) and its registry entry. */
export async function deletePool(id: string): Promise<void> {
  await deleteDB(poolDatabaseName(id));
  await (await openRegistry()).delete('pools', id);
}

export class IdbPoolStore implements PoolStore {
  private constructor(private readonly db: IDBPDatabase<PoolSchema>) {}

  static async open(id: string): Promise<IdbPoolStore> {
    const db: IDBPDatabase<PoolSchema> = await openDB<PoolSchema>(poolDatabaseName(id), 1, {
      upgrade(d) {
        d.createObjectStore('meta');
        d.createObjectStore('files', { keyPath: 'path' });
        d.createObjectStore('shards', { keyPath: 'shard' });
        d.createObjectStore('samples', { keyPath: 'uid' }).createIndex('shard', 'shard');
      },
      // A delete elsewhere (the pool view) must not wait for this connection.
      blocking: () => db.close(),
    });
    return new IdbPoolStore(db);
  }

  close(): void {
    this.db.close();
  }

  async readPlan<T>(): Promise<T | undefined> {
    return (await this.db.get('meta', 'plan')) as T | undefined;
  }

  async writePlan<T>(plan: T): Promise<void> {
    await this.db.put('meta', plan, 'plan');
  }

  async completedFiles(): Promise<StoredFileRecord[]> {
    const out: StoredFileRecord[] = [];
    // A cursor over keys and sizes only: the blobs stay on disk.
    let cursor = await this.db.transaction('files').store.openCursor();
    while (cursor) {
      out.push({ path: cursor.value.path, bytes: cursor.value.bytes });
      cursor = await cursor.continue();
    }
    return out;
  }

  async completedShards(): Promise<StoredShardRecord[]> {
    return this.db.getAll('shards');
  }

  async putFile(path: string, chunks: readonly Uint8Array[]): Promise<void> {
    const blob = new Blob(chunks as Uint8Array<ArrayBuffer>[]);
    await this.db.put('files', { path, bytes: blob.size, blob });
  }

  async putShard(record: StoredShardRecord, samples: readonly StoredSample[]): Promise<void> {
    const tx = this.db.transaction(['samples', 'shards'], 'readwrite');
    const store = tx.objectStore('samples');
    // All requests are queued synchronously, the completion record last, then one commit.
    // (A failed request aborts the transaction; tx.done reports it, so the single requests' errors are dropped.)
    for (const sample of samples) store.put(sample).catch(ignore);
    tx.objectStore('shards').put(record).catch(ignore);
    await tx.done;
  }

  async openFile(path: string): Promise<StoredByteSource | undefined> {
    const record = await this.db.get('files', path);
    if (!record) return undefined;
    const { blob } = record;
    return { byteLength: blob.size, slice: async (start, end) => new Uint8Array(await blob.slice(start, end).arrayBuffer()) };
  }

  async getSample(uid: string): Promise<StoredSample | undefined> {
    return this.db.get('samples', uid);
  }

  /** Several samples in one read transaction (the grid asks for a screenful at once). */
  async getSamples(uids: readonly string[]): Promise<(StoredSample | undefined)[]> {
    const tx = this.db.transaction('samples');
    const out = await Promise.all(uids.map((uid) => tx.store.get(uid)));
    await tx.done;
    return out;
  }
}
