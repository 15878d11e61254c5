/**
 * Where imported BYOD sets wait in the browser (IndexedDB `dcw-byod`) until they have been checked for
 * evaluation pictures and merged into a pool: one record per import (what was found, the contamination
 * check and the user's decision) and its prepared samples, in import order. Nothing here is a pool: the
 * Filter, Train and Evaluate views only ever see pools, so an import cannot be used before it was checked.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { ByodProblem, ByodSample, ContaminationMatch } from '../src/core/pool/byod.ts';

export type ImportKind = 'folder' | 'urls' | 'tars';

export interface ContaminationCheck {
  at: number;
  /** Base URL of the evaluation suite checked against. */
  evalUrl: string;
  tasks: string[];
  evalPictures: number;
  /** Matches, with our sample's place in the import (`order`) for its picture. */
  matches: (ContaminationMatch & { order: number })[];
  /** The matched test pictures, by `${evalShard}:${evalKey}`, for thumbnails. */
  evalImages: Record<string, { bytes: Uint8Array; ext: string }>;
}

export interface ImportRecord {
  id: string;
  name: string;
  kind: ImportKind;
  createdAt: number;
  /** Samples held now (after a drop, without the dropped ones). */
  samples: number;
  bytes: number;
  /** Inputs that could not be used (at most MAX_PROBLEMS kept; `problemCount` has them all). */
  problems: ByodProblem[];
  problemCount: number;
  /** Pictures of a URL table that dcw serve fetched because their site refuses CORS (absent: none, or older records). */
  viaServer?: number;
  /** null until the contamination check ran. */
  check: ContaminationCheck | null;
  /** What the user did with the matches: dropped them, or kept them knowingly. null while undecided or clean. */
  decision: { action: 'dropped' | 'kept'; at: number; uids: string[] } | null;
  merged: { poolId: string; poolName: string; at: number; shards: string[]; metadata: string; samples: number } | null;
}

export const MAX_PROBLEMS = 500;

/** Why an import cannot be merged yet, or null when it can. */
export function mergeRefusal(record: ImportRecord): string | null {
  if (record.merged) return `“${record.name}” is already merged into “${record.merged.poolName}”`;
  if (!record.samples) return `“${record.name}” holds no usable samples`;
  if (!record.check) return `“${record.name}” has not been checked for evaluation pictures: run the contamination check first (DataComp's rule: no test picture in the training data)`;
  if (record.check.matches.length && !record.decision) return `“${record.name}” holds ${record.check.matches.length} ${record.check.matches.length === 1 ? 'match' : 'matches'} with test pictures: drop ${record.check.matches.length === 1 ? 'it' : 'them'} or keep ${record.check.matches.length === 1 ? 'it' : 'them'} knowingly first`;
  return null;
}

export interface StagedSample extends ByodSample {
  importId: string;
  order: number;
}

interface ByodSchema extends DBSchema {
  imports: { key: string; value: ImportRecord };
  samples: { key: [string, number]; value: StagedSample };
}

let db: Promise<IDBPDatabase<ByodSchema>> | undefined;

function open(): Promise<IDBPDatabase<ByodSchema>> {
  db ??= openDB<ByodSchema>('dcw-byod', 1, {
    upgrade(d) {
      d.createObjectStore('imports', { keyPath: 'id' });
      d.createObjectStore('samples', { keyPath: ['importId', 'order'] });
    },
  });
  return db;
}

const range = (id: string) => IDBKeyRange.bound([id, -Infinity], [id, Infinity]);

export async function listImports(): Promise<ImportRecord[]> {
  return (await (await open()).getAll('imports')).sort((a, b) => a.createdAt - b.createdAt);
}

export async function getImport(id: string): Promise<ImportRecord | undefined> {
  return (await open()).get('imports', id);
}

export async function putImport(record: ImportRecord): Promise<void> {
  await (await open()).put('imports', record);
}

/** Stores a new import and its samples in one transaction: an import is there whole or not at all. */
export async function createImport(record: ImportRecord, samples: readonly ByodSample[]): Promise<void> {
  const d = await open();
  const tx = d.transaction(['imports', 'samples'], 'readwrite');
  const store = tx.objectStore('samples');
  samples.forEach((s, order) => void store.put({ ...s, importId: record.id, order }).catch(() => {}));
  void tx.objectStore('imports').put(record).catch(() => {});
  await tx.done;
}

export async function importSamples(id: string): Promise<StagedSample[]> {
  return (await open()).getAll('samples', range(id));
}

export async function importSample(id: string, order: number): Promise<StagedSample | undefined> {
  return (await open()).get('samples', [id, order]);
}

/** Removes samples and saves the record in one transaction (dropping matches). */
export async function dropSamples(record: ImportRecord, orders: readonly number[]): Promise<void> {
  const d = await open();
  const tx = d.transaction(['imports', 'samples'], 'readwrite');
  for (const order of orders) void tx.objectStore('samples').delete([record.id, order]).catch(() => {});
  void tx.objectStore('imports').put(record).catch(() => {});
  await tx.done;
}

export async function deleteImport(id: string): Promise<void> {
  const d = await open();
  const tx = d.transaction(['imports', 'samples'], 'readwrite');
  void tx.objectStore('samples').delete(range(id)).catch(() => {});
  void tx.objectStore('imports').delete(id).catch(() => {});
  await tx.done;
}
