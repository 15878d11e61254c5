/**
 * The fraction → threshold rule of `get_threshold` in baselines/apply_filter.py:
 *   n = int(len(scores) * fraction); threshold = -np.sort(-scores)[n]
 * i.e. the (n+1)-th largest score, counting every row of the pool. numpy sorts NaN (a null score) last,
 * so when n reaches into the NaNs the threshold is NaN and `score >= NaN` keeps nothing. Rows kept by
 * `>=`: ⌊N·f⌋+1 plus ties.
 *
 * Selection is a two-level radix select on order-preserving float keys: O(N), no sort of the pool.
 */

/** float → uint32 key whose unsigned order is the float order (−0 and +0 share a key). */
function floatKey(bits: Uint32Array, values: Float32Array, i: number): number {
  const b = values[i] === 0 ? 0 : bits[i]!;
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

/** The value at ascending rank `rank` (0-based) among the non-NaN values, computed on float32 values. */
function selectAscending(values: Float32Array, rank: number): number {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const hist = new Uint32Array(65536);
  for (let i = 0; i < values.length; i++) if (values[i] === values[i]) hist[floatKey(bits, values, i) >>> 16]!++;
  let bucket = 0;
  let before = 0;
  while (before + hist[bucket]! <= rank) before += hist[bucket++]!;
  const inBucket = new Float32Array(hist[bucket]!);
  let k = 0;
  for (let i = 0; i < values.length; i++) {
    if (values[i] === values[i] && floatKey(bits, values, i) >>> 16 === bucket) inBucket[k++] = values[i]!;
  }
  inBucket.sort();
  return inBucket[rank - before]!;
}

/**
 * `get_threshold` for scores given as float32 (the CommonPool score columns are float32; null = NaN).
 * Throws a RangeError where numpy would raise an IndexError (fraction ≥ 1 or < 0, or an empty pool).
 */
export function thresholdForFraction(scores: Float32Array, fraction: number): number {
  const n = Math.floor(scores.length * fraction);
  if (!(fraction >= 0) || n >= scores.length) {
    throw new RangeError(`--fraction ${fraction} keeps no valid rank of ${scores.length} scores (int(N·f) must be < N)`);
  }
  let valid = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i] === scores[i]) valid++;
  if (n >= valid) return NaN;
  return selectAscending(scores, valid - 1 - n);
}

/** Float64 scores (a float64 column, or an expression) by the same rule. */
export function thresholdForFraction64(scores: Float64Array, fraction: number): number {
  const n = Math.floor(scores.length * fraction);
  if (!(fraction >= 0) || n >= scores.length) {
    throw new RangeError(`fraction ${fraction} keeps no valid rank of ${scores.length} scores (int(N·f) must be < N)`);
  }
  const valid = scores.filter((x) => x === x);
  if (n >= valid.length) return NaN;
  valid.sort();
  return valid[valid.length - 1 - n]!;
}

/** Growable float32 buffer for collecting a score column over a whole pool. */
export class Float32List {
  private data = new Float32Array(1 << 16);
  length = 0;
  append(values: ArrayLike<number>): void {
    if (this.length + values.length > this.data.length) {
      const grown = new Float32Array(Math.max(this.data.length * 2, this.length + values.length));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    for (let i = 0; i < values.length; i++) this.data[this.length + i] = values[i]!;
    this.length += values.length;
  }
  finish(): Float32Array {
    return this.data.slice(0, this.length);
  }
}
