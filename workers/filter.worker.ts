/**
 * The Filter worker (comlink): runs the official baselines and filter expressions over a stored pool's
 * metadata parquet Blobs (read by byte ranges from IndexedDB, a row group at a time), off the main thread,
 * with the same core as `dcw filter` — so a subset exported here has the bytes the CLI writes.
 *
 * Language id (basic_filter, text_based, image_based*, laion2b, lang()) is fastText lid.176 from the same npm
 * package and model file as the CLI (workers/langid-fasttext.ts); where it cannot load, those filters are
 * refused with the reason. text_based and image_based* also need their assets (workers/filter-assets.ts): WordNet
 * and the wnid list, or the centroids, targets and the pool's npz `l14_img`; the nearest-centroid search runs on
 * the WebGPU engine in this worker, as `dcw filter` runs it in Node.
 */
import * as Comlink from 'comlink';
import type { Field } from 'apache-arrow';
import { ExpressionError, compileExpression } from '../src/core/filters/expr.ts';
import { RecipeError, parseRecipe, runRecipe, type Recipe, type SubsetRule } from '../src/core/filters/recipe.ts';
import { BaselineOptionError, type Arch } from '../src/core/filters/baselines.ts';
import { npzPathFor, type ImageBasedInputs } from '../src/core/filters/image-based.ts';
import type { Embeddings } from '../src/core/filters/kmeans.ts';
import type { TextBasedAssets } from '../src/core/filters/text-based.ts';
import { readNpz } from '../src/core/formats/npz.ts';
import { FormatError } from '../src/core/formats/errors.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { metadataSchema, type MetadataFile } from '../src/core/filters/scan.ts';
import { intersectSorted, subtractSorted, uniqueSorted } from '../src/core/filters/sets.ts';
import { countDistinctSorted, decodeSubsetWords, encodeSubsetWords, isSortedWords, sortUidWords, uidAt, uidCount } from '../src/core/formats/uid.ts';
import type { IngestPlan } from '../src/core/pool/ingest.ts';
import type { LanguageDetector } from '../src/core/text/langid.ts';
import { IdbPoolStore } from './idb-pool-store.ts';
import { loadBrowserFastText } from './langid-fasttext.ts';
import {
  AssetError, fetchServerFeatures, forgetWordNetIds, loadWordNet, loadWordNetIds, MISSING_WNIDS, pickFeatureFiles, pickWordNet, pickWordNetIds, storedFeatureFiles,
  serverImageAssets, type FeatureAsset, type WnidList,
} from './filter-assets.ts';
import { openWorkerGpu } from './worker-gpu.ts';

/** What the Filter view asks for: an official baseline with its flags, or a custom expression. */
export type FilterSpec =
  | {
    kind: 'baseline';
    name: 'no_filter' | 'clip_score' | 'basic_filter' | 'laion2b' | 'text_based' | 'image_based' | 'image_based_intersect_clip_score';
    arch?: Arch; threshold?: number; fraction?: number;
  }
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
  /** Metadata files whose `<stem>.npz` is stored (image_based reads their l14_img). */
  embeddingFiles: number;
}

/** What text_based and image_based* have to run with, for the view's "Baseline assets" panel. */
export interface BaselineAssets {
  /** WordNet's version once loaded (it loads on first use), or why it did not. */
  wordnet: { version: string } | { error: string } | null;
  wnids: { name: string; from: 'server' | 'picked'; ids: number; sha256: string; official: boolean } | { error: string } | null;
  /** Per feature asset: file names, where from, the matrix shape, and which official asset each file is (or null). */
  centroids: FeatureNote | { error: string } | null;
  targets: FeatureNote | { error: string } | null;
  /** The server offers these (dcw serve --centroids / --image_targets); loaded on first use. */
  served: { centroids: string | null; targets: string[] };
}
export interface FeatureNote { names: string[]; from: 'server' | 'picked'; rows: number; dim: number; official: (string | null)[] }

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

let state: {
  poolId: string; store: IdbPoolStore; files: MetadataFile[]; fields: readonly Field[]; paths: string; info: FilterInfo;
  /** The stored npz path of each metadata file that has one. */
  npz: Map<MetadataFile, string>;
} | undefined;
/** Results by spec (most recent last), so comparing and exporting do not run a filter again. */
const cache = new Map<string, { words: Uint32Array; rows: number; threshold: number | null }>();
const CACHE_SIZE = 8;

function requireState(): NonNullable<typeof state> {
  if (!state) throw new Error('no pool is open');
  return state;
}

// ---------------------------------------------------------------- baseline assets

let wnids: Promise<WnidList | null> | undefined;
let wordnetNote: BaselineAssets['wordnet'] = null;
let textBased: Promise<TextBasedAssets> | undefined;
const features: { centroids?: Promise<FeatureAsset>; targets?: Promise<FeatureAsset> } = {};
let engine: Promise<Engine> | undefined;

const isImageBased = (name: string) => name === 'image_based' || name === 'image_based_intersect_clip_score';

function assetsChanged(): void {
  textBased = undefined;
  cache.clear();
}

function loadWnids(): Promise<WnidList | null> {
  wnids ??= loadWordNetIds();
  wnids.catch(() => (wnids = undefined));
  return wnids;
}

function textBasedAssets(): Promise<TextBasedAssets> {
  textBased ??= (async () => {
    const list = await loadWnids();
    if (!list) throw new AssetError(MISSING_WNIDS);
    const wordnet = await loadWordNet().then((w) => {
      wordnetNote = { version: w.version };
      return w;
    }, (err: Error) => {
      wordnetNote = { error: err.message };
      throw err;
    });
    return { wordnet, wnids: list.ids, info: { wordnet: wordnet.version, wnids: { sha256: list.sha256, ids: list.ids.size, official: list.official } } };
  })();
  textBased.catch(() => (textBased = undefined));
  return textBased;
}

/** The centroids or targets in use, or those picked earlier in this browser (IndexedDB), or undefined. */
async function pickedFeature(which: 'centroids' | 'targets'): Promise<FeatureAsset | undefined> {
  if (!features[which]) {
    const stored = await storedFeatureFiles(which).catch(() => null);
    if (stored && !features[which]) features[which] = Promise.resolve(stored);
  }
  return features[which];
}

/** The centroids or targets: picked ones (here or earlier), else dcw serve's; AssetError naming the file when there are none. */
async function feature(which: 'centroids' | 'targets'): Promise<FeatureAsset> {
  if (!(await pickedFeature(which))) {
    const served = await serverImageAssets();
    const names = which === 'centroids' ? (served?.centroids ? [served.centroids.name] : []) : (served?.targets ?? []).map((t) => t.name);
    if (!names.length) {
      throw new AssetError(which === 'centroids'
        ? 'image_based needs the pool centroids ({scale}_centroids_l14.pt of DataComp\'s assets, or `dcw cluster`\'s .npy): pick them under “Baseline assets”, or start dcw serve with --centroids FILE'
        : 'image_based needs the ImageNet-1k target features (in1k_clip_vit_l14_{0..4}.pt of DataComp\'s assets, or `dcw pool targets`\' .npy): pick them under “Baseline assets”, or start dcw serve with --image_targets FILE...');
    }
    const loading = fetchServerFeatures(which, names);
    features[which] = loading;
    loading.catch(() => {
      if (features[which] === loading) delete features[which];
    });
  }
  return features[which]!;
}

function gpuEngine(): Promise<Engine> {
  engine ??= openWorkerGpu().then((device) => new Engine(device));
  engine.catch(() => (engine = undefined));
  return engine;
}

/** The pool's `l14_img` rows of one metadata file's npz, as `dcw filter` reads them (float16 kept as is). */
async function l14Embeddings(file: MetadataFile): Promise<Embeddings> {
  const s = requireState();
  const path = s.npz.get(file);
  if (!path) throw new FormatError(npzPathFor(file.name), `missing: ${NO_EMBEDDINGS}`);
  const source = await s.store.openFile(path);
  if (!source) throw new FormatError(path, `missing: ${NO_EMBEDDINGS}`);
  const a = readNpz(await source.slice(0, source.byteLength), path, { only: ['l14_img'] }).l14_img!;
  if (a.shape.length !== 2 || !(a.dtype === '<f2' || a.dtype === '<f4')) throw new FormatError(path, `l14_img is ${a.dtype} (${a.shape.join(', ')}), not a float16/float32 matrix`);
  return { rows: a.shape[0]!, dim: a.shape[1]!, data: a.data as Float32Array | Uint16Array };
}

const NO_EMBEDDINGS = 'image_based reads the pool\'s l14_img image embeddings from the .npz beside each metadata parquet';

async function imageBasedInputs(): Promise<ImageBasedInputs> {
  const s = requireState();
  if (s.info.embeddingFiles < s.files.length) {
    throw new AssetError(`${NO_EMBEDDINGS}, and ${s.info.embeddingFiles ? `only ${s.info.embeddingFiles} of ${s.files.length} files have one` : 'this pool has none'}: run \`dcw pool score\` on it, or add a pool whose metadata comes with its .npz files`);
  }
  const [centroids, targets] = await Promise.all([feature('centroids'), feature('targets')]);
  let gpu: Engine;
  try {
    gpu = await gpuEngine();
  } catch (err) {
    throw new AssetError(`image_based runs its nearest-centroid search on WebGPU, which did not open in this worker: ${(err as Error).message}`);
  }
  return { engine: gpu, centroids: centroids.matrix, targets: targets.matrix, embeddings: l14Embeddings };
}

/** The assets a spec needs, loaded; or the one-line reason it cannot run. */
async function prepare(spec: FilterSpec): Promise<{ textBased?: TextBasedAssets; imageBased?: ImageBasedInputs } | { ok: false; error: string }> {
  if (spec.kind !== 'baseline') return {};
  try {
    if (spec.name === 'text_based') return { textBased: await textBasedAssets() };
    if (isImageBased(spec.name)) return { imageBased: await imageBasedInputs() };
  } catch (err) {
    if (err instanceof AssetError || err instanceof FormatError || (err as Error).name === 'FormatError') return { ok: false, error: (err as Error).message };
    throw err;
  }
  return {};
}

const noteOf = (a: FeatureAsset): FeatureNote => ({ names: a.names, from: a.from, rows: a.matrix.rows, dim: a.matrix.dim, official: a.official });

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
  if ((spec.name === 'basic_filter' || spec.name === 'laion2b' || spec.name === 'text_based' || isImageBased(spec.name)) && !detector) return { ok: false, error: `${spec.name} ${NO_DETECTOR}` };
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
  const assets = await prepare(spec);
  if ('ok' in assets) throw new AssetError(assets.error);
  const { words, record } = await runRecipe(s.files, recipeFor(spec), { file: 'filter', detector, ...assets });
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
    const npz = new Map<MetadataFile, string>();
    for (const path of metadataPaths) {
      const file: MetadataFile = { name: path.replace(/^.*\//, ''), source: (await store.openFile(path))! };
      files.push(file);
      if (stored.has(npzPathFor(path))) npz.set(file, npzPathFor(path));
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
      embeddingFiles: npz.size,
    };
    state = { poolId, store, files, fields, paths, info, npz };
    return info;
  },

  /** Kept uids (with duplicates, as the official script keeps them), distinct, and rows read. */
  async count(spec: FilterSpec): Promise<FilterCount> {
    const s = requireState();
    const bad = check(spec, s.fields) ?? await prepare(spec);
    if ('ok' in bad) return bad;
    try {
      const r = await run(spec);
      return { ok: true, kept: uidCount(r.words), distinct: countDistinctSorted(r.words), rows: r.rows, threshold: r.threshold };
    } catch (err) {
      if (err instanceof RecipeError || err instanceof BaselineOptionError || err instanceof AssetError || err instanceof RangeError || (err as Error).name === 'FormatError') {
        return { ok: false, error: (err as Error).message };
      }
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

  /** The text_based and image_based assets as they stand (nothing big is loaded to answer). */
  async baselineAssets(): Promise<BaselineAssets> {
    const served = await serverImageAssets();
    const settled = async <T, R>(p: Promise<T> | undefined, map: (v: T) => R): Promise<R | { error: string } | null> => {
      if (!p) return null;
      try {
        return map(await p);
      } catch (err) {
        return { error: (err as Error).message };
      }
    };
    return {
      wordnet: wordnetNote,
      wnids: await settled(loadWnids(), (l) => l && { name: l.name, from: l.from, ids: l.ids.size, sha256: l.sha256, official: l.official }),
      centroids: await settled(pickedFeature('centroids'), (a) => (a ? noteOf(a) : null)),
      targets: await settled(pickedFeature('targets'), (a) => (a ? noteOf(a) : null)),
      served: { centroids: served?.centroids?.name ?? null, targets: (served?.targets ?? []).map((t) => t.name) },
    };
  },

  /** WordNet from picked files (a .tar.gz and/or the index and exception files); kept in IndexedDB. */
  async pickWordNet(files: File[]): Promise<void> {
    try {
      const w = await pickWordNet(files);
      wordnetNote = { version: w.version };
    } catch (err) {
      wordnetNote = { error: (err as Error).message };
    }
    assetsChanged();
  },

  /** A picked ImageNet-21k wnid list (kept in IndexedDB for next time); `null` forgets it (the server's is used). */
  async pickWordNetIds(file: File | null): Promise<void> {
    if (file) wnids = pickWordNetIds(file);
    else {
      await forgetWordNetIds();
      wnids = undefined;
    }
    await wnids?.catch(() => undefined);
    assetsChanged();
  },

  /** Picked centroids (one file) or targets (the five in1k_clip_vit_l14_{0..4}.pt, or one .npy). */
  async pickFeatures(which: 'centroids' | 'targets', files: File[]): Promise<void> {
    features[which] = pickFeatureFiles(files, which);
    await features[which].catch(() => undefined);
    assetsChanged();
  },

  close(): void {
    state?.store.close();
    state = undefined;
    cache.clear();
  },
};

export type FilterWorkerApi = typeof api;

Comlink.expose(api);
