/**
 * A pool served by `dcw serve` (its /api/pool listing, files under /pool/), read over HTTP for runInMemory:
 * the metadata parquet files fetched whole (a run's filter reads every row), the shards streamed.
 */
import { FormatError } from '../formats/errors.ts';
import type { MetadataFile } from '../filters/scan.ts';
import { HttpShardStore } from '../train/http-store.ts';

export interface HttpPool {
  metadata: MetadataFile[];
  shards: HttpShardStore;
}

export async function openHttpPool(origin: string, fetchFn: typeof fetch = (input, init) => fetch(input, init)): Promise<HttpPool> {
  const url = new URL('/api/pool', origin).href;
  const res = await fetchFn(url);
  if (!res.ok) throw new FormatError(url, `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  const listing = (await res.json()) as { metadata?: { path?: unknown }[] };
  if (!Array.isArray(listing.metadata) || !listing.metadata.length) throw new FormatError(url, 'no "metadata" files listed');
  const metadata: MetadataFile[] = [];
  for (const [i, m] of listing.metadata.entries()) {
    if (typeof m.path !== 'string') throw new FormatError(url, `metadata file ${i} has no path`);
    const fileUrl = new URL(`/pool/${m.path}`, origin).href;
    const file = await fetchFn(fileUrl);
    if (!file.ok) throw new FormatError(fileUrl, `HTTP ${file.status} ${file.statusText}`.trim());
    metadata.push({ name: fileUrl, source: new Uint8Array(await file.arrayBuffer()) });
  }
  return { metadata, shards: await HttpShardStore.fromPoolListing(origin, fetchFn) };
}
