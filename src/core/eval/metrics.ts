/**
 * Evaluation metrics with the exact arithmetic of the libraries DataComp calls, so that a results file
 * written here matches evaluate.py's to the last digit wherever the inputs (predictions, ranks) agree:
 * - means of float64 arrays use numpy's pairwise summation (`np.mean`, `np.sum`): `npSum`;
 * - top-k accuracy as clip_benchmark's `accuracy`: correct count / n, in float64;
 * - mean_per_class_recall as `sklearn.metrics.balanced_accuracy_score` (classes that occur only among the
 *   predictions have no recall and are left out, as sklearn does after its warning);
 * - macro F1 / macro recall as sklearn with `labels=unique(y_true)` (WILDS' F1 and Recall), then rounded to
 *   float32 as WILDS does (`torch.tensor(score).item()`);
 * - WILDS group metrics (acc_avg, per-group accuracy and count, worst group) in float32, as torch computes them;
 * - retrieval recall@k as clip_benchmark's `zeroshot_retrieval` (a query counts as a hit when any of its
 *   positives is in its top k; the mean is a float32 tensor mean, `.item()`).
 * Ties in a ranking are broken by the lower index (torch's argmax takes the first maximum; topk is unspecified).
 */

const PW_BLOCKSIZE = 128;

/** numpy's pairwise summation of a float64 array (numpy/core/src/umath/loops_utils.h `pairwise_sum`). */
export function npSum(a: ArrayLike<number>, start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i]!;
    return res;
  }
  if (n <= PW_BLOCKSIZE) {
    const r = [a[start]!, a[start + 1]!, a[start + 2]!, a[start + 3]!, a[start + 4]!, a[start + 5]!, a[start + 6]!, a[start + 7]!];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j]! += a[start + i + j]!;
    }
    let res = (r[0]! + r[1]! + (r[2]! + r[3]!)) + (r[4]! + r[5]! + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[start + i]!;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return npSum(a, start, n2) + npSum(a, start + n2, n - n2);
}

/** `np.mean` of a float64 array (NaN for an empty one, as numpy returns after its warning). */
export function npMean(a: ArrayLike<number>): number {
  return a.length ? npSum(a) / a.length : NaN;
}

/**
 * The k best columns of each row of a row-major `rows × cols` score matrix, best first, ties to the lower
 * column: an Int32Array of rows × k (k is clipped to cols).
 */
export function topkRows(scores: ArrayLike<number>, rows: number, cols: number, k: number): Int32Array {
  const kk = Math.min(k, cols);
  const out = new Int32Array(rows * kk);
  const bestV = new Float64Array(kk);
  const bestI = new Int32Array(kk);
  for (let r = 0; r < rows; r++) {
    let filled = 0;
    const base = r * cols;
    for (let c = 0; c < cols; c++) {
      const v = scores[base + c]!;
      // insert if better than the current worst (strictly: an equal later column ranks lower)
      if (filled < kk || v > bestV[filled - 1]!) {
        let p = filled < kk ? filled++ : kk - 1;
        while (p > 0 && v > bestV[p - 1]!) {
          bestV[p] = bestV[p - 1]!;
          bestI[p] = bestI[p - 1]!;
          p--;
        }
        bestV[p] = v;
        bestI[p] = c;
      }
    }
    out.set(bestI.subarray(0, kk), r * kk);
  }
  return out;
}

/** clip_benchmark `accuracy(logits, target, topk)`: for each k, (samples whose target is among the first k predictions) / n. */
export function topkAccuracy(topk: Int32Array, k: number, targets: ArrayLike<number>, ks: readonly number[]): number[] {
  const n = targets.length;
  return ks.map((kk) => {
    if (kk > k) throw new RangeError(`top-${kk} accuracy needs the top ${kk} predictions, have ${k}`);
    let correct = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < kk; j++) {
        if (topk[i * k + j] === targets[i]) {
          correct++;
          break;
        }
      }
    }
    return correct / n;
  });
}

/** Sorted distinct values. */
function uniqueSorted(values: Iterable<number>): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}

/** `sklearn.metrics.balanced_accuracy_score(y_true, y_pred)`: the mean recall over the classes that occur in y_true. */
export function balancedAccuracy(yTrue: ArrayLike<number>, yPred: ArrayLike<number>): number {
  const n = checkSameLength(yTrue, yPred);
  const support = new Map<number, number>();
  const hits = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const t = yTrue[i]!;
    support.set(t, (support.get(t) ?? 0) + 1);
    if (yPred[i] === t) hits.set(t, (hits.get(t) ?? 0) + 1);
  }
  // sklearn orders the confusion matrix by np.unique(y_true ∪ y_pred); rows of predicted-only labels are NaN and dropped
  const perClass = uniqueSorted(support.keys()).map((label) => (hits.get(label) ?? 0) / support.get(label)!);
  return npMean(perClass);
}

/** Per-label true positives, predicted and true counts over `labels` (sklearn's multilabel_confusion_matrix sums). */
function labelCounts(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, labels: readonly number[]) {
  const n = checkSameLength(yTrue, yPred);
  const at = new Map(labels.map((l, i) => [l, i]));
  const tp = new Float64Array(labels.length);
  const predSum = new Float64Array(labels.length);
  const trueSum = new Float64Array(labels.length);
  for (let i = 0; i < n; i++) {
    const t = at.get(yTrue[i]!);
    const p = at.get(yPred[i]!);
    if (t !== undefined) trueSum[t]!++;
    if (p !== undefined) predSum[p]!++;
    if (t !== undefined && yPred[i] === yTrue[i]) tp[t]!++;
  }
  return { tp, predSum, trueSum };
}

/**
 * `sklearn.metrics.f1_score(y_true, y_pred, average='macro', labels=unique(y_true))` as sklearn ≥ 1.3 computes it:
 * per label 2·tp / (true + predicted) (0 when both are 0), then the mean. Not rounded; WILDS rounds to float32.
 */
export function f1Macro(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, labels: readonly number[] = uniqueSorted(Array.from(yTrue))): number {
  const { tp, predSum, trueSum } = labelCounts(yTrue, yPred, labels);
  const f = Array.from(tp, (t, i) => {
    const denom = trueSum[i]! + predSum[i]!;
    return denom === 0 ? 0 : (2 * t) / denom;
  });
  return npMean(f);
}

/** `sklearn.metrics.recall_score(..., average='macro', labels=unique(y_true))`. */
export function recallMacro(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, labels: readonly number[] = uniqueSorted(Array.from(yTrue))): number {
  const { tp, trueSum } = labelCounts(yTrue, yPred, labels);
  return npMean(Array.from(tp, (t, i) => (trueSum[i]! === 0 ? 0 : t / trueSum[i]!)));
}

/** A value as torch reports a float32 scalar with `.item()`. */
export const f32 = Math.fround;

/**
 * WILDS' `standard_group_eval` with an element-wise 0/1 metric (Accuracy, or top-k accuracy for Dollar Street),
 * grouped by one integer metadata field: `{name}_avg`, then per group g in 0..max `{name}_{field}:{g}` and
 * `count_{field}:{g}` (a float, as WILDS counts), then `{name}_wg` = the worst group that has samples.
 * All values are float32, as WILDS computes them with torch.
 */
export function groupwiseAccuracy(name: string, field: string, correct: ArrayLike<boolean | number>, groups: ArrayLike<number>): Map<string, number> {
  const n = checkSameLength(correct, groups);
  let nGroups = 0;
  for (let i = 0; i < n; i++) nGroups = Math.max(nGroups, groups[i]! + 1);
  const hits = new Float64Array(nGroups);
  const counts = new Float64Array(nGroups);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const g = groups[i]!;
    if (!(Number.isInteger(g) && g >= 0)) throw new RangeError(`group ${g} of sample ${i} is not a non-negative integer`);
    counts[g]!++;
    if (correct[i]) {
      hits[g]!++;
      total++;
    }
  }
  const out = new Map<string, number>();
  out.set(`${name}_avg`, n ? f32(total / n) : 0);
  let worst = Infinity;
  for (let g = 0; g < nGroups; g++) {
    const acc = counts[g]! ? f32(hits[g]! / counts[g]!) : 0;
    out.set(`${name}_${field}:${g}`, acc);
    out.set(`count_${field}:${g}`, counts[g]!);
    if (counts[g]!) worst = Math.min(worst, acc);
  }
  out.set(`${name}_wg`, worst);
  return out;
}

export interface RetrievalInput {
  /** Normalised image embeddings, row-major images × dim. */
  images: Float32Array;
  /** Normalised text embeddings, row-major texts × dim. */
  texts: Float32Array;
  dim: number;
  /** For each text, the index of its image (clip_benchmark's `texts_image_index`). */
  textImage: ArrayLike<number>;
}

/**
 * clip_benchmark's zero-shot retrieval metrics for `recallK` (DataComp: [1, 5, 10]), in its key order:
 * image_retrieval_recall@k (each text retrieves images), text_retrieval_recall@k (each image retrieves texts).
 * Scores are dot products in float64 of the float32 embeddings (torch multiplies in float32: near-ties may differ).
 */
export function retrievalMetrics(input: RetrievalInput, recallK: readonly number[] = [1, 5, 10]): Map<string, number> {
  const { images, texts, dim, textImage } = input;
  const nImages = images.length / dim;
  const nTexts = texts.length / dim;
  if (!Number.isInteger(nImages) || !Number.isInteger(nTexts)) throw new RangeError(`embedding arrays are not multiples of dim ${dim}`);
  if (textImage.length !== nTexts) throw new RangeError(`${nTexts} texts but ${textImage.length} text→image indices`);
  const textsOf: number[][] = Array.from({ length: nImages }, () => []);
  for (let t = 0; t < nTexts; t++) {
    const i = textImage[t]!;
    if (!(Number.isInteger(i) && i >= 0 && i < nImages)) throw new RangeError(`text ${t} points at image ${i} of ${nImages}`);
    textsOf[i]!.push(t);
  }
  // Score rows are computed on the fly (a texts × images matrix would not fit memory at MSCOCO's size).
  const dot = (t: number, i: number) => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += texts[t * dim + d]! * images[i * dim + d]!;
    return s;
  };
  // rank of entry j among `row` (0 = best), ties to the lower index
  const rankIn = (row: Float64Array, j: number) => {
    const v = row[j]!;
    let rank = 0;
    for (let c = 0; c < row.length; c++) {
      const u = row[c]!;
      if (u > v || (u === v && c < j)) rank++;
    }
    return rank;
  };
  const textRank = new Float64Array(nTexts); // image retrieval: the rank of the text's image among all images
  const imageRow = new Float64Array(nImages);
  for (let t = 0; t < nTexts; t++) {
    for (let i = 0; i < nImages; i++) imageRow[i] = dot(t, i);
    textRank[t] = rankIn(imageRow, textImage[t]!);
  }
  const imageRank = new Float64Array(nImages); // text retrieval: the best rank of any of the image's texts
  const textRow = new Float64Array(nTexts);
  for (let i = 0; i < nImages; i++) {
    for (let t = 0; t < nTexts; t++) textRow[t] = dot(t, i);
    let best = Infinity;
    for (const t of textsOf[i]!) best = Math.min(best, rankIn(textRow, t));
    imageRank[i] = best;
  }
  const out = new Map<string, number>();
  for (const k of recallK) {
    const hitsI = textRank.reduce((a, r) => a + (r < k ? 1 : 0), 0);
    const hitsT = imageRank.reduce((a, r) => a + (r < k ? 1 : 0), 0);
    out.set(`image_retrieval_recall@${k}`, f32(hitsI / nTexts));
    out.set(`text_retrieval_recall@${k}`, f32(hitsT / nImages));
  }
  return out;
}

function checkSameLength(a: ArrayLike<unknown>, b: ArrayLike<unknown>): number {
  if (a.length !== b.length) throw new RangeError(`length mismatch: ${a.length} vs ${b.length}`);
  return a.length;
}
