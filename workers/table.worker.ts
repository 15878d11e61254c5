/**
 * The Inspect worker (comlink): opens a stored pool's metadata (only the columns the grid needs, read by
 * byte ranges from the stored parquet Blobs), answers sort/filter/search queries and histograms, and reads
 * pictures and sample json from IndexedDB by uid. The page keeps only what is on screen.
 *
 * It also groups duplicates (src/core/filters/dedup.ts: same sha256, image-embedding cosine from the pool's
 * npz files, or picture fingerprints decoded here) and ranks the pool by similarity to one sample ("more
 * like this"). Long work runs in steps that let the grid's requests through in between.
 */
import * as Comlink from 'comlink';
import { ParquetFile, readParquet } from '../src/core/formats/parquet.ts';
import {
  groupByEmbeddingSteps, groupByFingerprint, groupByKey, groupSizes, rankBySimilarity, type DuplicateGroups,
} from '../src/core/filters/dedup.ts';
import { fingerprint, type Fingerprint } from '../src/core/pool/contamination.ts';
import { embeddingMatrix, embeddingPair, npzPathFor, type EmbeddingKey, type EmbeddingMatrix } from '../src/core/pool/embeddings.ts';
import type { IngestPlan } from '../src/core/pool/ingest.ts';
import { IdbPoolStore } from './idb-pool-store.ts';
import { BrowserImageCodec } from './image-codec.ts';
import { decodeSubsetWords, uidCount } from '../src/core/formats/uid.ts';
import {
  buildTable, histogram, markCounts, markRows, plainValue, rowViews, runQuery, setDerivedColumn, wantedColumns,
  type ColumnInfo, type Histogram, type MarkCounts, type MarkSlot, type PoolTable, type RowView, type TableQuery,
} from './pool-table.ts';
import { DEFAULT_NEAR_THRESHOLD, FINGERPRINT_LIMIT, GROUP_SIZE_COLUMN, NO_EMBEDDINGS, SIMILAR_TOP } from './table-constants.ts';

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
  /** The metadata has a sha256 column (exact duplicates). */
  hasSha256: boolean;
  /** Metadata files with their `<stem>.npz` embeddings stored: "more like this" and embedding groups need all. */
  embeddingFiles: number;
}

/** A badge filter set on the table: the rows it keeps over the whole pool. */
export interface MarkSummary {
  slot: MarkSlot;
  kept: number;
  rows: number;
  /** For a subset file: uids in it (repeats counted). */
  uids?: number;
}

export type DuplicateMode = 'exact' | 'embedding' | 'fingerprint';

export interface DuplicateSpec {
  mode: DuplicateMode;
  /** Cosine threshold for 'embedding'. */
  threshold?: number;
}

export interface DuplicateProgress {
  phase: 'embeddings' | 'pictures' | 'pairs';
  done: number;
  total: number;
}

export interface DuplicateSummary {
  spec: DuplicateSpec;
  /** Rows the grouping looked at: the whole pool, or (fingerprints of a large pool) the rows in view. */
  over: 'pool' | 'view';
  rowsGrouped: number;
  groups: number;
  rowsInGroups: number;
  largest: number;
  /** Groups with a member in the current view (what `groups` lists). */
  groupsInView: number;
  /** The embedding key used ('embedding' mode), e.g. l14_img. */
  key?: string;
  /** Rows without a picture or embedding (never grouped). */
  without: number;
  seconds: number;
  /** The table's columns, now with GROUP_SIZE_COLUMN. */
  columns: ColumnInfo[];
}

export interface GroupView {
  /** Index of the group (largest first). */
  index: number;
  size: number;
  /** The first members, in pool order. */
  members: RowView[];
}

export interface SimilarSummary {
  row: number;
  uid: string;
  text: string;
  key: string;
  withText: boolean;
  /** Samples shown (the top of the ranking). */
  count: number;
  /** Samples ranked (those with an embedding). */
  ranked: number;
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
  /** Metadata files' npz paths, in table file order (all stored), or null when some file has none. */
  npzPaths: string[] | null;
  embeddings: Map<EmbeddingKey, Promise<EmbeddingMatrix>>;
  pair?: Promise<{ image: EmbeddingKey; text: EmbeddingKey | null }>;
  fingerprints: Map<number, Fingerprint | null>;
  duplicates?: { spec: DuplicateSpec; groups: DuplicateGroups; over: 'pool' | 'view'; rowsGrouped: number; without: number; key?: string; seconds: number };
  /** Indices of the groups with a member in the current view. */
  groupsInView: number[];
  /** Scores of the "more like this" ranking shown now, or undefined. */
  similarity?: Float64Array;
  /** Bumped by every new duplicates request: an older one still running stops at its next step. */
  generation: number;
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
  const npzPaths = metadataPaths.map(npzPathFor);
  const embeddingFiles = npzPaths.filter((p) => stored.has(p)).length;
  state = {
    poolId, store, table, order: runQuery(table, {}), query: {},
    npzPaths: metadataPaths.length && embeddingFiles === metadataPaths.length ? npzPaths : null,
    embeddings: new Map(), fingerprints: new Map(), groupsInView: [], generation: 0,
  };
  return {
    poolId,
    rows: table.rows,
    columns: table.columns,
    metadataFiles: metadataPaths.length,
    plannedMetadataFiles: plan?.listing.metadata.length ?? 0,
    hasTruth: stored.has(TRUTH_PATH),
    hasSha256: Boolean(table.sha256),
    embeddingFiles,
  };
}

type State = NonNullable<typeof state>;

async function fileBytes(store: IdbPoolStore, path: string): Promise<Uint8Array> {
  const source = await store.openFile(path);
  if (!source) throw new Error(`${path} is not stored`);
  return source.slice(0, source.byteLength);
}

/** The image/text keys the pool's npz files offer (from the first file's directory). */
function embeddingKeys(s: State): Promise<{ image: EmbeddingKey; text: EmbeddingKey | null }> {
  const paths = s.npzPaths;
  if (!paths) return Promise.reject(new Error(NO_EMBEDDINGS));
  s.pair ??= fileBytes(s.store, paths[0]!).then((bytes) => embeddingPair(bytes, paths[0]!));
  return s.pair;
}

/** One key of every npz as a matrix over the table's rows (loaded once). */
function embeddings(s: State, key: EmbeddingKey): Promise<EmbeddingMatrix> {
  let m = s.embeddings.get(key);
  if (!m) {
    const { table, store } = s;
    const paths = s.npzPaths!;
    const rowsOf = table.files.map((_, f) => table.fileOf.reduce((n, x) => n + (x === f ? 1 : 0), 0));
    m = Promise.all(paths.map((p) => fileBytes(store, p))).then((bytes) =>
      embeddingMatrix(bytes.map((npz, f) => ({ file: paths[f]!, rows: rowsOf[f]!, npz })), key));
    m.catch(() => s.embeddings.delete(key));
    s.embeddings.set(key, m);
  }
  return m;
}

/** Lets queued messages (the grid's row and picture requests) run between steps of long work. */
const breathe = () => new Promise<void>((r) => setTimeout(r, 0));

const codec = new BrowserImageCodec();

/** Fingerprints of the rows' pictures, decoded here (cached per row; null: no picture stored or not decodable). */
async function fingerprints(s: State, rows: Uint32Array, generation: number, report: (done: number) => void): Promise<void> {
  const todo = [...rows].filter((r) => !s.fingerprints.has(r));
  let done = rows.length - todo.length;
  for (let at = 0; at < todo.length; at += 100) {
    const batch = todo.slice(at, at + 100);
    const samples = await s.store.getSamples(batch.map((r) => s.table.uid[r]!));
    for (const [i, row] of batch.entries()) {
      const files = samples[i]?.files;
      const ext = files && Object.keys(files).find((e) => e in IMAGE_TYPES);
      let fp: Fingerprint | null = null;
      if (ext) {
        try {
          const image = await codec.decode(files[ext]!, `${s.table.uid[row]}.${ext}`);
          fp = fingerprint(new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), image.width, image.height, 4);
        } catch {
          fp = null; // a picture that does not decode has no fingerprint: it matches nothing
        }
      }
      s.fingerprints.set(row, fp);
    }
    done += batch.length;
    report(done);
    if (generation !== s.generation) return;
  }
}

function groupsInView(s: State): number[] {
  const d = s.duplicates;
  if (!d) return [];
  const inView = new Uint8Array(s.table.rows);
  for (const r of s.order) inView[r] = 1;
  const out: number[] = [];
  d.groups.groups.forEach((g, i) => {
    if (g.some((r) => inView[r])) out.push(i);
  });
  return out;
}

function summary(s: State): DuplicateSummary {
  const d = s.duplicates!;
  return {
    spec: d.spec,
    over: d.over,
    rowsGrouped: d.rowsGrouped,
    groups: d.groups.groups.length,
    rowsInGroups: d.groups.groups.reduce((n, g) => n + g.length, 0),
    largest: d.groups.groups[0]?.length ?? 0,
    groupsInView: s.groupsInView.length,
    key: d.key,
    without: d.without,
    seconds: d.seconds,
    columns: s.table.columns,
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

  /**
   * Runs a query (and ends a "more like this" ranking); `groups` counts the duplicate groups in view, `marks` the
   * rows in view that the badge filters keep.
   */
  query(query: TableQuery): { count: number; groups: number; marks: MarkCounts } {
    const s = requireState();
    s.order = runQuery(s.table, query);
    s.query = query;
    s.similarity = undefined;
    s.groupsInView = groupsInView(s);
    return { count: s.order.length, groups: s.groupsInView.length, marks: markCounts(s.table, s.order) };
  },

  /**
   * Sets badge filter `slot` to the uids a filter keeps (uid words, as the filter worker's `keptWords` hands them
   * over; transfer them), or clears it (null). The next `query` shows and counts them.
   */
  setMarks(slot: MarkSlot, words: Uint32Array | null): MarkSummary {
    const s = requireState();
    return { slot, kept: markRows(s.table, slot, words), rows: s.table.rows };
  },

  /** Sets badge filter `slot` to a subset file (`.npy` as apply_filter.py writes it, or raw records). */
  setMarksFromSubset(slot: MarkSlot, bytes: Uint8Array, name: string): MarkSummary {
    const s = requireState();
    const words = decodeSubsetWords(bytes, name);
    return { slot, kept: markRows(s.table, slot, words), rows: s.table.rows, uids: uidCount(words) };
  },

  rows(start: number, end: number): RowView[] {
    const s = requireState();
    return rowViews(s.table, s.order, start, end, s.similarity);
  },

  /**
   * Groups the pool's duplicates and adds GROUP_SIZE_COLUMN. Exact and embedding groups cover the whole pool;
   * fingerprints need each picture decoded, so they cover the whole pool when it has at most FINGERPRINT_LIMIT
   * rows, else the rows in view when those are few enough (else it throws, asking for a narrower view).
   */
  async duplicates(spec: DuplicateSpec, onProgress?: (p: DuplicateProgress) => void): Promise<DuplicateSummary | null> {
    const s = requireState();
    const generation = ++s.generation;
    const started = performance.now();
    const { table } = s;
    let groups: DuplicateGroups;
    let over: 'pool' | 'view' = 'pool';
    let rowsGrouped = table.rows;
    let without = 0;
    let key: string | undefined;
    let subset: Uint32Array | undefined;
    if (spec.mode === 'exact') {
      if (!table.sha256) throw new Error('the metadata has no sha256 column: exact duplicates cannot be found');
      groups = groupByKey(table.sha256);
      without = table.sha256.filter((k) => !k).length;
    } else if (spec.mode === 'embedding') {
      const threshold = spec.threshold ?? DEFAULT_NEAR_THRESHOLD;
      if (!(threshold > 0 && threshold <= 1)) throw new Error(`the cosine threshold is a number above 0 and at most 1, not ${spec.threshold}`);
      onProgress?.({ phase: 'embeddings', done: 0, total: 1 });
      const { image } = await embeddingKeys(s);
      const m = await embeddings(s, image);
      key = m.key;
      without = table.rows - m.valid;
      const steps = groupByEmbeddingSteps(m.vectors, m.dim, threshold);
      for (;;) {
        const step = steps.next();
        if (step.done) {
          groups = step.value;
          break;
        }
        onProgress?.({ phase: 'pairs', ...step.value });
        await breathe();
        if (generation !== s.generation) return null;
      }
    } else {
      const rows = table.rows <= FINGERPRINT_LIMIT ? undefined : s.order;
      if (rows && rows.length > FINGERPRINT_LIMIT) {
        throw new Error(`near duplicates by picture decode every picture here: narrow the view to at most ${FINGERPRINT_LIMIT.toLocaleString('en-US')} samples (filters or search; ${rows.length.toLocaleString('en-US')} now), or give the pool embeddings with \`dcw pool score\``);
      }
      subset = rows ? Uint32Array.from(rows) : Uint32Array.from(table.uid.keys());
      over = rows ? 'view' : 'pool';
      rowsGrouped = subset.length;
      await fingerprints(s, subset, generation, (done) => onProgress?.({ phase: 'pictures', done, total: subset!.length }));
      if (generation !== s.generation) return null;
      onProgress?.({ phase: 'pairs', done: 0, total: 1 });
      await breathe();
      const fps = Array.from({ length: table.rows }, (_, r) => s.fingerprints.get(r) ?? null);
      without = subset.reduce((n, r) => n + (fps[r] ? 0 : 1), 0);
      groups = groupByFingerprint(fps, { rows: subset });
    }
    if (generation !== s.generation) return null;
    setDerivedColumn(table, GROUP_SIZE_COLUMN, groupSizes(groups, subset), 'samples in its duplicate group (1: no duplicate; computed by Group duplicates)');
    s.duplicates = { spec, groups, over, rowsGrouped, without, key, seconds: (performance.now() - started) / 1000 };
    s.groupsInView = groupsInView(s);
    return summary(s);
  },

  /** Stops a grouping that is still running. */
  cancelDuplicates(): void {
    if (state) state.generation++;
  },

  /** The duplicate groups with a member in view, positions [start, end), each with its first `maxMembers` members. */
  groups(start: number, end: number, maxMembers = 12): GroupView[] {
    const s = requireState();
    const d = s.duplicates;
    if (!d) return [];
    return s.groupsInView.slice(Math.max(0, start), end).map((index) => {
      const g = d.groups.groups[index]!;
      return { index, size: g.length, members: rowViews(s.table, g, 0, maxMembers) };
    });
  },

  /** Whether "more like this" can run, and with which keys. */
  async similarityKeys(): Promise<{ image: string; text: string | null }> {
    return embeddingKeys(requireState());
  },

  /**
   * "More like this": the grid shows the SIMILAR_TOP rows most similar to `row` (the row itself first) by
   * cosine of the image embeddings, or of image and text together. `query` brings the normal grid back.
   */
  async similar(row: number, withText = false): Promise<SimilarSummary> {
    const s = requireState();
    const { table } = s;
    if (!(row >= 0 && row < table.rows)) throw new Error(`no row ${row}`);
    const keys = await embeddingKeys(s);
    const image = await embeddings(s, keys.image);
    const text = withText && keys.text ? await embeddings(s, keys.text) : undefined;
    const ranking = rankBySimilarity(image.vectors, image.dim, row, text && { vectors: text.vectors, dim: text.dim });
    const ranked = ranking.scores.reduce((n, v) => n + (Number.isNaN(v) ? 0 : 1), 0);
    s.order = ranking.order.slice(0, Math.min(SIMILAR_TOP, ranked));
    s.similarity = ranking.scores;
    return {
      row, uid: table.uid[row]!, text: table.text[row]!, key: text ? `${image.key} + ${text.key}` : image.key,
      withText: Boolean(text), count: s.order.length, ranked,
    };
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
