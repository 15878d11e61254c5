/**
 * The pools this browser holds and their ingest progress, shared by the Pool and Inspect views. All work
 * happens in the ingest worker; this module only keeps what the views show.
 */
import * as Comlink from 'comlink';
import type { IngestProgress } from '../../core/pool/ingest.ts';
import type { LocalFile } from '../../core/pool/local-source.ts';
import type { LocalNeed, PoolSummary } from '../../../workers/ingest.worker.ts';
import type { PoolSourceSpec } from '../../../workers/idb-pool-store.ts';
import { requestReadPermission } from '../../../workers/local-pool-files.ts';
import { ingestWorker } from './workers.ts';

const ACTIVE_KEY = 'dcw-active-pool';

export const pools = $state({
  list: [] as PoolSummary[],
  loaded: false,
  /** Latest progress report per pool id, while it ingests. */
  progress: {} as Record<string, IngestProgress>,
  /** Pools whose ingest runs in this page now. */
  running: {} as Record<string, boolean>,
  /** Local pools waiting for the user after a reload: read permission on their folder, or the folder picked again. */
  needs: {} as Record<string, LocalNeed>,
  error: null as string | null,
  /** The pool the Inspect view shows. */
  activeId: (typeof localStorage !== 'undefined' ? localStorage.getItem(ACTIVE_KEY) : null) as string | null,
});

export function setActivePool(id: string | null): void {
  pools.activeId = id;
  if (id) localStorage.setItem(ACTIVE_KEY, id);
  else localStorage.removeItem(ACTIVE_KEY);
}

export function activePool(): PoolSummary | undefined {
  return pools.list.find((p) => p.id === pools.activeId) ?? pools.list.find((p) => p.state === 'complete') ?? pools.list[0];
}

export async function refreshPools(): Promise<void> {
  try {
    pools.list = await ingestWorker().pools();
    pools.error = null;
  } catch (err) {
    pools.error = `IndexedDB is not available here: ${(err as Error).message}`;
  }
  pools.loaded = true;
}

async function refreshOne(id: string): Promise<void> {
  const summary = await ingestWorker().summary(id);
  const i = pools.list.findIndex((p) => p.id === id);
  if (summary && i >= 0) pools.list[i] = summary;
  else if (summary) pools.list.push(summary);
  else if (i >= 0) pools.list.splice(i, 1);
}

/** Starts (or resumes) the ingest of a pool in the worker; resolves when it ends. */
export async function runPool(id: string): Promise<void> {
  if (pools.running[id]) return;
  pools.running[id] = true;
  const onProgress = Comlink.proxy((p: IngestProgress) => {
    pools.progress[id] = p;
  });
  try {
    const outcome = await ingestWorker().run(id, onProgress);
    if (outcome.needs) pools.needs[id] = outcome.needs;
    else delete pools.needs[id];
  } finally {
    pools.running[id] = false;
    await refreshOne(id);
  }
}

/** `files`: a local folder's files where the browser gave no handle (the webkitdirectory input, a drop). */
export async function addPool(spec: PoolSourceSpec, files?: LocalFile[]): Promise<void> {
  const summary = await ingestWorker().add(spec, files);
  delete pools.needs[summary.id];
  await refreshOne(summary.id);
  if (!pools.activeId || !pools.list.some((p) => p.id === pools.activeId)) setActivePool(summary.id);
  if (summary.state !== 'complete') void runPool(summary.id);
}

/**
 * Lets a local pool go on (on a click: a permission prompt needs one): asks for read permission on its stored
 * folder handle, or hands over the folder picked again (refused unless it holds the same files, by names and sizes).
 */
export async function resumeLocalPool(p: PoolSummary, repicked?: { files: LocalFile[] | null; handle: FileSystemDirectoryHandle | null }): Promise<void> {
  if (p.source.kind !== 'local') return runPool(p.id);
  if (repicked) {
    await ingestWorker().provide(p.id, repicked.files, repicked.handle);
  } else if (p.source.handle && (await requestReadPermission(p.source.handle)) !== 'granted') {
    throw new Error(`Reading the folder “${p.source.name}” was not allowed: allow it to resume the ingest, or pick the folder again`);
  }
  delete pools.needs[p.id];
  void runPool(p.id);
}

export async function pausePool(id: string): Promise<void> {
  await ingestWorker().pause(id);
  await refreshOne(id);
}

export async function deletePool(id: string): Promise<void> {
  await ingestWorker().remove(id);
  delete pools.progress[id];
  delete pools.needs[id];
  await refreshOne(id);
  if (pools.activeId === id) setActivePool(pools.list[0]?.id ?? null);
}

/** On page load: pools whose ingest was cut off (a reload, a closed tab) continue where they stopped. */
export async function resumeInterrupted(): Promise<void> {
  await refreshPools();
  for (const p of pools.list) if (p.state === 'ingesting') void runPool(p.id);
}
