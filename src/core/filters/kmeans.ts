/**
 * k-means and nearest-centroid assignment on the WebGPU engine, for the image_based baselines (facts §3).
 *
 * kmeans() is faiss's Clustering::train as DataComp's image_based_clustering.py configures it (niter 20,
 * seed 0, max_points_per_centroid 10^7, nredo 1, L2 metric, no spherical/int centroids), step by step:
 *  1. non-finite input is refused ("input contains NaN's or Inf's");
 *  2. more than k·max_points_per_centroid points: keep the first k·mppc of rand_perm(n, seed), in perm order;
 *  3. n == k: the centroids are the points; n < k: an error;
 *  4. init: centroid i = point perm[i] of rand_perm(n, seed + 1);
 *  5. niter times: assign each point to its nearest centroid (L2), then each centroid = the float32 sum of its
 *     points in point order × float32(1 / count) (compute_centroids), then split_clusters: every empty
 *     centroid copies a donor drawn by mt19937(1234) with probability (count − 1)/(n − k), both perturbed by
 *     (1 ± 1/1024) on alternating dimensions, and the donor's count is halved between them.
 * rand_perm and split_clusters use faiss's RandomGenerator — std::mt19937 seeded with (unsigned) seed, and
 * rand_int(max) = mt() % max as in faiss up to 1.8 (DataComp's era; faiss 1.9+ uses Lemire's mt()·max >> 32,
 * which draws other permutations). So the sample, the initial centroids and the splits are faiss's own, and
 * the centroid update is bit-identical to faiss's for the same assignment.
 *
 * What differs: the assignment. faiss on GPU ranks ‖x‖² − 2x·c + ‖c‖² from a cuBLAS GEMM; here ‖c‖² − 2x·c
 * from the engine's matmul (‖x‖² does not change the ranking). Both are float32 with different summation
 * orders, so a point almost equidistant from two centroids may go to another one, and from there the runs
 * drift apart. Ties go to the lowest centroid index.
 *
 * assignNearest() is image_based's get_centroid_ids_gpu: argmax of x·c (float32), ties to the lowest index;
 * a row with a non-finite value is done on the CPU with torch.argmax's rule (the first NaN wins, else the
 * first maximum).
 *
 * Memory: points stay on the host (float32, or raw float16 bits as the npz stores them) and go to the GPU a
 * chunk of rows at a time; centroids live on the GPU in blocks, scores are [chunk rows × block], and every
 * binding stays under the device's limit and 64 MiB. The host holds the training set (as faiss does) plus
 * O(k·d) for the centroids.
 */
import type { Engine, Tensor } from '../gpu/engine.ts';
import { matmul } from '../gpu/kernels/matmul.ts';
import { accumulateSums, mergeBest, rowSquaredNorms, type BestMode } from '../gpu/kernels/kmeans.ts';

/** A row-major matrix of embeddings: float32 values, or float16 as raw bits (as `.npy` '<f2' data is read). */
export interface Embeddings {
  rows: number;
  dim: number;
  data: Float32Array | Uint16Array;
}

/** The settings of DataComp's baselines/image_based_clustering.py (faiss's own defaults are niter 25, seed 1234, mppc 256). */
export const DATACOMP_KMEANS = { niter: 20, seed: 0, maxPointsPerCentroid: 10_000_000 } as const;
/** faiss warns below this many points per centroid. */
export const MIN_POINTS_PER_CENTROID = 39;

const MAX_BINDING_BYTES = 64 * 1024 * 1024;
const SPLIT_EPS = 1 / 1024;
const F32_COUNT_LIMIT = 2 ** 24;

// ---------------------------------------------------------------- faiss's RandomGenerator

/** std::mt19937 (32-bit Mersenne Twister, init_genrand seeding). */
export class Mt19937 {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    const mt = this.mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  /** The next 32-bit output, as an unsigned number. */
  next(): number {
    if (this.index >= 624) this.twist();
    let y = this.mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** faiss RandomGenerator::rand_int(max) up to faiss 1.8: mt() % max. */
  randInt(max: number): number {
    return this.next() % max;
  }

  /** faiss RandomGenerator::rand_float(): mt() / float(mt.max()), in float32. */
  randFloat(): number {
    return Math.fround(Math.fround(this.next()) / 4294967296);
  }

  private twist(): void {
    const mt = this.mt;
    for (let k = 0; k < 624; k++) {
      const y = (mt[k]! & 0x80000000) | (mt[(k + 1) % 624]! & 0x7fffffff);
      mt[k] = (mt[(k + 397) % 624]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
    }
    this.index = 0;
  }
}

/** faiss rand_perm: Fisher–Yates from the front with RandomGenerator(seed). */
export function randPerm(n: number, seed: number): Int32Array {
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const rng = new Mt19937(Number(BigInt.asUintN(32, BigInt(seed))));
  for (let i = 0; i + 1 < n; i++) {
    const j = i + rng.randInt(n - i);
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm;
}

// ---------------------------------------------------------------- host-side rows

let F16_TABLE: Float32Array | undefined;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const e = (h >>> 10) & 0x1f;
      const m = h & 0x3ff;
      F16_TABLE[h] = e === 0 ? sign * m * 2 ** -24 : e === 0x1f ? (m ? NaN : sign * Infinity) : sign * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  return F16_TABLE;
}

/** Copies rows (given by `rowOf(t)` for t in [from, to)) into a float32 buffer. */
function gatherRows(x: Embeddings, from: number, to: number, rowOf: ((t: number) => number) | undefined, out: Float32Array): Float32Array {
  const d = x.dim;
  const table = x.data instanceof Uint16Array ? f16Table() : undefined;
  for (let t = from; t < to; t++) {
    const r = rowOf ? rowOf(t) : t;
    const o = (t - from) * d;
    if (table) {
      const src = x.data as Uint16Array;
      for (let j = 0; j < d; j++) out[o + j] = table[src[r * d + j]!]!;
    } else {
      out.set((x.data as Float32Array).subarray(r * d, r * d + d), o);
    }
  }
  return out.subarray(0, (to - from) * d);
}

function checkShape(x: Embeddings, what: string): void {
  if (!(Number.isSafeInteger(x.rows) && x.rows >= 0 && Number.isSafeInteger(x.dim) && x.dim > 0) || x.data.length !== x.rows * x.dim) {
    throw new RangeError(`${what}: ${x.data.length} values do not make ${x.rows} rows of ${x.dim}`);
  }
}

// ---------------------------------------------------------------- GPU plan: chunks of rows, blocks of centroids

interface Block {
  base: number;
  rows: number;
  centroids: Tensor;
  norms: Tensor;
  sums?: Tensor;
}

interface Plan {
  chunkRows: number;
  blockRows: number;
  blocks: Block[];
  scores: Tensor;
  dummy: Tensor;
}

function bindingBudget(engine: Engine): number {
  const limits = engine.info.limits;
  return Math.min(MAX_BINDING_BYTES, limits.maxStorageBufferBindingSize || MAX_BINDING_BYTES, limits.maxBufferSize || MAX_BINDING_BYTES);
}

function makePlan(engine: Engine, k: number, d: number, rows: number, chunkRows: number | undefined, withSums: boolean): Plan {
  const budget = bindingBudget(engine);
  const maxRows = Math.max(1, Math.floor(budget / (4 * d)));
  const n = Math.max(1, Math.min(chunkRows ?? 4096, maxRows, Math.max(rows, 1)));
  const kb = Math.max(1, Math.min(k, maxRows, Math.floor(budget / (4 * n))));
  const blocks: Block[] = [];
  for (let base = 0; base < k; base += kb) {
    const r = Math.min(kb, k - base);
    blocks.push({
      base, rows: r, centroids: engine.empty([r, d]), norms: engine.empty([r]),
      sums: withSums ? engine.empty([r, d]) : undefined,
    });
  }
  return { chunkRows: n, blockRows: kb, blocks, scores: engine.empty([n * kb]), dummy: engine.empty([1]) };
}

function disposePlan(plan: Plan): void {
  for (const b of plan.blocks) {
    b.centroids.dispose();
    b.norms.dispose();
    b.sums?.dispose();
  }
  plan.scores.dispose();
  plan.dummy.dispose();
}

function uploadCentroids(engine: Engine, plan: Plan, centroids: Float32Array, d: number, mode: BestMode): void {
  for (const b of plan.blocks) {
    engine.write(b.centroids, centroids.subarray(b.base * d, (b.base + b.rows) * d));
    if (mode === 'l2') rowSquaredNorms(engine, b.centroids, b.rows, d, b.norms);
  }
}

/** Records the best centroid of each row of the chunk tensor `xt` ([n, d]) into best/bestIdx. */
function recordAssign(engine: Engine, plan: Plan, mode: BestMode, xt: Tensor, n: number, d: number, best: Tensor, bestIdx: Tensor): void {
  plan.blocks.forEach((b, i) => {
    matmul(engine, xt, b.centroids, n, b.rows, d, { transB: true, out: plan.scores });
    mergeBest(engine, mode, plan.scores, mode === 'l2' ? b.norms : plan.dummy, best, bestIdx, n, b.rows, b.base, i === 0);
  });
}

// ---------------------------------------------------------------- assignment (image_based)

export interface AssignOptions {
  /** Rows per GPU chunk (the official --batch_size, default 1024). */
  batchRows?: number;
  /** Only these rows of x, in this order (e.g. the rows a caption filter kept); default all. */
  rows?: Int32Array;
  /** Called after each chunk with the rows done so far. */
  onProgress?: (done: number) => void;
}

/**
 * For each row of x (or of options.rows), the index of the centroid with the largest inner product — what
 * image_based's get_centroid_ids_gpu computes (torch.einsum + argmax).
 */
export async function assignNearest(engine: Engine, centroids: Embeddings, x: Embeddings, options: AssignOptions = {}): Promise<Int32Array> {
  checkShape(centroids, 'centroids');
  checkShape(x, 'embeddings');
  const k = centroids.rows;
  const d = centroids.dim;
  if (x.dim !== d) throw new RangeError(`embeddings have ${x.dim} dimensions, the centroids ${d}`);
  if (k === 0) throw new RangeError('there are no centroids');
  const c32 = gatherRows(centroids, 0, k, undefined, new Float32Array(k * d));
  for (let i = 0; i < c32.length; i++) {
    if (!Number.isFinite(c32[i]!)) throw new RangeError(`centroid ${Math.floor(i / d)} has a non-finite value`);
  }
  const pick = options.rows;
  const total = pick ? pick.length : x.rows;
  const labels = new Int32Array(total);
  if (!total) return labels;
  const rowOf = pick ? (t: number) => pick[t]! : undefined;
  const plan = makePlan(engine, k, d, total, options.batchRows ?? 1024, false);
  const buffer = new Float32Array(plan.chunkRows * d);
  const xt = engine.empty([plan.chunkRows, d]);
  const best = engine.empty([plan.chunkRows]);
  const bestIdx = engine.empty([plan.chunkRows], 'u32');
  try {
    uploadCentroids(engine, plan, c32, d, 'ip');
    for (let from = 0; from < total; from += plan.chunkRows) {
      const to = Math.min(total, from + plan.chunkRows);
      const n = to - from;
      const chunk = gatherRows(x, from, to, rowOf, buffer);
      engine.write(xt, n === plan.chunkRows ? chunk : padded(chunk, plan.chunkRows * d));
      recordAssign(engine, plan, 'ip', xt, n, d, best, bestIdx);
      const idx = (await engine.read(bestIdx)) as Uint32Array;
      for (let t = 0; t < n; t++) labels[from + t] = idx[t]!;
      // rows with NaN or ±Inf: torch's argmax rule, on the CPU
      for (let t = 0; t < n; t++) {
        let finite = true;
        for (let j = 0; j < d && finite; j++) finite = Number.isFinite(chunk[t * d + j]!);
        if (!finite) labels[from + t] = torchArgmaxRow(chunk.subarray(t * d, t * d + d), c32, k, d);
      }
      options.onProgress?.(to);
    }
  } finally {
    xt.dispose();
    best.dispose();
    bestIdx.dispose();
    disposePlan(plan);
  }
  return labels;
}

function padded(chunk: Float32Array, length: number): Float32Array {
  const out = new Float32Array(length);
  out.set(chunk);
  return out;
}

/** torch.argmax over x·c: the first NaN if any, else the first maximum. */
function torchArgmaxRow(x: Float32Array, c: Float32Array, k: number, d: number): number {
  let best = -Infinity;
  let bi = 0;
  for (let i = 0; i < k; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[j]! * c[i * d + j]!;
    if (Number.isNaN(s)) return i;
    if (i === 0 || s > best) {
      best = s;
      bi = i;
    }
  }
  return bi;
}

/** The sorted distinct labels (torch.unique). */
export function uniqueLabels(labels: Int32Array): Int32Array {
  return Int32Array.from(new Set(labels)).sort();
}

// ---------------------------------------------------------------- k-means (faiss Clustering::train)

export interface KMeansOptions {
  niter?: number;
  seed?: number;
  maxPointsPerCentroid?: number;
  /** Starting centroids [k × dim] instead of faiss's random points (faiss: centroids given before train). */
  initialCentroids?: Float32Array;
  /** Rows per GPU chunk (default 4096, fewer where the device's binding limit needs it). */
  chunkRows?: number;
  /** After each iteration: faiss's objective (Σ squared distance, float64 here) and the number of splits. */
  onIteration?: (stats: KMeansIteration) => void;
}

export interface KMeansIteration {
  iteration: number;
  objective: number;
  splits: number;
}

export interface KMeansResult {
  /** [k × dim], float32. */
  centroids: Float32Array;
  k: number;
  dim: number;
  /** Points trained on (after the max_points_per_centroid sample). */
  trainingRows: number;
  iterations: KMeansIteration[];
  /** faiss's warnings (too few points per centroid). */
  warnings: string[];
}

/** faiss's k-means (see the top of this file) on the GPU engine. */
export async function kmeans(engine: Engine, x: Embeddings, k: number, options: KMeansOptions = {}): Promise<KMeansResult> {
  checkShape(x, 'embeddings');
  const d = x.dim;
  const niter = options.niter ?? DATACOMP_KMEANS.niter;
  const seed = options.seed ?? DATACOMP_KMEANS.seed;
  const mppc = options.maxPointsPerCentroid ?? DATACOMP_KMEANS.maxPointsPerCentroid;
  if (!(Number.isSafeInteger(k) && k >= 1)) throw new RangeError(`the number of clusters must be a positive integer, got ${k}`);
  if (!(Number.isSafeInteger(niter) && niter >= 0)) throw new RangeError(`niter must be a non-negative integer, got ${niter}`);
  if (x.rows < k) throw new RangeError(`Number of training points (${x.rows}) should be at least as large as number of clusters (${k})`);
  for (let i = 0; i < x.data.length; i++) {
    if (!Number.isFinite(x.data instanceof Uint16Array ? f16Table()[x.data[i]!]! : x.data[i]!)) throw new RangeError("input contains NaN's or Inf's");
  }
  const warnings: string[] = [];
  let nx = x.rows;
  let train: Int32Array | undefined;
  if (nx > k * mppc) {
    train = randPerm(nx, seed).subarray(0, k * mppc);
    nx = k * mppc;
  } else if (nx < k * MIN_POINTS_PER_CENTROID) {
    warnings.push(`clustering ${nx} points to ${k} centroids: please provide at least ${k * MIN_POINTS_PER_CENTROID} training points`);
  }
  const rowOf = train ? (t: number) => train![t]! : undefined;
  const centroids = new Float32Array(k * d);
  if (options.initialCentroids) {
    if (options.initialCentroids.length !== k * d) throw new RangeError(`initial centroids: ${options.initialCentroids.length} values for ${k} × ${d}`);
    centroids.set(options.initialCentroids);
  } else if (nx === k) {
    gatherRows(x, 0, k, rowOf, centroids);
    return { centroids, k, dim: d, trainingRows: nx, iterations: [], warnings };
  } else {
    const perm = randPerm(nx, seed + 1);
    const row = new Float32Array(d);
    for (let i = 0; i < k; i++) {
      const t = perm[i]!;
      gatherRows(x, t, t + 1, rowOf, row);
      centroids.set(row, i * d);
    }
  }

  const plan = makePlan(engine, k, d, nx, options.chunkRows, true);
  const n0 = plan.chunkRows;
  const buffer = new Float32Array(n0 * d);
  const xt = engine.empty([n0, d]);
  const best = engine.empty([n0]);
  const bestIdx = engine.empty([n0], 'u32');
  const xnorm = engine.empty([n0]);
  const order = engine.empty([n0], 'u32');
  const offsets = engine.empty([k + 1], 'u32');
  const iterations: KMeansIteration[] = [];
  try {
    for (let it = 0; it < niter; it++) {
      uploadCentroids(engine, plan, centroids, d, 'l2');
      for (const b of plan.blocks) engine.clear(b.sums!);
      const counts = new Float64Array(k);
      let objective = 0;
      for (let from = 0; from < nx; from += n0) {
        const to = Math.min(nx, from + n0);
        const n = to - from;
        const chunk = gatherRows(x, from, to, rowOf, buffer);
        engine.write(xt, n === n0 ? chunk : padded(chunk, n0 * d));
        recordAssign(engine, plan, 'l2', xt, n, d, best, bestIdx);
        rowSquaredNorms(engine, xt, n, d, xnorm);
        const idx = (await engine.read(bestIdx)) as Uint32Array;
        const bv = await engine.readF32(best);
        const xn = await engine.readF32(xnorm);
        for (let t = 0; t < n; t++) objective += bv[t]! + xn[t]!;
        // points grouped by centroid, ascending within each group (counting sort)
        const off = new Uint32Array(k + 1);
        for (let t = 0; t < n; t++) off[idx[t]! + 1]!++;
        for (let c = 0; c < k; c++) off[c + 1]! += off[c]!;
        const fill = off.slice(0, k);
        const ord = new Uint32Array(n0);
        for (let t = 0; t < n; t++) ord[fill[idx[t]!]!++] = t;
        for (let c = 0; c < k; c++) counts[c]! += off[c + 1]! - off[c]!;
        engine.write(order, ord);
        engine.write(offsets, off);
        for (const b of plan.blocks) accumulateSums(engine, xt, order, offsets, b.sums!, b.rows, d, b.base);
      }
      // compute_centroids: mean in float32 (faiss counts in a float, which saturates at 2^24)
      const hassign = new Float32Array(k);
      for (let c = 0; c < k; c++) hassign[c] = Math.min(counts[c]!, F32_COUNT_LIMIT);
      for (const b of plan.blocks) {
        const sums = await engine.readF32(b.sums!);
        for (let c = 0; c < b.rows; c++) {
          const h = hassign[b.base + c]!;
          const at = (b.base + c) * d;
          if (h === 0) {
            centroids.fill(0, at, at + d);
            continue;
          }
          const norm = Math.fround(1 / h);
          for (let j = 0; j < d; j++) centroids[at + j] = Math.fround(sums[c * d + j]! * norm);
        }
      }
      const splits = splitClusters(centroids, hassign, k, d, nx);
      const stats = { iteration: it, objective, splits };
      iterations.push(stats);
      options.onIteration?.(stats);
    }
  } finally {
    for (const t of [xt, best, bestIdx, xnorm, order, offsets]) t.dispose();
    disposePlan(plan);
  }
  return { centroids, k, dim: d, trainingRows: nx, iterations, warnings };
}

/** faiss split_clusters: gives every empty centroid half of a randomly drawn larger one. Returns the number of splits. */
export function splitClusters(centroids: Float32Array, hassign: Float32Array, k: number, d: number, n: number): number {
  const rng = new Mt19937(1234);
  let nsplit = 0;
  const nk = Math.fround(n - k);
  for (let ci = 0; ci < k; ci++) {
    if (hassign[ci] !== 0) continue;
    let cj = 0;
    for (let draws = 0; ; cj = (cj + 1) % k) {
      const p = Math.fround((hassign[cj]! - 1.0) / nk);
      const r = rng.randFloat();
      if (r < p) break;
      if (++draws > 1e9) throw new Error('split_clusters found no cluster to split');
    }
    const a = ci * d;
    const b = cj * d;
    for (let j = 0; j < d; j++) {
      const v = centroids[b + j]!;
      if (j % 2 === 0) {
        centroids[a + j] = Math.fround(v * (1 + SPLIT_EPS));
        centroids[b + j] = Math.fround(v * (1 - SPLIT_EPS));
      } else {
        centroids[a + j] = Math.fround(v * (1 - SPLIT_EPS));
        centroids[b + j] = Math.fround(v * (1 + SPLIT_EPS));
      }
    }
    hassign[ci] = Math.fround(hassign[cj]! / 2);
    hassign[cj] = Math.fround(hassign[cj]! - hassign[ci]!);
    nsplit++;
  }
  return nsplit;
}
