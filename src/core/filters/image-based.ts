/**
 * The image_based baselines (facts §3; baselines/apply_filter.py `load_uids_with_image_filter`):
 *
 * 1. Target clusters S: every target embedding (OpenAI CLIP L/14 image features of ImageNet-1k train,
 *    `in1k_clip_vit_l14_{0..4}.pt` → "image_features", concatenated) goes to the centroid of largest inner
 *    product (`{scale}_centroids_l14.pt`, 100,000 centroids); S is the set of those centroids.
 * 2. Per metadata parquet, with its npz (same path up to ".parquet", then ".npz"; rows aligned):
 *    - image_based_intersect_clip_score first keeps the rows with clip_{arch} score >= the threshold (given, or
 *      of --fraction over the whole pool: one global threshold), and the same npz rows;
 *    - caption_filter: fastText lid.176 says "en" (text with '\n' → ' '), len(fasttext.tokenize(text)) > 1
 *      and len(text) > 5 (code points);
 *    - the remaining rows' `l14_img` go to the centroid of largest inner product; rows whose centroid is in S
 *      are kept.
 * The subset is every kept uid, duplicates kept, sorted (the caller sorts).
 *
 * Assignment runs on the WebGPU engine (kmeans.ts); centroids and targets come from the official .pt files
 * (torch-pt.ts) or .npy files of the same arrays.
 */
import { FormatError } from '../formats/errors.ts';
import { readNpy } from '../formats/npy.ts';
import { ptArrayFloat32, readTorchPt, type PtArray, type PtValue } from '../formats/torch-pt.ts';
import type { Engine } from '../gpu/engine.ts';
import type { LanguageDetector } from '../text/langid.ts';
import { checkedUids, isFloat32Column, numberColumn, pushUids, pyLenAt, stringsOf, textAt, UidWordList, type FlatStrings } from './columns.ts';
import { assignNearest, uniqueLabels, type Embeddings } from './kmeans.ts';
import { andEnglish } from './baselines.ts';
import { scanMetadata, type MetadataFile } from './scan.ts';

/** DataComp's release of the baseline assets (centroids, targets, the wnid list). */
export const ASSETS_RELEASE = 'https://github.com/sagadre/datacomp_baseline_assets/releases/download/v0.1.0-alpha/';

export const IMAGE_BASED_SCALES = ['small', 'medium', 'large', 'xlarge'] as const;
export type ImageBasedScale = (typeof IMAGE_BASED_SCALES)[number];

/** The official asset file names (the release's names; baselines/utils.py caches them as `{name}.pt`). */
export function centroidAssetNames(scale: ImageBasedScale): string[] {
  return [`${scale}_centroids_l14.pt`, `${scale}_centroids.pt`];
}
export const TARGET_ASSET_NAMES: readonly (readonly string[])[] = [0, 1, 2, 3, 4].map((i) => [`in1k_clip_vit_l14_${i}.pt`]);

/** sha256 of each official asset (baselines/utils.py), for checking a user's copy. */
export const ASSET_SHA256: Readonly<Record<string, string>> = {
  'in1k_clip_vit_l14_0.pt': '304990fd492f40ba90072b80af78d6e8edcab9d042476ef513e03441cf53743b',
  'in1k_clip_vit_l14_1.pt': '72f008e6aa3bfb54174fa322963215337f843fc90fd642a9dccc815dd9e7ee76',
  'in1k_clip_vit_l14_2.pt': '83c3cc6503b8a50a22cac7023ca6cd61b130ab9725db2a7519f1bec5cabf5493',
  'in1k_clip_vit_l14_3.pt': '83faa289f847799ddcd438e5b74df1cb5973c345674896d10ba31ea48bc63804',
  'in1k_clip_vit_l14_4.pt': '067a45f4a140a93371876510a2fd9198a89ac1d194ae4063a51b45a6da69cadf',
  'small_centroids_l14.pt': '23c66a05e49ad77283c1e2b33355c7eb088ac332a944c97ff85d5dfd48a5b251',
  'medium_centroids_l14.pt': '028b1721b1d0f139c565b6b0ac99f8a1756f4bae89c36b0ec6d1c6ea9b6f112d',
  'large_centroids_l14.pt': '04eeab1069d3540c246cf7ce69323147351a474017fc472e4c50a018ca32240b',
  'xlarge_centroids_l14.pt': '3f62e5f8ae3a715ce84e422846fcfce1536d184455ea234790c4a6465c4c6726',
};

export { npzPathFor } from '../pool/embeddings.ts';
import { npzPathFor } from '../pool/embeddings.ts';

// ---------------------------------------------------------------- feature files (.pt or .npy)

/**
 * A 2-D float matrix from a `.npy` file or a `torch.save` file: the saved tensor/array itself, or the entry
 * `key` of a saved dict (default "image_features" when the file holds a dict).
 */
export function readFeatureMatrix(bytes: Uint8Array, file: string, key?: string): Embeddings {
  let array: PtArray | { dtype: string; shape: number[]; data: unknown };
  if (bytes[0] === 0x93 && bytes[1] === 0x4e) {
    array = readNpy(bytes, file);
  } else {
    const value = readTorchPt(bytes, file);
    array = pickArray(value, file, key);
  }
  if (array.shape.length !== 2) throw new FormatError(file, `holds an array of shape (${array.shape.join(', ')}), not a 2-D matrix`);
  const [rows, dim] = array.shape as [number, number];
  if (dim < 1) throw new FormatError(file, 'holds a matrix with no columns');
  let data: Float32Array | Uint16Array;
  if (array.dtype === '<f2') data = array.data as Uint16Array;
  else if (array.dtype === '<f4') data = array.data as Float32Array;
  else if (array.dtype === '<f8' || array.dtype === 'bf16') data = ptArrayFloat32({ ...(array as PtArray), kind: 'array' });
  else throw new FormatError(file, `holds ${array.dtype} values, not float16/32/64`);
  return { rows, dim, data };
}

function pickArray(value: PtValue, file: string, key: string | undefined): PtArray {
  if (isArray(value)) {
    if (key !== undefined) throw new FormatError(file, `holds a single array, not a dict with "${key}"`);
    return value;
  }
  if (value instanceof Map) {
    const want = key ?? 'image_features';
    const got = value.get(want);
    if (got === undefined) throw new FormatError(file, `has no entry "${want}" (it has: ${[...value.keys()].map(String).join(', ').slice(0, 200) || 'nothing'})`);
    if (!isArray(got)) throw new FormatError(file, `entry "${want}" is not a tensor or array`);
    return got;
  }
  throw new FormatError(file, 'holds neither a tensor/array nor a dict of them');
}

function isArray(v: PtValue): v is PtArray {
  return typeof v === 'object' && v !== null && !(v instanceof Map) && !Array.isArray(v) && (v as PtArray).kind === 'array';
}

/** Rows of several matrices of one width, one after another (torch.cat(dim=0)), as float32. */
export function concatRows(parts: readonly Embeddings[], what: string): Embeddings {
  if (!parts.length) throw new RangeError(`${what}: nothing to concatenate`);
  const dim = parts[0]!.dim;
  let rows = 0;
  for (const p of parts) {
    if (p.dim !== dim) throw new RangeError(`${what}: widths differ (${dim} and ${p.dim})`);
    rows += p.rows;
  }
  if (parts.length === 1) return parts[0]!;
  const allHalf = parts.every((p) => p.data instanceof Uint16Array);
  const data = allHalf ? new Uint16Array(rows * dim) : new Float32Array(rows * dim);
  let at = 0;
  for (const p of parts) {
    if (allHalf || p.data instanceof Float32Array) data.set(p.data, at);
    else data.set(ptArrayFloat32({ kind: 'array', dtype: '<f2', shape: [p.rows, p.dim], data: p.data }), at);
    at += p.data.length;
  }
  return { rows, dim, data };
}

// ---------------------------------------------------------------- caption_filter

const FASTTEXT_SPACE = new Set([0x20, 0x0a, 0x0d, 0x09, 0x0b, 0x0c, 0x00]);

/**
 * len(fasttext.tokenize(text)): fastText's Dictionary::readWord splits the UTF-8 bytes at ' ', \n, \r, \t,
 * \v, \f and \0 only, and every '\n' also yields an end-of-sentence token "</s>". So: words + newlines.
 */
export function fastTextTokenCount(text: string): number {
  let count = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (FASTTEXT_SPACE.has(c)) {
      if (inWord) count++;
      inWord = false;
      if (c === 0x0a) count++;
    } else {
      inWord = true;
    }
  }
  return inWord ? count + 1 : count;
}

/** caption_filter's length rules (tokens > 1, code points > 5) on the rows in `mask` (cleared where they fail). */
export function captionRulesMask(texts: FlatStrings, mask: Uint8Array, file: string, firstRow: number): void {
  for (let i = 0; i < texts.length; i++) {
    if (!mask[i]) continue;
    const t = textAt(texts, i);
    if (t === null) throw new FormatError(file, `row ${firstRow + i}: text is null (the official caption_filter fails on it too)`);
    if (!(fastTextTokenCount(t) > 1 && pyLenAt(texts, i) > 5)) mask[i] = 0;
  }
}

// ---------------------------------------------------------------- the baseline

export interface ImageBasedInputs {
  engine: Engine;
  /** Pool centroids [K × 768] (`{scale}_centroids_l14.pt`). */
  centroids: Embeddings;
  /** Target embeddings (the five IN-1k feature files, concatenated). */
  targets: Embeddings;
  /** The `l14_img` rows of the npz paired with a metadata file (all of its rows, aligned with the parquet). */
  embeddings(file: MetadataFile): Promise<Embeddings>;
  /** Rows per GPU batch (the official --batch_size, default 1024). */
  batchSize?: number;
}

export interface ImageBasedRun {
  words: Uint32Array;
  rows: number;
  /** |S|: distinct centroids the targets fall in. */
  targetClusters: number;
}

/**
 * Runs image_based over the metadata files; `clip` (for the intersect variant) restricts each file to
 * rows whose `column` score is >= threshold first. The words come back unsorted.
 */
export async function runImageBased(files: readonly MetadataFile[], inputs: ImageBasedInputs, detector: LanguageDetector,
  clip?: { column: string; threshold: number }, onProgress?: (rows: number, file: string) => void): Promise<ImageBasedRun> {
  const { engine, centroids, targets } = inputs;
  if (targets.dim !== centroids.dim) throw new RangeError(`the targets have ${targets.dim} dimensions, the centroids ${centroids.dim}`);
  const targetLabels = await assignNearest(engine, centroids, targets, { batchRows: inputs.batchSize });
  const inS = new Uint8Array(centroids.rows);
  const S = uniqueLabels(targetLabels);
  for (const c of S) inS[c] = 1;

  const kept = new UidWordList();
  let rows = 0;
  const columns = clip ? ['uid', 'text', clip.column] : ['uid', 'text'];
  let current: { file: MetadataFile; candidates: UidWordList; rowIndex: number[]; rows: number } | undefined;
  const finishFile = async () => {
    if (!current) return;
    const { file, candidates, rowIndex } = current;
    const x = await inputs.embeddings(file);
    const npz = npzPathFor(file.name);
    if (x.rows !== current.rows) throw new FormatError(npz, `has ${x.rows} rows of l14_img, its parquet ${current.rows}`);
    if (x.dim !== centroids.dim) throw new FormatError(npz, `l14_img has ${x.dim} dimensions, the centroids ${centroids.dim}`);
    const labels = await assignNearest(engine, centroids, x, { rows: Int32Array.from(rowIndex), batchRows: inputs.batchSize });
    const keep = new Uint8Array(labels.length);
    for (let i = 0; i < labels.length; i++) keep[i] = inS[labels[i]!]!;
    kept.pushMasked(candidates.finish(), keep);
    current = undefined;
  };
  for await (const chunk of scanMetadata(files, columns)) {
    const file = files[chunk.fileIndex]!;
    if (current?.file !== file) {
      await finishFile();
      current = { file, candidates: new UidWordList(), rowIndex: [], rows: 0 };
    }
    const uids = checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow);
    const texts = stringsOf(chunk.column('text'), chunk.file, 'text');
    const mask = new Uint8Array(chunk.rows).fill(1);
    if (clip) {
      const vector = chunk.column(clip.column);
      const scores = numberColumn(vector, chunk.file, clip.column);
      // numpy compares a float32 column with a Python float in float32
      const cut = isFloat32Column(vector) ? Math.fround(clip.threshold) : clip.threshold;
      for (let i = 0; i < scores.length; i++) mask[i] = scores[i]! >= cut ? 1 : 0;
    }
    captionRulesMask(texts, mask, chunk.file, chunk.firstRow);
    await andEnglish(mask, texts, detector);
    pushUids(current.candidates, uids, mask);
    for (let i = 0; i < mask.length; i++) if (mask[i]) current.rowIndex.push(chunk.firstRow + i);
    current.rows = Math.max(current.rows, chunk.firstRow + chunk.rows);
    rows += chunk.rows;
    onProgress?.(rows, chunk.file);
  }
  await finishFile();
  return { words: kept.finish(), rows, targetClusters: S.length };
}

// ---------------------------------------------------------------- the clustering input (image_based_clustering.py)

export interface TrainingSetOptions {
  /** caption_filter first (the official default; --disable_caption_filtering turns it off). */
  detector?: LanguageDetector;
  /** `--sample_ratio`: > 0 draws int(n·ratio) rows of each file with replacement (as np.random.choice). */
  sampleRatio?: number;
  /** Draws for sampleRatio; the official workers draw from unseeded processes, so no seed reproduces theirs. */
  random?: { randInt(max: number): number };
  onProgress?: (rows: number, file: string) => void;
}

/**
 * The points image_based_clustering.py clusters: per metadata file, its npz embeddings (`embeddings(file)`),
 * after caption_filter and the optional per-file sample, stacked in file order.
 */
export async function clusteringInput(files: readonly MetadataFile[], embeddings: (file: MetadataFile) => Promise<Embeddings>,
  options: TrainingSetOptions = {}): Promise<Embeddings> {
  const parts: Embeddings[] = [];
  let rows = 0;
  for (const file of files) {
    const x = await embeddings(file);
    let keep: number[] = [];
    if (options.detector) {
      let fileRows = 0;
      for await (const chunk of scanMetadata([file], ['text'])) {
        const texts = stringsOf(chunk.column('text'), chunk.file, 'text');
        const mask = new Uint8Array(chunk.rows).fill(1);
        captionRulesMask(texts, mask, chunk.file, chunk.firstRow);
        await andEnglish(mask, texts, options.detector);
        for (let i = 0; i < mask.length; i++) if (mask[i]) keep.push(chunk.firstRow + i);
        fileRows = chunk.firstRow + chunk.rows;
      }
      if (x.rows !== fileRows) throw new FormatError(npzPathFor(file.name), `has ${x.rows} embedding rows, its parquet ${fileRows}`);
    } else {
      keep = Array.from({ length: x.rows }, (_, i) => i);
    }
    if (options.sampleRatio !== undefined && options.sampleRatio > 0) {
      const n = keep.length;
      const m = Math.floor(n * options.sampleRatio);
      const rng = options.random;
      if (!rng) throw new RangeError('sampleRatio needs a random source');
      keep = Array.from({ length: n ? m : 0 }, () => keep[rng.randInt(n)]!);
    }
    if (keep.length) parts.push(pickRows(x, keep));
    rows += x.rows;
    options.onProgress?.(rows, file.name);
  }
  if (!parts.length) throw new RangeError('no embeddings are left to cluster (after caption filtering)');
  return concatRows(parts, 'embeddings');
}

function pickRows(x: Embeddings, rows: readonly number[]): Embeddings {
  const d = x.dim;
  const data = x.data instanceof Uint16Array ? new Uint16Array(rows.length * d) : new Float32Array(rows.length * d);
  rows.forEach((r, i) => data.set(x.data.subarray(r * d, r * d + d), i * d));
  return { rows: rows.length, dim: d, data };
}
