/**
 * The ingest worker (comlink): adds pools, streams their metadata and shards into IndexedDB with
 * src/core/pool/ingest.ts, reports progress, pauses, resumes and deletes. The page never touches the bytes.
 * A Web Lock per pool keeps two tabs (or a reloaded page and its dying predecessor) from ingesting the
 * same pool at once.
 */
import * as Comlink from 'comlink';
import { HttpPoolSource, ingestPool, listedBytes, listedSamples, type IngestPlan, type IngestProgress } from '../src/core/pool/ingest.ts';
import {
  deletePool, getPoolRecord, IdbPoolStore, listPoolRecords, putPoolRecord,
  type PoolRecord, type PoolSourceSpec, type PoolState,
} from './idb-pool-store.ts';

export interface PoolSummary extends PoolRecord {
  stored: { files: number; shards: number; samples: number; bytes: number };
  /** Totals from the stored plan; null before the listing arrived. */
  planned: { files: number; shards: number; samples: number | null; bytes: number | null } | null;
}

export type RunOutcome = { state: PoolState; error?: string; samples?: number };

const running = new Map<string, { controller: AbortController; done: Promise<RunOutcome> }>();

function sourceFor(record: PoolRecord): HttpPoolSource {
  if (record.source.kind === 'embedded') {
    return new HttpPoolSource({ baseUrl: record.baseUrl, listingUrl: new URL('/api/pool', record.baseUrl).href });
  }
  return new HttpPoolSource({ baseUrl: record.baseUrl });
}

async function summarize(record: PoolRecord): Promise<PoolSummary> {
  const store = await IdbPoolStore.open(record.id);
  try {
    const [files, shards, plan] = await Promise.all([store.completedFiles(), store.completedShards(), store.readPlan<IngestPlan>()]);
    return {
      ...record,
      stored: {
        files: files.length,
        shards: shards.length,
        samples: shards.reduce((n, s) => n + s.samples, 0),
        bytes: files.reduce((n, f) => n + f.bytes, 0) + shards.reduce((n, s) => n + s.bytes, 0),
      },
      planned: plan
        ? {
          files: plan.listing.metadata.length + plan.listing.extras.length,
          shards: plan.listing.shards.length,
          samples: listedSamples(plan.listing),
          bytes: listedBytes(plan.listing),
        }
        : null,
    };
  } finally {
    store.close();
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const api = {
  async pools(): Promise<PoolSummary[]> {
    return Promise.all((await listPoolRecords()).map(summarize));
  },

  /** Registers a pool (the same source twice gives the existing one); `run` fetches it. */
  async add(spec: PoolSourceSpec): Promise<PoolSummary> {
    let baseUrl: string;
    let name: string;
    if (spec.kind === 'embedded') {
      baseUrl = new URL('/pool/', self.location.href).href;
      name = 'Embedded default pool';
    } else {
      let url: URL;
      try {
        url = new URL(spec.baseUrl, self.location.href);
      } catch {
        throw new Error(`${spec.baseUrl}: not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${spec.baseUrl}: only http(s) URLs can be ingested`);
      if (!url.pathname.endsWith('/')) url.pathname += '/';
      baseUrl = url.href;
      name = `${url.host}${url.pathname}`;
    }
    const existing = (await listPoolRecords()).find((p) => p.baseUrl === baseUrl);
    if (existing) return summarize(existing);
    const record: PoolRecord = {
      id: `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
      name, source: spec, baseUrl, createdAt: Date.now(), state: 'ingesting',
    };
    await putPoolRecord(record);
    return summarize(record);
  },

  /** Ingests (or resumes) a pool; resolves when it is complete, paused or failed. */
  run(id: string, onProgress?: (p: IngestProgress) => void): Promise<RunOutcome> {
    const active = running.get(id);
    if (active) return active.done;
    const controller = new AbortController();
    // (lib.dom types the result as Promise<Promise<T>> for an async callback; it resolves to T.)
    const locked = navigator.locks.request(`dcw-ingest-${id}`, async (): Promise<RunOutcome> => {
      const record = await getPoolRecord(id);
      if (!record) return { state: 'error', error: 'no such pool' };
      if (controller.signal.aborted) return { state: 'paused' };
      await putPoolRecord({ ...record, state: 'ingesting', error: undefined });
      const store = await IdbPoolStore.open(id);
      try {
        const result = await ingestPool(sourceFor(record), store, { signal: controller.signal, onProgress, progressIntervalMs: 250 });
        await putPoolRecord({ ...record, state: 'complete', error: undefined });
        return { state: 'complete', samples: result.samples };
      } catch (err) {
        if (controller.signal.aborted) {
          // Deleted meanwhile: nothing to record.
          if (await getPoolRecord(id)) await putPoolRecord({ ...record, state: 'paused' });
          return { state: 'paused' };
        }
        await putPoolRecord({ ...record, state: 'error', error: describe(err) });
        return { state: 'error', error: describe(err) };
      } finally {
        store.close();
      }
    }) as unknown as Promise<RunOutcome>;
    const done = locked.finally(() => running.delete(id));
    running.set(id, { controller, done });
    return done;
  },

  async pause(id: string): Promise<void> {
    const active = running.get(id);
    if (!active) {
      const record = await getPoolRecord(id);
      if (record && record.state === 'ingesting') await putPoolRecord({ ...record, state: 'paused' });
      return;
    }
    active.controller.abort(new DOMException('paused', 'AbortError'));
    await active.done;
  },

  async remove(id: string): Promise<void> {
    const active = running.get(id);
    if (active) {
      active.controller.abort(new DOMException('deleted', 'AbortError'));
      await active.done;
    }
    await deletePool(id);
  },

  async summary(id: string): Promise<PoolSummary | undefined> {
    const record = await getPoolRecord(id);
    return record && summarize(record);
  },
};

export type IngestWorkerApi = typeof api;

Comlink.expose(api);
