/**
 * The official filtering baselines that need no model beyond language id (facts §3; semantics of
 * baselines/apply_filter.py, re-derived here, not ported):
 *
 * - no_filter: every uid of every metadata file.
 * - basic_filter: fastText top-1 label == "en" (text with '\n' → ' '), len(text.split()) > 2,
 *   len(text) > 5 (code points), min(w, h) >= 200 and max(w, h) / min(w, h) <= 3.0.
 * - clip_score: clip_{arch}_similarity_score >= threshold, the threshold given or derived from
 *   --fraction over the whole pool (see threshold.ts).
 * - text_based: English and some token's first WordNet synset in the ImageNet-21k ids (text-based.ts).
 * - image_based, image_based_intersect_clip_score: caption filter, then rows whose l14_img falls in a k-means
 *   cluster of ImageNet-1k targets (image-based.ts).
 * - laion2b: B/32 score >= 0.28 and English. The official script asks gcld3; gcld3 has no JavaScript
 *   build, so the given detector (fastText lid.176) stands in, and the result says so.
 *
 * Output: every kept uid (duplicates kept), sorted as numpy sorts u8,u8 records — the bytes np.save writes.
 *
 * Edge rules, as pandas/numpy behave in the official code:
 * - a null score is NaN: `NaN >= t` is false, so the row is dropped;
 * - a null width or height is NaN: every comparison is false, so the row is dropped;
 * - a float32 score column is compared with a Python float threshold in float32 (numpy casts the scalar
 *   to the array's type), so the threshold is rounded to float32 first: with t = 0.29, a score equal to
 *   float32(0.29) = 0.2899999917 is kept;
 * - a null caption makes the official script fail (`None.replace`), so it is an error here too.
 */
import { FormatError } from '../formats/errors.ts';
import { encodeSubsetWords } from '../formats/uid.ts';
import { sortUids } from './sort.ts';
import { detectorInfo, type DetectorInfo, type LanguageDetector } from '../text/langid.ts';
import { checkedUids, isFloat32Column, numberColumn, pushUids, pyLenAt, pyWordCountAt, stringsOf, textAt, UidWordList, type FlatStrings } from './columns.ts';
import { pyLen, pyWordCount } from './pystr.ts';
import { scanMetadata, type MetadataFile } from './scan.ts';
import { runKeepTask, type KeepRunner } from './keep.ts';
import { thresholdForFraction } from './threshold.ts';
import { TextEntityMatcher, textEntityMask, type TextBasedAssets, type TextBasedInfo } from './text-based.ts';
import { runImageBased, type ImageBasedInputs } from './image-based.ts';

export const MODEL_FREE_BASELINES = ['no_filter', 'basic_filter', 'clip_score', 'laion2b'] as const;
export const ALL_BASELINES = ['no_filter', 'basic_filter', 'text_based', 'image_based', 'image_based_intersect_clip_score', 'clip_score', 'laion2b'] as const;
export type BaselineName = (typeof ALL_BASELINES)[number];
export type Arch = 'b32' | 'l14';

export interface BaselineSpec {
  name: BaselineName;
  arch?: Arch;
  threshold?: number;
  fraction?: number;
}

export interface BaselineResult {
  /** Kept uids, sorted (numpy order), duplicates kept. */
  words: Uint32Array;
  /** Rows read over all files. */
  rows: number;
  /** The score threshold applied (clip_score, laion2b), after the fraction rule; NaN if it fell on a null. */
  threshold?: number;
  detector?: DetectorInfo;
  /** text_based: the WordNet and wnid list used. */
  textBased?: TextBasedInfo;
  /** image_based*: how many distinct centroids the targets fall in. */
  targetClusters?: number;
}

export const LAION2B_THRESHOLD = 0.28;

/** An invalid combination of baseline options; the message is what the user sees. */
export class BaselineOptionError extends Error {
  override readonly name = 'BaselineOptionError';
}

/** The official argument checks (baselines.py), and the baselines the workbench cannot run yet. */
export function checkBaselineSpec(spec: BaselineSpec): void {
  const { name } = spec;
  if (!(ALL_BASELINES as readonly string[]).includes(name)) {
    throw new BaselineOptionError(`unknown baseline "${name}" (choices: ${ALL_BASELINES.join(', ')})`);
  }
  if (name === 'clip_score' || name === 'image_based_intersect_clip_score') {
    if (!spec.arch) throw new BaselineOptionError(`${name} needs --arch (b32 or l14)`);
    if ((spec.threshold === undefined) === (spec.fraction === undefined)) {
      throw new BaselineOptionError(`${name} needs exactly one of --threshold and --fraction`);
    }
  }
  if (name === 'laion2b' && (spec.arch !== undefined || spec.threshold !== undefined || spec.fraction !== undefined)) {
    throw new BaselineOptionError('laion2b takes no --arch, --threshold or --fraction (it is B/32 ≥ 0.28 and English)');
  }
  if (spec.threshold !== undefined && !Number.isFinite(spec.threshold)) throw new BaselineOptionError(`--threshold must be a number, got ${spec.threshold}`);
  if (spec.fraction !== undefined && !(spec.fraction >= 0 && spec.fraction < 1)) {
    throw new BaselineOptionError(`--fraction must be in [0, 1), got ${spec.fraction}`);
  }
  if (name === 'image_based' && (spec.arch !== undefined || spec.threshold !== undefined || spec.fraction !== undefined)) {
    throw new BaselineOptionError('--arch, --threshold and --fraction are only used for clip_score baselines (image_based takes none)');
  }
}

export function scoreColumnName(arch: Arch): string {
  return arch === 'b32' ? 'clip_b32_similarity_score' : 'clip_l14_similarity_score';
}

export interface RunOptions {
  /** Needed by basic_filter, text_based and laion2b. */
  detector?: LanguageDetector;
  /** Needed by text_based: WordNet 3.0 and the ImageNet-21k wnid list (server/filters/wordnet.ts loads them). */
  textBased?: TextBasedAssets;
  /** Needed by image_based*: the GPU engine, centroids, targets and the npz embeddings (image-based.ts). */
  imageBased?: ImageBasedInputs;
  /** Called after each row group. */
  onProgress?: (rowsDone: number, file: string) => void;
  /**
   * Runs the model-free passes (no_filter, clip_score, the fraction's score pass); default: in this
   * thread. server/filters/parallel.ts gives one that splits them over worker threads.
   */
  runner?: KeepRunner;
}

/** The threshold of `--fraction` over the whole pool (first pass over the score column only). */
export async function poolThreshold(files: readonly MetadataFile[], column: string, fraction: number, options: RunOptions = {}): Promise<number> {
  const run: KeepRunner = options.runner ?? ((task, o) => runKeepTask(files, task, o));
  const { scores } = await run({ kind: 'scores', column }, { onProgress: options.onProgress });
  return thresholdForFraction(scores!, fraction);
}

/** Runs a baseline over the metadata files and returns the sorted kept uids. */
export async function runBaseline(files: readonly MetadataFile[], spec: BaselineSpec, options: RunOptions = {}): Promise<BaselineResult> {
  checkBaselineSpec(spec);
  const kept = new UidWordList();
  let rows = 0;
  const progress = (n: number, file: string) => {
    rows += n;
    options.onProgress?.(rows, file);
  };
  const needDetector = spec.name === 'basic_filter' || spec.name === 'laion2b' || spec.name === 'text_based';
  if (needDetector && !options.detector) throw new BaselineOptionError(`${spec.name} needs a language detector`);
  if (spec.name === 'text_based' && !options.textBased) throw new BaselineOptionError('text_based needs WordNet 3.0 and the ImageNet-21k WordNet id list');
  const detector = options.detector!;
  let threshold: number | undefined;

  const run: KeepRunner = options.runner ?? ((task, o) => runKeepTask(files, task, o));
  if (spec.name === 'image_based' || spec.name === 'image_based_intersect_clip_score') {
    if (!options.detector) throw new BaselineOptionError(`${spec.name} needs a language detector`);
    if (!options.imageBased) throw new BaselineOptionError(`${spec.name} needs the pool centroids and the ImageNet-1k CLIP L/14 target features`);
    let clip: { column: string; threshold: number } | undefined;
    if (spec.name === 'image_based_intersect_clip_score') {
      const column = scoreColumnName(spec.arch!);
      clip = { column, threshold: spec.threshold ?? await poolThreshold(files, column, spec.fraction!, { runner: options.runner }) };
    }
    const r = await runImageBased(files, options.imageBased, options.detector, clip, options.onProgress);
    const result: BaselineResult = { words: sortUids(r.words), rows: r.rows, detector: detectorInfo(options.detector), targetClusters: r.targetClusters };
    if (clip) result.threshold = clip.threshold;
    return result;
  }
  let words: Uint32Array | undefined;
  if (spec.name === 'no_filter') {
    const r = await run({ kind: 'all' }, { onProgress: options.onProgress });
    words = r.words;
    rows = r.rows;
  } else if (spec.name === 'basic_filter') {
    for await (const chunk of scanMetadata(files, ['uid', 'text', 'original_width', 'original_height'])) {
      const uids = checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow);
      const texts = stringsOf(chunk.column('text'), chunk.file, 'text');
      const w = numberColumn(chunk.column('original_width'), chunk.file, 'original_width');
      const h = numberColumn(chunk.column('original_height'), chunk.file, 'original_height');
      const mask = basicRulesMask(texts, w, h, chunk.file, chunk.firstRow);
      await andEnglish(mask, texts, detector);
      pushUids(kept, uids, mask);
      progress(texts.length, chunk.file);
    }
    threshold = undefined;
  } else if (spec.name === 'clip_score') {
    const column = scoreColumnName(spec.arch!);
    threshold = spec.threshold ?? await poolThreshold(files, column, spec.fraction!, { runner: options.runner });
    const r = await run({ kind: 'atLeast', column, threshold }, { onProgress: options.onProgress });
    words = r.words;
    rows = r.rows;
  } else if (spec.name === 'text_based') {
    const matcher = new TextEntityMatcher(options.textBased!.wordnet, options.textBased!.wnids);
    for await (const chunk of scanMetadata(files, ['uid', 'text'])) {
      const texts = stringsOf(chunk.column('text'), chunk.file, 'text');
      // the WordNet test first, then language id only where it passed: `and` of pure tests, the same mask
      const mask = textEntityMask(texts, matcher, chunk.file, chunk.firstRow);
      await andEnglish(mask, texts, detector);
      pushUids(kept, checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow), mask);
      progress(texts.length, chunk.file);
    }
  } else {
    // laion2b: B/32 >= 0.28 and English
    const column = scoreColumnName('b32');
    threshold = LAION2B_THRESHOLD;
    for await (const chunk of scanMetadata(files, ['uid', 'text', column])) {
      const scoreVector = chunk.column(column);
      const scores = numberColumn(scoreVector, chunk.file, column);
      // numpy compares a float32 column with a Python float in float32
      const cut = isFloat32Column(scoreVector) ? Math.fround(threshold) : threshold;
      const mask = new Uint8Array(scores.length);
      for (let i = 0; i < scores.length; i++) mask[i] = scores[i]! >= cut ? 1 : 0;
      const texts = stringsOf(chunk.column('text'), chunk.file, 'text');
      if (texts.valid) {
        const row = texts.valid.indexOf(0);
        if (row >= 0) throw new FormatError(chunk.file, `row ${chunk.firstRow + row}: text is null (the official filter fails on it too)`);
      }
      await andEnglish(mask, texts, detector);
      pushUids(kept, checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow), mask);
      progress(scores.length, chunk.file);
    }
  }
  const result: BaselineResult = { words: sortUids(words ?? kept.finish()), rows };
  if (threshold !== undefined) result.threshold = threshold;
  if (needDetector) result.detector = detectorInfo(detector, spec.name === 'laion2b' ? 'gcld3 3.0.13 NNetLanguageIdentifier(0, 1000)' : undefined);
  if (spec.name === 'text_based') result.textBased = options.textBased!.info;
  return result;
}

/**
 * basic_filter's caption and image rules (everything but the language). The image rule is checked first
 * and the caption measured only where it passes: `and` of pure tests, so the same mask.
 */
export function basicRulesMask(texts: FlatStrings | readonly (string | null)[], width: Float64Array, height: Float64Array, file = 'metadata', firstRow = 0): Uint8Array {
  const mask = new Uint8Array(texts.length);
  const flat = !Array.isArray(texts) ? texts as FlatStrings : undefined;
  const list = texts as readonly (string | null)[];
  const memo = flat?.entry ? new Int8Array(flat.entry.count).fill(-1) : undefined;
  for (let i = 0; i < texts.length; i++) {
    const isNull = flat ? flat.valid !== undefined && !flat.valid[i] : list[i] === null || list[i] === undefined;
    if (isNull) throw new FormatError(file, `row ${firstRow + i}: text is null (the official basic_filter fails on it too)`);
    const lo = Math.min(width[i]!, height[i]!);
    const hi = Math.max(width[i]!, height[i]!);
    if (!(lo >= 200 && hi / lo <= 3.0)) continue;
    if (!flat) {
      mask[i] = pyWordCount(list[i]!) > 2 && pyLen(list[i]!) > 5 ? 1 : 0;
      continue;
    }
    // the caption rule once per dictionary entry (equal bytes, equal answer)
    const e = flat.entry ? flat.entry.of[i]! : -1;
    let ok = e >= 0 ? memo![e]! : -1;
    if (ok < 0) {
      ok = pyWordCountAt(flat, i) > 2 && pyLenAt(flat, i) > 5 ? 1 : 0;
      if (e >= 0) memo![e] = ok;
    }
    mask[i] = ok;
  }
  return mask;
}

/** mask &= (language == "en"), asking the detector only about rows still in the mask (same result, fewer calls). */
export async function andEnglish(mask: Uint8Array, texts: FlatStrings | readonly (string | null)[], detector: LanguageDetector): Promise<void> {
  const rows: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) rows.push(i);
  if (!rows.length) return;
  const at = Array.isArray(texts) ? (i: number) => (texts as readonly (string | null)[])[i] as string : (i: number) => textAt(texts as FlatStrings, i) as string;
  const labels = await detector.detect(rows.map(at));
  for (let k = 0; k < rows.length; k++) if (labels[k] !== 'en') mask[rows[k]!] = 0;
}

/** The subset file bytes for a result (np.save of the sorted u8,u8 records). */
export function subsetBytes(result: BaselineResult): Uint8Array {
  return encodeSubsetWords(result.words, { sorted: true });
}
