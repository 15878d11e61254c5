/**
 * The Filter worker (comlink): runs the official baselines and filter expressions over a stored pool's
 * metadata parquet Blobs (read by byte ranges from IndexedDB, a row group at a time), off the main thread,
 * with the same core as `dcw filter` — so a subset exported here has the bytes the CLI writes.
 *
 * Language id (basic_filter, laion2b, lang()) is fastText lid.176 from the same npm package and model file
 * as the CLI (workers/langid-fasttext.ts); where it cannot load, those filters are refused with the reason.
 */
import * as Comlink from 'comlink';
import type { Field } from 'apache-arrow';
import { ExpressionError, compileExpression } from '../src/core/filters/expr.ts';
import { RecipeError, parseRecipe, runRecipe, type Recipe, type SubsetRule } from '../src/core/filters/recipe.ts';
import { BaselineOptionError, type Arch } from '../src/core/filters/baselines.ts';
import { metadataSchema, type MetadataFile } from '../src/core/filters/scan.ts';
import { intersectSorted, subtractSorted, uniqueSorted } from '../src/core/filters/sets.ts';
import { countDistinctSorted, decodeSubsetWords, encodeSubsetWords, isSortedWords, sortUidWords, uidAt, uidCount } from '../src/core/formats/uid.ts';
import type { IngestPlan } from '../src/core/pool/ingest.ts';
import type { LanguageDetector } from '../src/core/text/langid.ts';
import { IdbPoolStore } from './idb-pool-store.ts';
import { loadBrowserFastText } from './langid-fasttext.ts';

/** What the Filter view asks for: an official baseline with its flags, or a custom expression. */
export type FilterSpec =
  | { kind: 'baseline'; name: 'no_filter' | 'clip_score' | 'basic_filter' | 'laion2b'; arch?: Arch; threshold?: number; fraction?: number }
  | { kind: 'where'; where: string };

export interface FilterInfo {
  poolId: string;
  /** Metadata files stored (of those the plan lists). */
  metadataFiles: number;
  /** Metadata columns (name and Arrow type), for the expression help. */
  columns: { name: string; type: string }[];
  /** Whether a language detector runs here (basic_filter, laion2b, lang()). */
  languageId: boolean;
  /** The detector's name and version, or why it did not load. */
  languageIdNote: string;
}

export type FilterCount =
  | { ok: true; kept: number; distinct: number; rows: number; threshold: number | null }
  /** `at`: 0-based character of the problem in the expression, when it is an expression error. */
  | { ok: false; error: string; at?: number };

export interface CompareSide { count: number; samples: string[] }
export interface FilterComparison { a: number; b: number; both: CompareSide; onlyA: CompareSide; onlyB: CompareSide }

export interface ImportedSubset {
  name: string;
  count: number;
  distinct: number;
  sorted: boolean;
  /** Distinct uids of the file that are in the pool. */
  inPool: number;
  poolDistinct: number;
}

const NO_DETECTOR = 'needs language id (fastText lid.176), which did not load in this browser; use `dcw filter` for it';
let detector: LanguageDetector | undefined;
let detectorNote = '';

let state: { poolId: string; store: IdbPoolStore; files: MetadataFile[]; fields: readonly Field[]; paths: string; info: FilterInfo } | undefined;
/** Results by spec (most recent last), so comparing and exporting do not run a filter again. */
const cache = new Map<string, { words: Uint32Array; rows: number; threshold: number | null }>();
const CACHE_SIZE = 8;

function requireState(): NonNullable<typeof state> {
  if (!state) throw new Error('no pool is open');
  return state;
}

/** The one-subset recipe for a spec (what "export recipe" saves, and what `dcw filter --recipe` runs). */
function recipeFor(spec: FilterSpec): Recipe {
  let rule: SubsetRule;
  if (spec.kind === 'where') rule = { where: spec.where };
  else {
    const r: Record<string, unknown> = { baseline: spec.name };
    if (spec.arch !== undefined) r.arch = spec.arch;
    if (spec.threshold !== undefined) r.threshold = spec.threshold;
    if (spec.fraction !== undefined) r.fraction = spec.fraction;
    rule = r as SubsetRule;
  }
  return { recipe: 1, subsets: { subset: rule }, result: 'subset' };
}

/** Checks a spec without running it: the user's mistake as a message (and its column, for expressions). */
function check(spec: FilterSpec, fields: readonly Field[]): FilterCount | undefined {
  if (spec.kind === 'where') {
    if (!spec.where.trim()) return { ok: false, error: 'write a condition, e.g. original_width >= 200', at: 0 };
    try {
      const c = compileExpression(spec.where, fields, 'bool');
      if (c.usesLang && !detector) return { ok: false, error: `lang() ${NO_DETECTOR}`, at: spec.where.indexOf('lang') };
    } catch (err) {
      if (err instanceof ExpressionError) return { ok: false, error: err.message.replace(/^.*?at character \d+: /s, ''), at: err.at };
      throw err;
    }
    return undefined;
  }
  if ((spec.name === 'basic_filter' || spec.name === 'laion2b') && !detector) return { ok: false, error: `${spec.name} ${NO_DETECTOR}` };
  try {
    parseRecipe(JSON.stringify(recipeFor(spec)), 'filter');
  } catch (err) {
    if (err instanceof RecipeError) return { ok: false, error: err.message.replace(/^filter: subsets\.subset: /, '') };
    throw err;
  }
  return undefined;
}

async function run(spec: FilterSpec): Promise<{ words: Uint32Array; rows: number; threshold: number | null }> {
  const s = requireState();
  const key = JSON.stringify(spec);
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const { words, record } = await runRecipe(s.files, recipeFor(spec), { file: 'filter', detector });
  const sub = record.subsets.subset!;
  const result = { words, rows: sub.rows_read, threshold: sub.threshold ?? null };
  cache.set(key, result);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return result;
}

/** Up to `n` uids spread evenly over sorted words (uids are hashes, so this is an unbiased look). */
function spread(words: Uint32Array, n: number): string[] {
  const count = uidCount(words);
  const out: string[] = [];
  for (let k = 0; k < Math.min(n, count); k++) out.push(uidAt(words, Math.floor((k * count) / Math.min(n, count))));
  return out;
}

const api = {
  /**
   * Opens a pool's stored metadata. Opening the pool that is open, with the same metadata files stored, keeps
   * the results already computed (the Train and Inspect views share a worker and open it in turn).
   */
  async open(poolId: string): Promise<FilterInfo> {
    const store = await IdbPoolStore.open(poolId);
    const plan = await store.readPlan<IngestPlan>();
    const stored = new Set((await store.completedFiles()).map((f) => f.path));
    const metadataPaths = (plan?.listing.metadata ?? []).map((m) => m.path).filter((p) => stored.has(p) && p.endsWith('.parquet'));
    const paths = JSON.stringify(metadataPaths);
    if (state && state.poolId === poolId && state.paths === paths) {
      store.close();
      return state.info;
    }
    state?.store.close();
    state = undefined;
    cache.clear();
    const files: MetadataFile[] = [];
    for (const path of metadataPaths) {
      files.push({ name: path.replace(/^.*\//, ''), source: (await store.openFile(path))! });
    }
    const fields = (await metadataSchema(files))?.schema.fields ?? [];
    if (!detector) {
      try {
        detector = await loadBrowserFastText();
        detectorNote = `${detector.name} (${detector.version})`;
      } catch (err) {
        detectorNote = `fastText did not load: ${(err as Error).message}`;
      }
    }
    const info: FilterInfo = {
      poolId,
      metadataFiles: files.length,
      columns: fields.map((f) => ({ name: f.name, type: String(f.type) })),
      languageId: detector !== undefined,
      languageIdNote: detectorNote,
    };
    state = { poolId, store, files, fields, paths, info };
    return info;
  },

  /** Kept uids (with duplicates, as the official script keeps them), distinct, and rows read. */
  async count(spec: FilterSpec): Promise<FilterCount> {
    const s = requireState();
    const bad = check(spec, s.fields);
    if (bad) return bad;
    try {
      const r = await run(spec);
      return { ok: true, kept: uidCount(r.words), distinct: countDistinctSorted(r.words), rows: r.rows, threshold: r.threshold };
    } catch (err) {
      if (err instanceof RecipeError || err instanceof BaselineOptionError || (err as Error).name === 'FormatError') return { ok: false, error: (err as Error).message };
      throw err;
    }
  },

  async compare(a: FilterSpec, b: FilterSpec, samples = 6): Promise<FilterComparison> {
    const s = requireState();
    for (const spec of [a, b]) {
      const bad = check(spec, s.fields);
      if (bad && !bad.ok) throw new Error(bad.error);
    }
    const wa = uniqueSorted((await run(a)).words);
    const wb = uniqueSorted((await run(b)).words);
    const side = (w: Uint32Array): CompareSide => ({ count: uidCount(w), samples: spread(w, samples) });
    return { a: uidCount(wa), b: uidCount(wb), both: side(intersectSorted(wa, wb)), onlyA: side(subtractSorted(wa, wb)), onlyB: side(subtractSorted(wb, wa)) };
  },

  /** The subset `.npy`: np.save of the sorted u8,u8 records, as apply_filter.py writes it. */
  async subsetNpy(spec: FilterSpec): Promise<Uint8Array> {
    const bad = check(spec, requireState().fields);
    if (bad && !bad.ok) throw new Error(bad.error);
    const bytes = encodeSubsetWords((await run(spec)).words, { sorted: true });
    return Comlink.transfer(bytes, [bytes.buffer]);
  },

  /**
   * The uids the spec keeps, as uid words in numpy's order (repeats kept), transferred: the Inspect view hands
   * them on to the table worker for its keep/drop badges without reading them.
   */
  async keptWords(spec: FilterSpec): Promise<Uint32Array> {
    const bad = check(spec, requireState().fields);
    if (bad && !bad.ok) throw new Error(bad.error);
    const words = (await run(spec)).words.slice();
    return Comlink.transfer(words, [words.buffer]);
  },

  recipeJson(spec: FilterSpec): string {
    return JSON.stringify(recipeFor(spec), null, 2) + '\n';
  },

  /** Reads a subset file someone else made (.npy or raw records) and measures it against the pool. */
  async importSubset(bytes: Uint8Array, name: string): Promise<ImportedSubset> {
    const words = decodeSubsetWords(bytes, name);
    const sorted = isSortedWords(words);
    const distinctWords = uniqueSorted(sorted ? words : sortUidWords(words));
    const pool = uniqueSorted((await run({ kind: 'baseline', name: 'no_filter' })).words);
    return {
      name,
      count: uidCount(words),
      distinct: uidCount(distinctWords),
      sorted,
      inPool: uidCount(intersectSorted(distinctWords, pool)),
      poolDistinct: uidCount(pool),
    };
  },

  close(): void {
    state?.store.close();
    state = undefined;
    cache.clear();
  },
};

export type FilterWorkerApi = typeof api;

Comlink.expose(api);
