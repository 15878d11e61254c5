/**
 * The official filtering baselines that need no model beyond language id (facts §3; semantics of
 * baselines/apply_filter.py, re-derived here, not ported):
 *
 * - no_filter: every uid of every metadata file.
 * - basic_filter: fastText top-1 label == "en" (text with '\n' → ' '), len(text.split()) > 2,
 *   len(text) > 5 (code points), min(w, h) >= 200 and max(w, h) / min(w, h) <= 3.0.
 * - clip_score: clip_{arch}_similarity_score >= threshold, the threshold given or derived from
 *   --fraction over the whole pool (see threshold.ts).
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
import { encodeSubsetWords, sortUidWords, uidCount } from '../formats/uid.ts';
import { detectorInfo, type DetectorInfo, type LanguageDetector } from '../text/langid.ts';
import { isFloat32Column, numberColumn, stringColumn, uidWordsColumn, UidWordList } from './columns.ts';
import { pyLen, pyWordCount } from './pystr.ts';
import { scanMetadata, type MetadataFile } from './scan.ts';
import { Float32List, thresholdForFraction } from './threshold.ts';

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
  if (name === 'text_based') {
    throw new BaselineOptionError('text_based needs NLTK WordNet synsets and the ImageNet-21k wordnet ids, which the workbench does not ship yet');
  }
  if (name === 'image_based' || name === 'image_based_intersect_clip_score') {
    throw new BaselineOptionError(`${name} needs the official k-means centroids and ImageNet-1k CLIP L/14 features (not shipped yet)`);
  }
}

export function scoreColumnName(arch: Arch): string {
  return arch === 'b32' ? 'clip_b32_similarity_score' : 'clip_l14_similarity_score';
}

export interface RunOptions {
  /** Needed by basic_filter and laion2b. */
  detector?: LanguageDetector;
  /** Called after each row group. */
  onProgress?: (rowsDone: number, file: string) => void;
}

/** The threshold of `--fraction` over the whole pool (first pass over the score column only). */
export async function poolThreshold(files: readonly MetadataFile[], column: string, fraction: number, options: RunOptions = {}): Promise<number> {
  const scores = new Float32List();
  let rows = 0;
  for await (const chunk of scanMetadata(files, [column])) {
    const values = numberColumn(chunk.table.getChild(column)!, chunk.file, column);
    scores.append(values); // float32 columns are exact in float32; float64 ones are rounded (documented)
    rows += values.length;
    options.onProgress?.(rows, chunk.file);
  }
  return thresholdForFraction(scores.finish(), fraction);
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
  const needDetector = spec.name === 'basic_filter' || spec.name === 'laion2b';
  if (needDetector && !options.detector) throw new BaselineOptionError(`${spec.name} needs a language detector`);
  const detector = options.detector!;
  let threshold: number | undefined;

  if (spec.name === 'no_filter') {
    for await (const chunk of scanMetadata(files, ['uid'])) {
      const words = uidWordsColumn(chunk.table.getChild('uid')!, chunk.file, chunk.firstRow);
      kept.append(words);
      progress(uidCount(words), chunk.file);
    }
  } else if (spec.name === 'basic_filter') {
    for await (const chunk of scanMetadata(files, ['uid', 'text', 'original_width', 'original_height'])) {
      const t = chunk.table;
      const words = uidWordsColumn(t.getChild('uid')!, chunk.file, chunk.firstRow);
      const texts = stringColumn(t.getChild('text')!, chunk.file, 'text');
      const w = numberColumn(t.getChild('original_width')!, chunk.file, 'original_width');
      const h = numberColumn(t.getChild('original_height')!, chunk.file, 'original_height');
      const mask = basicRulesMask(texts, w, h, chunk.file, chunk.firstRow);
      await andEnglish(mask, texts, detector);
      kept.pushMasked(words, mask);
      progress(texts.length, chunk.file);
    }
    threshold = undefined;
  } else {
    // clip_score and laion2b
    const arch: Arch = spec.name === 'laion2b' ? 'b32' : spec.arch!;
    const column = scoreColumnName(arch);
    threshold = spec.name === 'laion2b' ? LAION2B_THRESHOLD : spec.threshold ?? await poolThreshold(files, column, spec.fraction!);
    const columns = spec.name === 'laion2b' ? ['uid', 'text', column] : ['uid', column];
    for await (const chunk of scanMetadata(files, columns)) {
      const t = chunk.table;
      const scoreVector = t.getChild(column)!;
      const scores = numberColumn(scoreVector, chunk.file, column);
      // numpy compares a float32 column with a Python float in float32
      const cut = isFloat32Column(scoreVector) ? Math.fround(threshold) : threshold;
      const mask = new Uint8Array(scores.length);
      for (let i = 0; i < scores.length; i++) mask[i] = scores[i]! >= cut ? 1 : 0;
      if (spec.name === 'laion2b') {
        const texts = stringColumn(t.getChild('text')!, chunk.file, 'text');
        texts.forEach((x, i) => {
          if (x === null) throw new FormatError(chunk.file, `row ${chunk.firstRow + i}: text is null (the official filter fails on it too)`);
        });
        await andEnglish(mask, texts, detector);
      }
      kept.pushMasked(uidWordsColumn(t.getChild('uid')!, chunk.file, chunk.firstRow), mask);
      progress(scores.length, chunk.file);
    }
  }
  const result: BaselineResult = { words: sortUidWords(kept.finish()), rows };
  if (threshold !== undefined) result.threshold = threshold;
  if (needDetector) result.detector = detectorInfo(detector, spec.name === 'laion2b' ? 'gcld3 3.0.13 NNetLanguageIdentifier(0, 1000)' : undefined);
  return result;
}

/** basic_filter's caption and image rules (everything but the language). */
export function basicRulesMask(texts: readonly (string | null)[], width: Float64Array, height: Float64Array, file = 'metadata', firstRow = 0): Uint8Array {
  const mask = new Uint8Array(texts.length);
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i];
    if (text === null || text === undefined) throw new FormatError(file, `row ${firstRow + i}: text is null (the official basic_filter fails on it too)`);
    const lo = Math.min(width[i]!, height[i]!);
    const hi = Math.max(width[i]!, height[i]!);
    mask[i] = pyWordCount(text) > 2 && pyLen(text) > 5 && lo >= 200 && hi / lo <= 3.0 ? 1 : 0;
  }
  return mask;
}

/** mask &= (language == "en"), asking the detector only about rows still in the mask (same result, fewer calls). */
export async function andEnglish(mask: Uint8Array, texts: readonly (string | null)[], detector: LanguageDetector): Promise<void> {
  const rows: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) rows.push(i);
  if (!rows.length) return;
  const labels = await detector.detect(rows.map((i) => texts[i] as string));
  for (let k = 0; k < rows.length; k++) if (labels[k] !== 'en') mask[rows[k]!] = 0;
}

/** The subset file bytes for a result (np.save of the sorted u8,u8 records). */
export function subsetBytes(result: BaselineResult): Uint8Array {
  return encodeSubsetWords(result.words, { sorted: true });
}
