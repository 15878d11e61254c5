/**
 * The shards of a pool ingested into IndexedDB (workers/idb-pool-store.ts), read back as webdataset tars for
 * the resharder and the training loader (src/core/train/loader.ts ShardStore): each completely stored shard,
 * in shard-number order, its samples in their key order (the order the tar held them: CommonPool's and the
 * embedded pool's keys grow through a shard) with their members as stored.
 */
import { openDB, type IDBPDatabase } from 'idb';
import { FormatError } from '../src/core/formats/errors.ts';
import { writeSamples } from '../src/core/formats/webdataset.ts';
import type { StoredSample, StoredShardRecord } from '../src/core/pool/store.ts';
import type { ShardInfo, ShardStore } from '../src/core/train/loader.ts';
import { poolDatabaseName } from './idb-pool-store.ts';

export class IdbShardStore implements ShardStore {
  private constructor(private readonly db: IDBPDatabase, private readonly shards: StoredShardRecord[], private readonly poolId: string) {}

  static async open(poolId: string): Promise<IdbShardStore> {
    // No version: the pool's database as the ingest created it (never an upgrade from here).
    const db = await openDB(poolDatabaseName(poolId), undefined, { blocking: () => db.close() });
    if (!db.objectStoreNames.contains('shards')) {
      db.close();
      throw new Error(`pool ${poolId} is not in this browser (deleted?): add it again in the Pool view`);
    }
    const shards = ((await db.getAll('shards')) as StoredShardRecord[]).sort((a, b) => a.shard - b.shard);
    return new IdbShardStore(db, shards, poolId);
  }

  close(): void {
    this.db.close();
  }

  async listShards(): Promise<ShardInfo[]> {
    return this.shards.map((s) => ({ name: s.path, samples: s.samples }));
  }

  async openShard(name: string): Promise<ReadableStream<Uint8Array>> {
    const shard = this.shards.find((s) => s.path === name);
    if (!shard) throw new FormatError(name, `not a stored shard of pool ${this.poolId}`);
    const samples = (await this.db.getAllFromIndex('samples', 'shard', shard.shard)) as StoredSample[];
    samples.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return writeSamples(samples.map((s) => ({ __key__: s.key, files: s.files })));
  }
}
