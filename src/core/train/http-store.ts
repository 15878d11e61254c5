/**
 * Shards over HTTP for the training loader in a browser (or anywhere `fetch` exists): the pool's files as
 * `dcw serve` serves them under `/pool/`, listed by its `/api/pool` (each shard with its `_stats.json` sample
 * count), or any static server given the shard list.
 */
import { FormatError } from '../formats/errors.ts';
import type { ShardInfo, ShardStore } from './loader.ts';

export class HttpShardStore implements ShardStore {
  /** `shards`: names are URLs relative to `baseUrl`. */
  constructor(
    readonly baseUrl: string,
    private readonly shards: readonly ShardInfo[],
    private readonly fetchFn: typeof fetch = (input, init) => fetch(input, init),
  ) {}

  /** The shards of the pool a `dcw serve` at `origin` serves (its /api/pool listing). */
  static async fromPoolListing(origin: string, fetchFn: typeof fetch = (input, init) => fetch(input, init)): Promise<HttpShardStore> {
    const url = new URL('/api/pool', origin).href;
    const res = await fetchFn(url);
    if (!res.ok) throw new FormatError(url, `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const listing = (await res.json()) as { shards?: { path?: unknown; samples?: unknown }[] };
    if (!Array.isArray(listing.shards)) throw new FormatError(url, 'no "shards" list');
    const shards: ShardInfo[] = listing.shards.map((s, i) => {
      if (typeof s.path !== 'string') throw new FormatError(url, `shard ${i} has no path`);
      if (!(typeof s.samples === 'number' && Number.isInteger(s.samples) && s.samples >= 0)) {
        throw new FormatError(url, `${s.path} has no sample count (its _stats.json is missing)`);
      }
      return { name: `pool/${s.path}`, samples: s.samples };
    });
    if (!shards.length) throw new FormatError(url, 'the pool has no shards');
    return new HttpShardStore(new URL('/', origin).href, shards, fetchFn);
  }

  async listShards(): Promise<ShardInfo[]> {
    return this.shards.map((s) => ({ ...s }));
  }

  async openShard(name: string): Promise<ReadableStream<Uint8Array>> {
    const url = new URL(name, this.baseUrl).href;
    const res = await this.fetchFn(url);
    if (!res.ok || !res.body) throw new FormatError(url, `HTTP ${res.status} ${res.statusText}`.trim());
    return res.body;
  }
}
