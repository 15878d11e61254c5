/**
 * Scores for a pool that has none: the Data Filtering Network idea (Fang et al. 2023, "Data Filtering
 * Networks") at workbench size. A CommonPool comes with OpenAI CLIP B/32 and L/14 cosine scores and their
 * embeddings (`metadata/<stem>.npz`); a pool without them (the embedded default) gets both from a scoring model
 * trained here:
 *
 *   1. trusted subset   a rule a researcher would choose for "clean" pairs, by default basic_filter (English,
 *                       caption length, image size: DFN's filter network trained on filtered data); any
 *                       baseline or recipe can take its place, and the result names it
 *   2. train            trainClip with a scorer recipe (scales.ts: scorer-cpu, scorer-gpu) on the trusted
 *                       samples, resharded in memory as `dcw run` does (run-in-memory.ts)
 *   3. embed            EVERY row of every metadata file: the caption from the parquet's `text`, the image from
 *                       the pool's shards (found by the uid in each sample's json) with the evaluation
 *                       preprocessing (Resize + CenterCrop), both L2-normalised and stored as float16 in the
 *                       parquet's row order
 *   4. score            the dot product of the stored (float16) image and text vectors, as dataset2metadata's
 *                       postprocessor takes the dot product of the normalised features: anyone recomputing it
 *                       from the npz gets the same number (to float32 rounding)
 *
 * Both score columns (`clip_b32_similarity_score`, `clip_l14_similarity_score`) and both embedding pairs
 * (`b32_*`, `l14_*`) hold this one scorer's values, of its embedding width (64 or 128, not 512 / 768): the
 * names are kept so the official tools read the files; they are not OpenAI models, and the official
 * thresholds (0.25, 0.28) mean nothing for this scorer (use a fraction).
 *
 * Memory: shards are streamed; what is kept is the trusted subset's samples (for training) and the
 * embeddings (rows × width × 2 × 2 bytes). Deterministic for a seed on a given device.
 */
import { Field, Float32, makeData, Schema, Table, Vector } from 'apache-arrow';
import { checkBaselineSpec, runBaseline, type BaselineSpec } from '../filters/baselines.ts';
import type { KeepRunner } from '../filters/keep.ts';
import { runRecipe, type Recipe } from '../filters/recipe.ts';
import type { MetadataFile } from '../filters/scan.ts';
import { normalizeRows } from '../eval/zeroshot.ts';
import { FormatError } from '../formats/errors.ts';
import type { ImageCodec } from '../formats/image.ts';
import { float16ToFloat32, float32ToFloat16 } from '../formats/npy.ts';
import { encodeNpz } from '../formats/npz.ts';
import { ParquetFile, writeParquet } from '../formats/parquet.ts';
import { uidCount } from '../formats/uid.ts';
import { readSamples } from '../formats/webdataset.ts';
import type { Backend, BackendTensor } from '../gpu/backend.ts';
import { checkpointBytes } from '../model/checkpoint.ts';
import { clipConfig } from '../model/configs.ts';
import { SubsetIndex } from '../reshard/plan.ts';
import type { LanguageDetector } from '../text/langid.ts';
import type { ClipTokenizer } from '../text/tokenizer.ts';
import type { TrainState } from '../train/checkpoint.ts';
import { TRAIN_IMAGE_EXTENSIONS, type ShardStore } from '../train/loader.ts';
import { trainClip, type TrainProgress } from '../train/loop.ts';
import type { ScaleConfig } from '../train/scales.ts';
import { evalTransformInto } from '../train/augment.ts';
import { clipEncoders } from './evaluate.ts';
import { reshardInMemory } from './run-in-memory.ts';

export const SCORE_COLUMNS = ['clip_b32_similarity_score', 'clip_l14_similarity_score'] as const;
/** The official npz keys, in the order they are written; `*_img` / `*_txt` pairs hold the same scorer's vectors. */
export const NPZ_KEYS = ['b32_img', 'b32_txt', 'l14_img', 'l14_txt'] as const;

/** Which samples the scorer trains on. */
export type TrustedRule =
  | { kind: 'baseline'; spec: BaselineSpec }
  | { kind: 'recipe'; recipe: Recipe; file: string };

/** The default: basic_filter, the official model-free baseline (English, > 2 words, > 5 characters, ≥ 200 px, aspect ≤ 3). */
export const DEFAULT_TRUSTED: TrustedRule = Object.freeze({ kind: 'baseline', spec: Object.freeze({ name: 'basic_filter' }) }) as TrustedRule;

/** A one-line name of a trusted rule, for the output and the logs. */
export function describeTrusted(rule: TrustedRule): string {
  if (rule.kind === 'recipe') return `recipe ${rule.file}`;
  const { name, ...rest } = rule.spec;
  const params = Object.entries(rest).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
  return params.length ? `${name} (${params.join(', ')})` : name;
}

export interface ScorePoolOptions<T extends BackendTensor> {
  backend: Backend<T>;
  /** A scorer recipe (scales.ts SCALES['scorer-cpu' | 'scorer-gpu']) or any other ScaleConfig (tests). */
  scale: ScaleConfig;
  seed: number;
  /** The pool's metadata parquet files, in the order their outputs are wanted. */
  metadata: readonly MetadataFile[];
  /** The pool's shards (samples found by the uid in their json, in any order). */
  poolShards: ShardStore;
  codec: ImageCodec;
  tokenizer: ClipTokenizer;
  trusted?: TrustedRule;
  /** Needed when the trusted rule asks for a language (basic_filter, laion2b, lang()). */
  detector?: LanguageDetector;
  /** Runs the model-free filter passes (server/filters/parallel.ts); default in this thread. */
  runner?: KeepRunner;
  /** Rows with no readable sample in the shards get a null score and NaN image vectors instead of an error. */
  allowMissing?: boolean;
  /** Images (and captions) per forward pass. Default 256. */
  batchSize?: number;
  /** Train loss read every this many steps (default open_clip's 100). */
  logEvery?: number;
  log?: (line: string) => void;
  onTrainProgress?: (p: TrainProgress) => void;
  onEmbedProgress?: (stage: 'text' | 'image', done: number, total: number) => void;
}

export interface ScoredFile {
  /** The metadata file's name (as given). */
  name: string;
  rows: number;
  /** The rows' uids, as the file spells them. */
  uids: string[];
  /** Embedding width (the scorer's embed dim). */
  dim: number;
  /** float16 bits, rows × dim, L2-normalised (before rounding); NaN rows where the image is missing. */
  image: Uint16Array;
  text: Uint16Array;
  /** Dot product of the two float16 vectors per row, rounded to float32; NaN where the image is missing. */
  scores: Float32Array;
  /** Rows without an image. */
  missing: number;
}

export interface TrustedSubset {
  rule: string;
  /** The rule as data: the baseline spec or the recipe. */
  definition: BaselineSpec | Recipe;
  /** Uids the rule keeps (duplicates counted, as the subset file would list them). */
  uids: number;
  /** Samples the scorer trained on (the trusted uids found in the shards). */
  samples: number;
}

export interface ScorePoolResult {
  files: ScoredFile[];
  trusted: TrustedSubset;
  /** The scorer's final train state (steps, samples seen, logged losses). */
  state: TrainState;
  /** The scorer's weights (safetensors, open_clip names). */
  weights: Uint8Array;
  model: string;
  dim: number;
  rows: number;
  missing: number;
  /** Shard samples whose uid is in no metadata file (ignored), and samples whose uid was already embedded. */
  unmatched: number;
  repeated: number;
  seconds: { trusted: number; reshard: number; train: number; embed: number; total: number };
}

/** Rows of the metadata that no readable shard sample covers. */
export class MissingSamplesError extends FormatError {
  constructor(file: string, problem: string, readonly missing: number) {
    super(file, problem);
  }
}

/** Runs the trusted rule over the metadata: sorted uid words (duplicates kept). */
async function trustedWords(o: Pick<ScorePoolOptions<BackendTensor>, 'metadata' | 'detector' | 'runner'>, rule: TrustedRule): Promise<Uint32Array> {
  if (rule.kind === 'baseline') {
    checkBaselineSpec(rule.spec);
    return (await runBaseline(o.metadata, rule.spec, { detector: o.detector, runner: o.runner })).words;
  }
  return (await runRecipe(o.metadata, rule.recipe, { detector: o.detector, runner: o.runner, file: rule.file })).words;
}

interface RowIndex {
  /** uid → global row (first occurrence) */
  first: Map<string, number>;
  /** global row → further rows with the same uid (rare: a pool lists each uid once) */
  more: Map<number, number[]>;
  /** global row where each file starts */
  starts: number[];
  texts: string[];
  uids: string[];
}

async function indexRows(files: readonly MetadataFile[]): Promise<RowIndex> {
  const first = new Map<string, number>();
  const more = new Map<number, number[]>();
  const starts: number[] = [];
  const texts: string[] = [];
  const uids: string[] = [];
  for (const file of files) {
    starts.push(texts.length);
    const pq = await ParquetFile.open(file.source, file.name);
    for (const c of ['uid', 'text']) {
      if (!pq.columnNames.includes(c)) throw new FormatError(file.name, `not a CommonPool metadata file: no column "${c}"`);
    }
    const table = await pq.read({ columns: ['uid', 'text'] });
    const uid = table.getChild('uid')!;
    const text = table.getChild('text')!;
    for (let i = 0; i < table.numRows; i++) {
      const u = uid.get(i) as unknown;
      const t = text.get(i) as unknown;
      if (typeof u !== 'string' || !SubsetIndex.parseUid(u)) throw new FormatError(file.name, `row ${i}: uid ${JSON.stringify(u)} is not a 128-bit hex number`);
      if (typeof t !== 'string') throw new FormatError(file.name, `row ${i}: text is ${t === null ? 'null' : 'not a string'}; the scorer embeds every caption`);
      const row = texts.length;
      const key = u.toLowerCase().padStart(32, '0');
      const seen = first.get(key);
      if (seen === undefined) first.set(key, row);
      else more.set(seen, [...(more.get(seen) ?? []), row]);
      texts.push(t);
      uids.push(u);
    }
  }
  starts.push(texts.length);
  return { first, more, starts, texts, uids };
}

/** float16 bits of L2-normalised rows. */
function halfRows(raw: Float32Array, dim: number): Uint16Array {
  return float32ToFloat16(normalizeRows(raw, dim));
}

/** Σ a·b over float16 vectors, in float64, rounded to float32. */
function halfDot(a: Float32Array, b: Float32Array, at: number, dim: number): number {
  let s = 0;
  for (let d = 0; d < dim; d++) s += a[at + d]! * b[at + d]!;
  return Math.fround(s);
}

/** The uid a shard sample's json names (lowercase, 32 digits), or undefined. */
function sampleUid(json: Uint8Array | undefined, decoder: TextDecoder, shard: string, key: string): string | undefined {
  let uid: unknown;
  try {
    uid = json ? (JSON.parse(decoder.decode(json)) as { uid?: unknown }).uid : undefined;
  } catch (err) {
    throw new FormatError(shard, `${key}.json: ${(err as Error).message}`);
  }
  return typeof uid === 'string' && SubsetIndex.parseUid(uid) ? uid.toLowerCase().padStart(32, '0') : undefined;
}

/** Throws MissingSamplesError for rows not in `covered`, naming the first. */
function checkCovered(covered: Uint8Array, index: RowIndex, files: readonly MetadataFile[], what: string): void {
  let missing = 0;
  let first = -1;
  for (let r = 0; r < covered.length; r++) {
    if (covered[r]) continue;
    missing++;
    if (first < 0) first = r;
  }
  if (!missing) return;
  const f = index.starts.findIndex((s, i) => first >= s && first < index.starts[i + 1]!);
  throw new MissingSamplesError(files[f]!.name, `${missing} of ${covered.length} rows have no ${what} in the pool's shards (first: row ${first - index.starts[f]!}, uid ${index.uids[first]}); is a shard missing?`, missing);
}

/**
 * Rows whose uid has a sample with an image in the shards: a pass over the shards' json and image members
 * (not decoded) before training, so a missing shard is reported in seconds rather than after the training.
 */
async function coveredRows(store: ShardStore, index: RowIndex): Promise<Uint8Array> {
  const covered = new Uint8Array(index.texts.length);
  const extensions = new Set<string>(['json', ...TRAIN_IMAGE_EXTENSIONS]);
  const decoder = new TextDecoder();
  for (const shard of await store.listShards()) {
    for await (const sample of readSamples(await store.openShard(shard.name), shard.name, { duplicates: 'new-sample', extensions })) {
      if (!TRAIN_IMAGE_EXTENSIONS.some((e) => sample.files.has(e))) continue;
      const key = sampleUid(sample.files.get('json'), decoder, shard.name, sample.__key__);
      const row = key === undefined ? undefined : index.first.get(key);
      if (row === undefined) continue;
      for (const r of [row, ...(index.more.get(row) ?? [])]) covered[r] = 1;
    }
  }
  return covered;
}

/** Trains the scorer on the trusted subset and embeds and scores every row; see the file comment. */
export async function scorePool<T extends BackendTensor>(o: ScorePoolOptions<T>): Promise<ScorePoolResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const rule = o.trusted ?? DEFAULT_TRUSTED;
  const batchSize = o.batchSize ?? 256;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const seconds = { trusted: 0, reshard: 0, train: 0, embed: 0, total: 0 };
  const cfg = clipConfig(o.scale.model);
  const dim = cfg.embedDim;

  // every row's uid and caption first: a malformed file fails before minutes of training
  const index = await indexRows(o.metadata);
  const rows = index.texts.length;
  if (!rows) throw new FormatError(o.metadata[0]?.name ?? 'metadata', 'the metadata files hold no rows');

  // every row's sample in the shards, before minutes of training
  if (!o.allowMissing) {
    log(`[0/4] check that the pool's shards hold a sample for each of the ${rows} rows`);
    checkCovered(await coveredRows(o.poolShards, index), index, o.metadata, 'sample with an image');
  }

  // 1. trusted subset
  let t = performance.now();
  log(`[1/4] trusted subset: ${describeTrusted(rule)} over ${o.metadata.length} metadata files`);
  const words = await trustedWords(o, rule);
  const trustedUids = uidCount(words);
  if (!trustedUids) throw new FormatError('trusted subset', `${describeTrusted(rule)} kept no sample; the scorer has nothing to train on`);
  seconds.trusted = (performance.now() - t) / 1000;

  // 2. its samples, in memory
  t = performance.now();
  log(`[2/4] read the ${trustedUids} trusted samples from the pool's shards`);
  const reshard = await reshardInMemory(o.poolShards, new SubsetIndex(words));
  for (const e of reshard.errors) log(`reshard: ${e}`);
  if (!reshard.outputCount) throw new FormatError('trusted subset', "the trusted uids matched no sample of the pool's shards");
  seconds.reshard = (performance.now() - t) / 1000;

  // 3. train the scorer
  t = performance.now();
  log(`[3/4] train the scorer (${o.scale.name}: ${cfg.name}) on ${reshard.outputCount} trusted samples`);
  const trained = await trainClip({
    backend: o.backend, scale: o.scale, seed: o.seed, store: reshard.store, codec: o.codec, tokenizer: o.tokenizer,
    logEvery: o.logEvery, onProgress: o.onTrainProgress,
  });
  const model = trained.model;
  const weights = checkpointBytes(await model.stateDict(), cfg, { scale: o.scale.name, step: String(trained.state.step), purpose: 'dcw pool score scorer' });
  seconds.train = (performance.now() - t) / 1000;

  // 4. embed every row: captions in row order, images as the shards hold them
  t = performance.now();
  log(`[4/4] embed and score ${rows} rows`);
  const enc = clipEncoders(model, o.tokenizer, batchSize);
  const text = new Uint16Array(rows * dim);
  for (let at = 0; at < rows; at += batchSize) {
    const chunk = index.texts.slice(at, at + batchSize);
    text.set(halfRows(await enc.encodeTexts(chunk), dim), at * dim);
    o.onEmbedProgress?.('text', at + chunk.length, rows);
  }
  const image = new Uint16Array(rows * dim).fill(0x7e00); // NaN until embedded
  const hasImage = new Uint8Array(rows);
  const size = cfg.vision.imageSize;
  const plane = 3 * size * size;
  let pixels = new Float32Array(batchSize * plane);
  let pending: number[] = [];
  let embedded = 0;
  let unmatched = 0;
  let repeated = 0;
  const flush = async () => {
    if (!pending.length) return;
    const vectors = halfRows(await enc.encodeImages(pixels.subarray(0, pending.length * plane), pending.length), dim);
    for (const [k, row] of pending.entries()) {
      const v = vectors.subarray(k * dim, (k + 1) * dim);
      for (const r of [row, ...(index.more.get(row) ?? [])]) {
        image.set(v, r * dim);
        hasImage[r] = 1;
        embedded++;
      }
    }
    pending = [];
    pixels = new Float32Array(batchSize * plane);
    o.onEmbedProgress?.('image', embedded, rows);
  };
  const decoder = new TextDecoder();
  const queued = new Uint8Array(rows);
  for (const shard of await o.poolShards.listShards()) {
    for await (const sample of readSamples(await o.poolShards.openShard(shard.name), shard.name, { duplicates: 'new-sample' })) {
      const where = `${shard.name}: ${sample.__key__}`;
      const key = sampleUid(sample.files.get('json'), decoder, shard.name, sample.__key__);
      const row = key === undefined ? undefined : index.first.get(key);
      if (row === undefined) {
        // a sample the metadata does not list (or without a uid) has no row to score
        unmatched++;
        continue;
      }
      if (queued[row]) {
        repeated++;
        continue;
      }
      const ext = TRAIN_IMAGE_EXTENSIONS.find((e) => sample.files.has(e));
      let decoded;
      try {
        if (!ext) throw new FormatError(shard.name, `${sample.__key__}: no image (${TRAIN_IMAGE_EXTENSIONS.join(', ')})`);
        decoded = await o.codec.decode(sample.files.get(ext)!, `${where}.${ext}`);
      } catch (err) {
        if (o.allowMissing) continue;
        throw err;
      }
      queued[row] = 1;
      evalTransformInto(decoded, size, pixels, pending.length * plane);
      pending.push(row);
      if (pending.length === batchSize) await flush();
    }
  }
  await flush();

  // a shard changed since the check (or, allowed, rows with no image)
  if (!o.allowMissing) checkCovered(hasImage, index, o.metadata, 'readable sample');
  let missing = 0;
  for (let r = 0; r < rows; r++) if (!hasImage[r]) missing++;

  const imageF = float16ToFloat32(image);
  const textF = float16ToFloat32(text);
  const files: ScoredFile[] = o.metadata.map((m, f) => {
    const from = index.starts[f]!;
    const n = index.starts[f + 1]! - from;
    const scores = new Float32Array(n);
    let fileMissing = 0;
    for (let i = 0; i < n; i++) {
      const r = from + i;
      if (!hasImage[r]) {
        scores[i] = NaN;
        fileMissing++;
      } else scores[i] = halfDot(imageF, textF, r * dim, dim);
    }
    return {
      name: m.name, rows: n, uids: index.uids.slice(from, from + n), dim, scores, missing: fileMissing,
      image: image.slice(from * dim, (from + n) * dim), text: text.slice(from * dim, (from + n) * dim),
    };
  });
  seconds.embed = (performance.now() - t) / 1000;
  seconds.total = (performance.now() - t0) / 1000;
  return {
    files,
    trusted: { rule: describeTrusted(rule), definition: rule.kind === 'baseline' ? rule.spec : rule.recipe, uids: trustedUids, samples: reshard.outputCount },
    state: trained.state, weights, model: cfg.name, dim, rows, missing, unmatched, repeated, seconds,
  };
}

/** The `.npz` of a scored file: b32_img, b32_txt, l14_img, l14_txt, float16 rows × dim (np.savez, uncompressed). */
export function embeddingsNpz(file: ScoredFile): Uint8Array {
  const shape = [file.rows, file.dim];
  const img = { dtype: '<f2' as const, shape, data: file.image };
  const txt = { dtype: '<f2' as const, shape, data: file.text };
  return encodeNpz([['b32_img', img], ['b32_txt', txt], ['l14_img', img], ['l14_txt', txt]]);
}

/** A float32 Arrow column of scores, null where NaN. */
function scoreVector(scores: Float32Array): Vector {
  const n = scores.length;
  const bitmap = new Uint8Array((n + 7) >> 3);
  let nulls = 0;
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(scores[i]!)) nulls++;
    else bitmap[i >> 3]! |= 1 << (i & 7);
  }
  const data = makeData({ type: new Float32(), length: n, nullCount: nulls, nullBitmap: nulls ? bitmap : undefined, data: Float32Array.from(scores, (x) => (Number.isNaN(x) ? 0 : x)) });
  return new Vector([data]);
}

/**
 * The metadata file again with both score columns set to `scores` (float32, as CommonPool's; null where NaN)
 * and every other column, its order and the footer's key/value metadata as they were. A column the reader
 * cannot carry over (a struct or map) is an error rather than a silent loss.
 */
export async function scoredParquet(file: MetadataFile, scores: Float32Array): Promise<Uint8Array> {
  const pq = await ParquetFile.open(file.source, file.name);
  const readable = new Set(pq.schema.fields.map((f) => f.name));
  const lost = pq.columnNames.filter((c) => !readable.has(c));
  if (lost.length) throw new FormatError(file.name, `column ${lost.map((c) => `"${c}"`).join(', ')} has a type the workbench cannot rewrite; not scoring this pool`);
  if (pq.numRows !== scores.length) throw new FormatError(file.name, `${pq.numRows} rows, but ${scores.length} scores`);
  const table = await pq.read();
  const vector = scoreVector(scores);
  // every column where it was, the score columns replaced (appended if the file had none)
  const isScore = (name: string) => (SCORE_COLUMNS as readonly string[]).includes(name);
  const fields = table.schema.fields.map((f) => (isScore(f.name) ? new Field(f.name, new Float32(), true) : f));
  const columns = table.schema.fields.map((f, i) => (isScore(f.name) ? vector : table.getChildAt(i)!));
  for (const name of SCORE_COLUMNS) {
    if (readable.has(name)) continue;
    fields.push(new Field(name, new Float32(), true));
    columns.push(vector);
  }
  // the fields as they were (nullability included), not as Arrow would infer them from the values
  const out = new Table(new Schema(fields, table.schema.metadata), Object.fromEntries(fields.map((f, i) => [f.name, columns[i]!])));
  const kv = (pq.metadata.key_value_metadata ?? []) as { key: string; value?: string }[];
  return writeParquet(out, { keyValueMetadata: Object.fromEntries(kv.map((e) => [e.key, e.value ?? ''])) });
}

/** Per group (a ground-truth label): rows, mean, median and the share of the top `topFraction` by score. */
export interface GroupStats {
  rows: number;
  mean: number;
  median: number;
  /** Share of this group's rows among the top fraction of the pool by score. */
  shareOfTop: number;
  /** Share of this group's rows in the pool. */
  shareOfPool: number;
}

export interface SeparationReport {
  rows: number;
  topFraction: number;
  byLabel: Record<string, GroupStats>;
  /** P(score of a random `positive` row > that of a random `negative` row), ties counting ½ (ROC AUC). */
  auc: { positive: string; negative: string; value: number } | null;
}

/**
 * How a score separates labelled groups (the embedded pool's ground-truth noise kinds): per label its mean,
 * median and share among the top fraction, and the AUC of `positive` against `negative`. Rows with a NaN
 * score are left out.
 */
export function separationReport(scores: ArrayLike<number>, labels: readonly string[], options: { topFraction?: number; positive?: string; negative?: string } = {}): SeparationReport {
  if (scores.length !== labels.length) throw new RangeError(`${scores.length} scores but ${labels.length} labels`);
  const topFraction = options.topFraction ?? 0.3;
  const rows: number[] = [];
  for (let i = 0; i < scores.length; i++) if (!Number.isNaN(scores[i]!)) rows.push(i);
  // descending by score, ties by row: a fixed order, so the top fraction is the same on every run
  rows.sort((a, b) => scores[b]! - scores[a]! || a - b);
  const topN = Math.floor(rows.length * topFraction);
  const groups = new Map<string, number[]>();
  const inTop = new Map<string, number>();
  for (const [rank, r] of rows.entries()) {
    const l = labels[r]!;
    (groups.get(l) ?? groups.set(l, []).get(l)!).push(scores[r]!);
    if (rank < topN) inTop.set(l, (inTop.get(l) ?? 0) + 1);
  }
  const byLabel: Record<string, GroupStats> = {};
  for (const l of [...groups.keys()].sort()) {
    const g = groups.get(l)!; // descending
    const asc = [...g].reverse();
    const mid = asc.length >> 1;
    byLabel[l] = {
      rows: g.length,
      mean: g.reduce((a, b) => a + b, 0) / g.length,
      median: asc.length % 2 ? asc[mid]! : (asc[mid - 1]! + asc[mid]!) / 2,
      shareOfTop: topN ? (inTop.get(l) ?? 0) / topN : 0,
      shareOfPool: g.length / rows.length,
    };
  }
  let auc: SeparationReport['auc'] = null;
  const pos = options.positive !== undefined ? groups.get(options.positive) : undefined;
  const neg = options.negative !== undefined ? groups.get(options.negative) : undefined;
  if (pos?.length && neg?.length) {
    // Mann–Whitney U over the sorted negatives
    const sortedNeg = [...neg].sort((a, b) => a - b);
    let u = 0;
    for (const s of pos) {
      let lo = 0;
      let hi = sortedNeg.length;
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if (sortedNeg[m]! < s) lo = m + 1;
        else hi = m;
      }
      let eq = lo;
      while (eq < sortedNeg.length && sortedNeg[eq] === s) eq++;
      u += lo + (eq - lo) / 2;
    }
    auc = { positive: options.positive!, negative: options.negative!, value: u / (pos.length * neg.length) };
  }
  return { rows: rows.length, topFraction, byLabel, auc };
}
