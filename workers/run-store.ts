/**
 * The browser's runs: one IndexedDB database (`dcw-runs`, through idb) read by the page and written by the
 * train worker. A run is a record (what it trains on, its scale and seed, its train state, its evaluation
 * results), its subset `.npy` bytes, and its latest checkpoint (weights, AdamW state, TrainState) — what it
 * takes to resume it exactly after a reload. Imported runs are records with results only.
 *
 * Atomicity: a checkpoint and the run's train state are written in one transaction, so the record never
 * claims a step the stored weights have not reached; results are written after each task (evaluate.py's
 * append-per-task), so a failed evaluation keeps the tasks already done.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { CheckpointStore, TrainState } from '../src/core/train/checkpoint.ts';
import type { FilterSpec } from './filter.worker.ts';

export type TrainStatus = 'ready' | 'training' | 'paused' | 'done' | 'failed';

export interface RunRecord {
  id: string;
  name: string;
  /** 'own': trained here; 'imported': results from an eval_results.jsonl file. */
  origin: 'own' | 'imported';
  createdAt: number;
  /** Scale name ('' when an imported run does not say). */
  scale: string;
  /** How the subset was made, for the table ("basic_filter", "where …", "file.npy"). */
  filter: string;
  /** Uids in the subset (duplicates counted, as the resharder repeats them); null when unknown. */
  subsetSize: number | null;
  samplesSeen: number | null;
  /** Own runs. */
  poolId?: string;
  poolName?: string;
  filterSpec?: FilterSpec;
  seed?: number;
  status?: TrainStatus;
  /** The train state of the stored checkpoint (losses included). */
  state?: TrainState;
  /** Samples the reshard wrote (the training set's size). */
  trainSamples?: number;
  adapter?: string;
  /** Last measured training throughput of this run (samples/s, session average). */
  samplesPerSecond?: number;
  error?: string;
  /** eval_results.jsonl text (complete or partial). */
  results?: string;
  /** The evaluated checkpoint's step, to tell a stale evaluation. */
  resultsStep?: number;
  evaluatedAt?: number;
}

export interface StoredCheckpoint {
  weights: Blob;
  optimizer: Blob;
  state: TrainState;
}

interface RunsSchema extends DBSchema {
  runs: { key: string; value: RunRecord };
  subsets: { key: string; value: Blob };
  checkpoints: { key: string; value: StoredCheckpoint };
  /** User-provided files kept for later sessions: 'bpe' (the CLIP vocabulary). */
  files: { key: string; value: Blob };
}

const DB = 'dcw-runs';
let db: Promise<IDBPDatabase<RunsSchema>> | undefined;

export function openRunsDb(): Promise<IDBPDatabase<RunsSchema>> {
  db ??= openDB<RunsSchema>(DB, 1, {
    upgrade(d) {
      d.createObjectStore('runs', { keyPath: 'id' });
      d.createObjectStore('subsets');
      d.createObjectStore('checkpoints');
      d.createObjectStore('files');
    },
  });
  return db;
}

export async function listRuns(): Promise<RunRecord[]> {
  return (await (await openRunsDb()).getAll('runs')).sort((a, b) => a.createdAt - b.createdAt);
}

export async function getRun(id: string): Promise<RunRecord | undefined> {
  return (await openRunsDb()).get('runs', id);
}

export async function putRun(record: RunRecord): Promise<void> {
  await (await openRunsDb()).put('runs', record);
}

/** Changes some fields of a stored run (read and written in one transaction). */
export async function updateRun(id: string, change: Partial<RunRecord>): Promise<RunRecord> {
  const tx = (await openRunsDb()).transaction('runs', 'readwrite');
  const record = await tx.store.get(id);
  if (!record) throw new Error(`run ${id} is not stored in this browser (deleted?)`);
  const next = { ...record, ...change };
  await tx.store.put(next);
  await tx.done;
  return next;
}

/** A new run with its subset bytes, in one transaction. */
export async function createRun(record: RunRecord, subsetNpy: Uint8Array): Promise<void> {
  const tx = (await openRunsDb()).transaction(['runs', 'subsets'], 'readwrite');
  await Promise.all([tx.objectStore('runs').add(record), tx.objectStore('subsets').put(new Blob([subsetNpy as Uint8Array<ArrayBuffer>]), record.id), tx.done]);
}

export async function readSubset(id: string): Promise<Uint8Array | undefined> {
  const blob = await (await openRunsDb()).get('subsets', id);
  return blob && new Uint8Array(await blob.arrayBuffer());
}

export async function readCheckpointRecord(id: string): Promise<StoredCheckpoint | undefined> {
  return (await openRunsDb()).get('checkpoints', id);
}

/** Deletes the run's checkpoint (and, with `all`, its record and subset). */
export async function deleteRun(id: string, all = true): Promise<void> {
  const tx = (await openRunsDb()).transaction(['runs', 'subsets', 'checkpoints'], 'readwrite');
  const ops: Promise<unknown>[] = [tx.objectStore('checkpoints').delete(id)];
  if (all) ops.push(tx.objectStore('runs').delete(id), tx.objectStore('subsets').delete(id));
  await Promise.all([...ops, tx.done]);
}

export async function readFile(name: string): Promise<Uint8Array | undefined> {
  const blob = await (await openRunsDb()).get('files', name);
  return blob && new Uint8Array(await blob.arrayBuffer());
}

export async function storeFile(name: string, bytes: Uint8Array): Promise<void> {
  await (await openRunsDb()).put('files', new Blob([bytes as Uint8Array<ArrayBuffer>]), name);
}

/**
 * trainClip's checkpoints for one run: `epoch_latest` is kept (with the run's state, in one transaction);
 * the `epoch_{n}` copies are not (one checkpoint per run is what resuming and evaluating need).
 */
export class IdbCheckpointStore implements CheckpointStore {
  constructor(private readonly runId: string, private readonly onSaved?: (state: TrainState) => void) {}

  async save(name: string, files: { weights: Uint8Array; optimizer: Uint8Array; state: TrainState }): Promise<void> {
    if (name !== 'epoch_latest') return;
    const state = structuredClone(files.state);
    const value: StoredCheckpoint = {
      weights: new Blob([files.weights as Uint8Array<ArrayBuffer>]),
      optimizer: new Blob([files.optimizer as Uint8Array<ArrayBuffer>]),
      state,
    };
    const tx = (await openRunsDb()).transaction(['runs', 'checkpoints'], 'readwrite');
    const runs = tx.objectStore('runs');
    const record = await runs.get(this.runId);
    if (!record) {
      tx.abort();
      throw new Error(`run ${this.runId} was deleted while it trained`);
    }
    await Promise.all([
      tx.objectStore('checkpoints').put(value, this.runId),
      runs.put({ ...record, state, samplesSeen: state.samplesSeen }),
      tx.done,
    ]);
    this.onSaved?.(state);
  }
}
