/**
 * Duplicate groups and similarity ranking over a pool's rows: exact duplicates (the same image bytes: equal
 * metadata `sha256`), near duplicates by image-embedding cosine (the npz's `*_img` rows) or by the picture
 * fingerprint of the contamination check (src/core/pool/contamination.ts), and "more like this" ranking.
 *
 * A group is a connected component of the "is a duplicate of" relation (single linkage): a ~ b and b ~ c put
 * a, b and c in one group even when a and c are further apart than the threshold, as a dedup that keeps one
 * row per group must. Every function is exact: the embedding search prunes with the triangle inequality on
 * angles, which never drops a pair at or above the threshold, so it equals the brute-force all-pairs result.
 *
 * Rows are numbered 0..n-1 in the table's order; `rows` (optional) restricts the work to a subset.
 */
import { DEFAULT_MAX_HAMMING, DEFAULT_MAX_MAD, mad, popcount, type Fingerprint } from '../pool/contamination.ts';

export interface DuplicateGroups {
  /** For each row: the index of its group in `groups`, or -1 (no duplicate, or not among the rows grouped). */
  groupOf: Int32Array;
  /** Members of each group of two or more, ascending; the largest groups first (ties: the earliest first member). */
  groups: Uint32Array[];
}

/** Union–find over row numbers, with path halving and union by size. */
class Components {
  private readonly parent: Uint32Array;
  private readonly size: Uint32Array;

  constructor(n: number) {
    this.parent = new Uint32Array(n);
    for (let i = 0; i < n; i++) this.parent[i] = i;
    this.size = new Uint32Array(n).fill(1);
  }

  find(x: number): number {
    const p = this.parent;
    while (p[x] !== x) {
      p[x] = p[p[x]!]!;
      x = p[x]!;
    }
    return x;
  }

  union(a: number, b: number): void {
    let ra = this.find(a);
    let rb = this.find(b);
    if (ra === rb) return;
    if (this.size[ra]! < this.size[rb]!) [ra, rb] = [rb, ra];
    this.parent[rb] = ra;
    this.size[ra]! += this.size[rb]!;
  }

  /** The components of two or more among `rows`, in DuplicateGroups order. */
  groups(n: number, rows: ArrayLike<number>): DuplicateGroups {
    const byRoot = new Map<number, number[]>();
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      const root = this.find(r);
      if (this.size[root]! < 2) continue;
      let list = byRoot.get(root);
      if (!list) byRoot.set(root, (list = []));
      list.push(r);
    }
    const groups = [...byRoot.values()]
      .filter((g) => g.length >= 2)
      .map((g) => Uint32Array.from(g).sort())
      .sort((a, b) => b.length - a.length || a[0]! - b[0]!);
    const groupOf = new Int32Array(n).fill(-1);
    groups.forEach((g, i) => {
      for (const r of g) groupOf[r] = i;
    });
    return { groupOf, groups };
  }
}

function allRows(n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}

/** Group sizes per row (1: no duplicate; NaN: not among the rows grouped), for a table column. */
export function groupSizes(groups: DuplicateGroups, rows?: ArrayLike<number>): Float64Array {
  const n = groups.groupOf.length;
  const out = new Float64Array(n).fill(rows ? NaN : 1);
  if (rows) for (let i = 0; i < rows.length; i++) out[rows[i]!] = 1;
  for (const g of groups.groups) for (const r of g) out[r] = g.length;
  return out;
}

/**
 * Exact duplicates: rows whose keys are equal (the metadata `sha256` of the image bytes). Rows without a key
 * (null, undefined or '') are never duplicates.
 */
export function groupByKey(keys: ArrayLike<string | null | undefined>, rows: ArrayLike<number> = allRows(keys.length)): DuplicateGroups {
  const c = new Components(keys.length);
  const first = new Map<string, number>();
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    const k = keys[r];
    if (k === null || k === undefined || k === '') continue;
    const f = first.get(k);
    if (f === undefined) first.set(k, r);
    else c.union(f, r);
  }
  return c.groups(keys.length, rows);
}

/** Dot product of rows a and b of a row-major matrix, accumulated in float64. */
export function dotRows(v: Float32Array, dim: number, a: number, b: number): number {
  let s = 0;
  const oa = a * dim;
  const ob = b * dim;
  for (let k = 0; k < dim; k++) s += v[oa + k]! * v[ob + k]!;
  return s;
}

/**
 * Scales each row of a row-major matrix to unit length in place. Rows that are not finite or are all zero
 * (an embedding that is missing: the scorer writes NaN) become NaN, so they match nothing and rank last.
 * Returns how many rows are valid.
 */
export function normalizeRows(v: Float32Array, dim: number): number {
  const n = dim ? v.length / dim : 0;
  let valid = 0;
  for (let r = 0; r < n; r++) {
    const o = r * dim;
    let s = 0;
    for (let k = 0; k < dim; k++) s += v[o + k]! * v[o + k]!;
    if (!(s > 0) || !Number.isFinite(s)) {
      v.fill(NaN, o, o + dim);
      continue;
    }
    const inv = 1 / Math.sqrt(s);
    for (let k = 0; k < dim; k++) v[o + k]! *= inv;
    valid++;
  }
  return valid;
}

export interface EmbeddingGroupOptions {
  /** Restrict to these rows (default: all). */
  rows?: ArrayLike<number>;
  /** Called now and then with rows searched so far and in all. */
  onProgress?(done: number, total: number): void;
}

/**
 * Slack on the angle bounds (radians). A dot product of float32 unit vectors is off by about 1e-7, which near
 * cos = 1 moves acos by up to ~6e-4; the slack keeps the pruning conservative (it only ever checks more pairs).
 */
const ANGLE_SLACK = 0.01;

function angle(dot: number): number {
  return Math.acos(Math.max(-1, Math.min(1, dot)));
}

/**
 * Near duplicates by cosine: rows a and b are duplicates when dot(a, b) >= threshold (rows are unit vectors:
 * normalise with `normalizeRows`; NaN rows match nothing). Exact, and far from all pairs on real embeddings:
 * the rows go into a ball tree over angles (each node: a unit centre and the largest angle of a member to it),
 * and a row visits only the nodes whose ball comes within the threshold angle of it (the triangle inequality
 * on angles), and in a leaf only the members whose angle to the leaf's centre is within that of its own.
 */
export function groupByEmbedding(vectors: Float32Array, dim: number, threshold: number, options: EmbeddingGroupOptions = {}): DuplicateGroups {
  const steps = groupByEmbeddingSteps(vectors, dim, threshold, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    options.onProgress?.(step.value.done, step.value.total);
  }
}

/**
 * `groupByEmbedding` as steps: yields progress about 50 times (so a worker can answer other messages and
 * report progress between steps) and returns the groups.
 */
export function* groupByEmbeddingSteps(vectors: Float32Array, dim: number, threshold: number, options: { rows?: ArrayLike<number> } = {}): Generator<{ done: number; total: number }, DuplicateGroups> {
  if (!(dim > 0) || vectors.length % dim !== 0) throw new Error(`embedding matrix of ${vectors.length} values is not rows × ${dim}`);
  if (!(threshold >= -1 && threshold <= 1)) throw new Error(`a cosine threshold is between -1 and 1, not ${threshold}`);
  const n = vectors.length / dim;
  const subset = options.rows ?? allRows(n);
  const rows: number[] = [];
  for (let i = 0; i < subset.length; i++) if (!Number.isNaN(vectors[subset[i]! * dim]!)) rows.push(subset[i]!);
  const c = new Components(n);
  if (rows.length >= 2) {
    const tree = new BallTree(vectors, dim, rows);
    const maxAngle = angle(threshold) + ANGLE_SLACK;
    const total = tree.order.length;
    // Rows late in tree order have fewer rows after them to look at: steps of equal work, not of equal rows.
    let next = 0;
    for (let i = 0; i < total; i++) {
      const a = tree.order[i]!;
      // Each pair once: a row looks only for rows after it in the tree's order.
      tree.within(a, i, maxAngle, (b) => {
        if (dotRows(vectors, dim, a, b) >= threshold) c.union(a, b);
      });
      const work = 1 - ((total - i - 1) / total) ** 2;
      if (work >= next / 50 && i < total - 1) {
        next = Math.floor(work * 50) + 1;
        yield { done: i + 1, total };
      }
    }
  }
  return c.groups(n, subset);
}

/** Rows per leaf of the ball tree. */
const LEAF_ROWS = 32;

/**
 * A ball tree over unit rows with angular distance. Nodes are split at two far-apart members (the member
 * farthest from the centre, then the one farthest from it); rows are kept in leaf order, so a node covers a
 * contiguous range `order[start, end)`, and each row's angle to its leaf's centre is kept, sorted within a leaf.
 */
class BallTree {
  /** Row numbers in tree order. */
  readonly order: Uint32Array;
  /** Per position in `order`: the row's angle to its leaf's centre (ascending within each leaf). */
  private readonly leafAngle: Float64Array;
  private readonly nodes: { start: number; end: number; centre: Float64Array; radius: number; left: number; right: number }[] = [];

  constructor(private readonly v: Float32Array, private readonly dim: number, rows: readonly number[]) {
    this.order = Uint32Array.from(rows);
    this.leafAngle = new Float64Array(rows.length);
    this.build(0, rows.length);
  }

  private centreOf(start: number, end: number): { centre: Float64Array; radius: number; angles: Float64Array } {
    const { v, dim } = this;
    const centre = new Float64Array(dim);
    for (let i = start; i < end; i++) {
      const o = this.order[i]! * dim;
      for (let k = 0; k < dim; k++) centre[k]! += v[o + k]!;
    }
    let s = 0;
    for (let k = 0; k < dim; k++) s += centre[k]! ** 2;
    if (s > 0) for (let k = 0; k < dim; k++) centre[k]! /= Math.sqrt(s);
    else centre.set(Array.from(v.subarray(this.order[start]! * dim, this.order[start]! * dim + dim)));
    const angles = new Float64Array(end - start);
    let radius = 0;
    for (let i = start; i < end; i++) {
      const a = angle(dotWith(v, this.order[i]! * dim, centre, 0, dim));
      angles[i - start] = a;
      if (a > radius) radius = a;
    }
    return { centre, radius, angles };
  }

  /** Builds the node over order[start, end) and returns its index. */
  private build(start: number, end: number): number {
    const { centre, radius, angles } = this.centreOf(start, end);
    const index = this.nodes.length;
    this.nodes.push({ start, end, centre, radius, left: -1, right: -1 });
    if (end - start <= LEAF_ROWS || radius === 0) {
      // A leaf: its rows sorted by their angle to the centre.
      const idx = [...Array(end - start).keys()].sort((x, y) => angles[x]! - angles[y]! || x - y);
      const rows = idx.map((i) => this.order[start + i]!);
      idx.forEach((i, j) => (this.leafAngle[start + j] = angles[i]!));
      this.order.set(rows, start);
      return index;
    }
    const { v, dim, order } = this;
    let far = start;
    for (let i = start + 1; i < end; i++) if (angles[i - start]! > angles[far - start]!) far = i;
    const p = order[far]! * dim;
    let far2 = start;
    let least = Infinity;
    for (let i = start; i < end; i++) {
      const d = dotWith(v, order[i]! * dim, v, p, dim);
      if (d < least) {
        least = d;
        far2 = i;
      }
    }
    const q = order[far2]! * dim;
    // Partition in place: rows nearer p (by dot) first; ties go to p's side.
    let mid = start;
    for (let i = start; i < end; i++) {
      const r = order[i]!;
      if (dotWith(v, r * dim, v, p, dim) >= dotWith(v, r * dim, v, q, dim)) {
        order[i] = order[mid]!;
        order[mid] = r;
        mid++;
      }
    }
    if (mid === start || mid === end) mid = (start + end) >>> 1; // all equidistant: split anywhere
    const left = this.build(start, mid);
    const right = this.build(mid, end);
    this.nodes[index]!.left = left;
    this.nodes[index]!.right = right;
    return index;
  }

  /** Calls `visit(b)` for every row b after position `from` in tree order that may lie within `maxAngle` of row a. */
  within(a: number, from: number, maxAngle: number, visit: (b: number) => void): void {
    const { v, dim, order, nodes } = this;
    const stack = [0];
    while (stack.length) {
      const node = nodes[stack.pop()!]!;
      if (node.end <= from + 1) continue;
      const toCentre = angle(dotWith(v, a * dim, node.centre, 0, dim));
      if (toCentre - node.radius > maxAngle) continue;
      if (node.left >= 0) {
        stack.push(node.left, node.right);
        continue;
      }
      let at = lowerBound(this.leafAngle, toCentre - maxAngle, node.start, node.end);
      for (; at < node.end && this.leafAngle[at]! <= toCentre + maxAngle; at++) if (at > from) visit(order[at]!);
    }
  }
}

function dotWith(v: Float32Array, ov: number, w: Float32Array | Float64Array, ow: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += v[ov + k]! * w[ow + k]!;
  return s;
}

function lowerBound(sorted: Float64Array, value: number, lo: number, hi: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface FingerprintGroupOptions {
  /** Restrict to these rows (default: all). */
  rows?: ArrayLike<number>;
  /** The contamination check's rule: dHash within `maxHamming` bits and thumbnail MAD below `maxMad`. */
  maxHamming?: number;
  maxMad?: number;
}

/**
 * Near duplicates by picture: the contamination check's match (dHash Hamming distance ≤ maxHamming, then the
 * 16×16 thumbnails' mean absolute difference < maxMad), over all pairs of the rows. Rows without a
 * fingerprint (null: no picture stored, or it did not decode) match nothing.
 */
export function groupByFingerprint(fingerprints: readonly (Fingerprint | null | undefined)[], options: FingerprintGroupOptions = {}): DuplicateGroups {
  const n = fingerprints.length;
  const maxH = options.maxHamming ?? DEFAULT_MAX_HAMMING;
  const maxM = options.maxMad ?? DEFAULT_MAX_MAD;
  const subset = options.rows ?? allRows(n);
  const rows: number[] = [];
  for (let i = 0; i < subset.length; i++) if (fingerprints[subset[i]!]) rows.push(subset[i]!);
  const hashes = new Uint32Array(rows.length * 2);
  rows.forEach((r, i) => {
    hashes[i * 2] = fingerprints[r]!.hash[0];
    hashes[i * 2 + 1] = fingerprints[r]!.hash[1];
  });
  const c = new Components(n);
  for (let i = 0; i < rows.length; i++) {
    const h0 = hashes[i * 2]!;
    const h1 = hashes[i * 2 + 1]!;
    for (let j = i + 1; j < rows.length; j++) {
      if (popcount((h0 ^ hashes[j * 2]!) >>> 0) + popcount((h1 ^ hashes[j * 2 + 1]!) >>> 0) > maxH) continue;
      if (mad(fingerprints[rows[i]!]!, fingerprints[rows[j]!]!) < maxM) c.union(rows[i]!, rows[j]!);
    }
  }
  return c.groups(n, subset);
}

export interface SimilarityRanking {
  /** Row numbers, most similar first: the query row itself, then by score (ties: pool order); rows without a score last. */
  order: Uint32Array;
  /** Score of each row (NaN: no embedding). */
  scores: Float64Array;
}

/**
 * "More like this": every row ranked by cosine similarity to row `query`'s vector. With `text` (the matching
 * `*_txt` matrix), the score is the cosine of the concatenated [image, text] unit vectors, i.e. the mean of
 * the image and the text cosines. Vectors are unit rows (see `normalizeRows`).
 */
export function rankBySimilarity(image: Float32Array, dim: number, query: number, text?: { vectors: Float32Array; dim: number }): SimilarityRanking {
  const n = image.length / dim;
  if (!(query >= 0 && query < n)) throw new Error(`no row ${query}`);
  if (text && text.vectors.length / text.dim !== n) throw new Error(`text embeddings have ${text.vectors.length / text.dim} rows, image embeddings ${n}`);
  if (Number.isNaN(image[query * dim]!)) throw new Error(`row ${query} has no image embedding`);
  const scores = new Float64Array(n);
  const withText = text && !Number.isNaN(text.vectors[query * text.dim]!) ? text : undefined;
  for (let r = 0; r < n; r++) {
    const s = dotRows(image, dim, query, r);
    scores[r] = withText ? (s + dotRows(withText.vectors, withText.dim, query, r)) / 2 : s;
  }
  const order = allRows(n);
  order.sort((a, b) => {
    if (a === query || b === query) return a === query ? -1 : 1;
    const x = scores[a]!;
    const y = scores[b]!;
    const xn = Number.isNaN(x);
    const yn = Number.isNaN(y);
    if (xn || yn) return xn === yn ? a - b : xn ? 1 : -1;
    return x === y ? a - b : y - x;
  });
  return { order, scores };
}
