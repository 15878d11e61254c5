/**
 * The Inspect worker (comlink): opens a stored pool's metadata (only the columns the grid needs, read by
 * byte ranges from the stored parquet Blobs), answers sort/filter/search queries and histograms, and reads
 * pictures and sample json from IndexedDB by uid. The page keeps only what is on screen.
 */
import * as Comlink from 'comlink';
import { ParquetFile, readParquet } from '../src/core/formats/parquet.ts';
import type { IngestPlan } from '../src/core/pool/ingest.ts';
import { IdbPoolStore } from './idb-pool-store.ts';
import {
  buildTable, histogram, plainValue, rowViews, runQuery, wantedColumns,
  type ColumnInfo, type Histogram, type PoolTable, type RowView, type TableQuery,
} from './pool-table.ts';

/** Where the embedded pool keeps its ground truth (outside metadata/; never a table column). */
const TRUTH_PATH = 'ground_truth/truth.parquet';

export interface TableInfo {
  poolId: string;
  rows: number;
  columns: ColumnInfo[];
  /** Metadata files stored / listed in the plan. */
  metadataFiles: number;
  plannedMetadataFiles: number;
  /** The pool has a ground-truth side file (shown in the detail panel only). */
  hasTruth: boolean;
}

/**
 * A sample's picture as a blob: URL made here, in the worker: creating blobs and their URLs costs the main
 * thread tens of milliseconds per screenful, and a worker's blob: URLs serve the page of the same origin.
 */
export interface SampleImage {
  uid: string;
  /** blob: URL (release it with `release`), or null when the sample's shard is not stored yet. */
  url: string | null;
}

export interface SampleDetail {
  row: number;
  uid: string;
  /** The metadata parquet row, every column. */
  metadata: Record<string, unknown>;
  metadataFile: string;
  /** The sample's json and txt members from its shard; null when its shard is not stored yet. */
  json: string | null;
  txt: string | null;
  shard: number | null;
  key: string | null;
  members: { ext: string; bytes: number }[];
  /** The ground-truth row, for analysis only; null when the pool has none. */
  truth: Record<string, unknown> | null;
}

const IMAGE_TYPES: Record<string, string> = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif' };

let state: {
  poolId: string;
  store: IdbPoolStore;
  table: PoolTable;
  order: Uint32Array;
  query: TableQuery;
  truth?: Promise<{ file: ParquetFile; rowOf: Map<string, number> } | null>;
} | undefined;

const utf8 = new TextDecoder();
/** blob: URLs handed to the page and not released yet. */
const urls = new Set<string>();

function requireState(): NonNullable<typeof state> {
  if (!state) throw new Error('no pool is open');
  return state;
}

async function loadTruth(store: IdbPoolStore): Promise<{ file: ParquetFile; rowOf: Map<string, number> } | null> {
  const source = await store.openFile(TRUTH_PATH);
  if (!source) return null;
  const file = await ParquetFile.open(source, TRUTH_PATH);
  const uids = (await file.read({ columns: ['uid'] })).getChild('uid')!;
  const rowOf = new Map<string, number>();
  for (let i = 0; i < uids.length; i++) rowOf.set(String(uids.get(i)), i);
  return { file, rowOf };
}

async function openTable(poolId: string): Promise<TableInfo> {
  for (const url of urls) URL.revokeObjectURL(url);
  urls.clear();
  state?.store.close();
  state = undefined;
  const store = await IdbPoolStore.open(poolId);
  const plan = await store.readPlan<IngestPlan>();
  const stored = new Set((await store.completedFiles()).map((f) => f.path));
  const metadataPaths = (plan?.listing.metadata ?? []).map((m) => m.path).filter((p) => stored.has(p));
  const parts = [];
  for (const path of metadataPaths) {
    const source = (await store.openFile(path))!;
    const file = await ParquetFile.open(source, path);
    const columns = wantedColumns(file.schema.fields.map((f) => ({ name: f.name, typeId: f.typeId })));
    parts.push({ file: path, table: await file.read({ columns }) });
  }
  const table = buildTable(parts);
  state = { poolId, store, table, order: runQuery(table, {}), query: {} };
  return {
    poolId,
    rows: table.rows,
    columns: table.columns,
    metadataFiles: metadataPaths.length,
    plannedMetadataFiles: plan?.listing.metadata.length ?? 0,
    hasTruth: stored.has(TRUTH_PATH),
  };
}

let opening: Promise<unknown> = Promise.resolve();

const api = {
  /** Opens a pool's table (calls run one after another: the last one wins). */
  open(poolId: string): Promise<TableInfo> {
    const next = opening.then(() => openTable(poolId), () => openTable(poolId));
    opening = next;
    return next;
  },

  query(query: TableQuery): { count: number } {
    const s = requireState();
    s.order = runQuery(s.table, query);
    s.query = query;
    return { count: s.order.length };
  },

  rows(start: number, end: number): RowView[] {
    const s = requireState();
    return rowViews(s.table, s.order, start, end);
  },

  histogram(column: string, bins = 40): Histogram {
    const s = requireState();
    return histogram(s.table, column, s.query, bins);
  },

  async images(uids: string[]): Promise<SampleImage[]> {
    const s = requireState();
    const samples = await s.store.getSamples(uids);
    return uids.map((uid, i): SampleImage => {
      const files = samples[i]?.files;
      const ext = files && Object.keys(files).find((e) => e in IMAGE_TYPES);
      if (!ext) return { uid, url: null };
      const url = URL.createObjectURL(new Blob([files[ext] as Uint8Array<ArrayBuffer>], { type: IMAGE_TYPES[ext] }));
      urls.add(url);
      return { uid, url };
    });
  },

  /** Frees blob: URLs the page no longer shows. */
  release(released: string[]): void {
    for (const url of released) {
      if (urls.delete(url)) URL.revokeObjectURL(url);
    }
  },

  async detail(row: number): Promise<SampleDetail> {
    const s = requireState();
    const { table, store } = s;
    if (!(row >= 0 && row < table.rows)) throw new Error(`no row ${row}`);
    const uid = table.uid[row]!;
    const metadataFile = table.files[table.fileOf[row]!]!;
    const source = (await store.openFile(metadataFile))!;
    const at = table.rowInFile[row]!;
    const metaRow = (await readParquet(source, metadataFile, { rowStart: at, rowEnd: at + 1 })).get(0);
    const metadata = plainValue(metaRow) as Record<string, unknown>;
    const sample = await store.getSample(uid);
    s.truth ??= loadTruth(store).catch(() => null);
    const truth = await s.truth;
    let truthRow: Record<string, unknown> | null = null;
    const t = truth?.rowOf.get(uid);
    if (truth && t !== undefined) truthRow = plainValue((await truth.file.read({ rowStart: t, rowEnd: t + 1 })).get(0)) as Record<string, unknown>;
    return {
      row,
      uid,
      metadata,
      metadataFile,
      json: sample?.files.json ? utf8.decode(sample.files.json) : null,
      txt: sample?.files.txt ? utf8.decode(sample.files.txt) : null,
      shard: sample?.shard ?? null,
      key: sample?.key ?? null,
      members: sample ? Object.entries(sample.files).map(([ext, b]) => ({ ext, bytes: b.byteLength })) : [],
      truth: truthRow,
    };
  },

  close(): void {
    state?.store.close();
    state = undefined;
  },
};

export type TableWorkerApi = typeof api;

Comlink.expose(api);
