/**
 * The ingest worker (comlink): adds pools, streams their metadata and shards into IndexedDB with
 * src/core/pool/ingest.ts, reports progress, pauses, resumes and deletes. The page never touches the bytes.
 * A Web Lock per pool keeps two tabs (or a reloaded page and its dying predecessor) from ingesting the
 * same pool at once.
 */
import * as Comlink from 'comlink';
import { HttpPoolSource, ingestPool, listedBytes, listedSamples, type IngestPlan, type IngestProgress, type PoolSource } from '../src/core/pool/ingest.ts';
import { compareListings, detectLocalLayout, listingFingerprint, LocalPoolSource, type LocalFile } from '../src/core/pool/local-source.ts';
import {
  deletePool, getPoolRecord, IdbPoolStore, listPoolRecords, putPoolRecord,
  type PoolRecord, type PoolSourceSpec, type PoolState,
} from './idb-pool-store.ts';
import { filesOfDirectory, readPermission } from './local-pool-files.ts';

export interface PoolSummary extends PoolRecord {
  stored: { files: number; shards: number; samples: number; bytes: number };
  /** Totals from the stored plan; null before the listing arrived. */
  planned: { files: number; shards: number; samples: number | null; bytes: number | null } | null;
}

/** `needs`: a local pool waits for the user: read permission on its stored folder handle, or the folder picked again. */
export type RunOutcome = { state: PoolState; error?: string; samples?: number; needs?: LocalNeed };
export type LocalNeed = 'permission' | 'files';

const running = new Map<string, { controller: AbortController; done: Promise<RunOutcome> }>();

/** The files of local pools picked or dropped in this page's life (Files cannot outlive it without a handle). */
const localFiles = new Map<string, LocalFile[]>();

class NeedsUser extends Error {
  constructor(readonly need: LocalNeed) {
    super(need === 'permission' ? 'waiting for permission to read the folder' : 'waiting for the folder to be picked again');
  }
}

const filesFrom = (files: readonly LocalFile[]) => files.map((f) => ({ path: f.path, size: f.blob.size }));

/** Why `files` are not the folder local pool `record` was ingested from (names and sizes), or null. */
async function notTheSameFolder(record: PoolRecord, files: readonly LocalFile[]): Promise<string | null> {
  const name = record.source.kind === 'local' ? record.source.name : record.name;
  const layout = detectLocalLayout(filesFrom(files), name);
  const store = await IdbPoolStore.open(record.id);
  try {
    const plan = await store.readPlan<IngestPlan>();
    if (plan) return compareListings(plan.listing, layout.listing);
    return record.baseUrl.endsWith(`/${listingFingerprint(layout.listing)}`) ? null : 'its files or their sizes differ';
  } finally {
    store.close();
  }
}

async function sourceFor(record: PoolRecord): Promise<PoolSource> {
  if (record.source.kind === 'local') {
    let files = localFiles.get(record.id);
    if (!files && record.source.handle) {
      if ((await readPermission(record.source.handle)) !== 'granted') throw new NeedsUser('permission');
      files = await filesOfDirectory(record.source.handle);
      const problem = await notTheSameFolder(record, files);
      if (problem) throw new Error(`${record.source.name}: the folder changed since the ingest started (${problem}); delete the pool and add the folder again`);
      localFiles.set(record.id, files);
    }
    if (!files) throw new NeedsUser('files');
    return new LocalPoolSource(files, { id: record.baseUrl, name: record.source.name });
  }
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
  async add(spec: PoolSourceSpec, files?: LocalFile[]): Promise<PoolSummary> {
    let baseUrl: string;
    let name: string;
    let picked: LocalFile[] | undefined;
    if (spec.kind === 'local') {
      // The layout is checked now, so a folder that holds no pool is refused before anything is stored.
      picked = spec.handle ? await filesOfDirectory(spec.handle) : (files ?? []);
      baseUrl = `local:${spec.name}/${listingFingerprint(detectLocalLayout(filesFrom(picked), spec.name).listing)}`;
      name = `Local folder “${spec.name}”`;
    } else if (spec.kind === 'embedded') {
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
    if (existing) {
      // The same folder again: its files (and a handle, if it had none) let an interrupted ingest go on.
      if (picked) localFiles.set(existing.id, picked);
      if (spec.kind === 'local' && spec.handle && existing.source.kind === 'local' && !existing.source.handle) {
        await putPoolRecord({ ...existing, source: spec });
        return summarize({ ...existing, source: spec });
      }
      return summarize(existing);
    }
    const record: PoolRecord = {
      id: `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
      name, source: spec, baseUrl, createdAt: Date.now(), state: 'ingesting',
    };
    await putPoolRecord(record);
    if (picked) localFiles.set(record.id, picked);
    return summarize(record);
  },

  /**
   * The folder of a local pool picked again after a reload (no stored handle): refused unless it holds the
   * files the ingest set out to read, with the same sizes. `run` then resumes.
   */
  async provide(id: string, files: LocalFile[] | null, handle: FileSystemDirectoryHandle | null): Promise<void> {
    const record = await getPoolRecord(id);
    if (!record || record.source.kind !== 'local') throw new Error('no such local pool: add the folder again');
    const picked = handle ? await filesOfDirectory(handle) : (files ?? []);
    const problem = await notTheSameFolder(record, picked);
    if (problem) throw new Error(`not the folder “${record.source.name}” this pool came from (${problem}): pick that folder again`);
    localFiles.set(id, picked);
    // A handle picked now spares the next reload the file dialog.
    if (handle && !record.source.handle) await putPoolRecord({ ...record, source: { ...record.source, handle } });
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
      let source: PoolSource;
      try {
        source = await sourceFor(record);
      } catch (err) {
        // Stays 'ingesting' (interrupted): the page asks the user, then runs it again.
        if (err instanceof NeedsUser) return { state: record.state, needs: err.need };
        await putPoolRecord({ ...record, state: 'error', error: describe(err) });
        return { state: 'error', error: describe(err) };
      }
      await putPoolRecord({ ...record, state: 'ingesting', error: undefined });
      const store = await IdbPoolStore.open(id);
      try {
        const result = await ingestPool(source, store, { signal: controller.signal, onProgress, progressIntervalMs: 250 });
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
    localFiles.delete(id);
  },

  async summary(id: string): Promise<PoolSummary | undefined> {
    const record = await getPoolRecord(id);
    return record && summarize(record);
  },
};

export type IngestWorkerApi = typeof api;

Comlink.expose(api);
