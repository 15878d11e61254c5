/**
 * Kernels for k-means and nearest-centroid assignment (src/core/filters/kmeans.ts drives them):
 *  - rowSquaredNorms: ‖c‖² per row, summed in index order;
 *  - mergeBest: per row, the best column of a block of scores (min of ‖c‖² − 2x·c, or max of x·c), merged
 *    with the best of earlier blocks; ties keep the lowest column, so the result does not depend on the
 *    block size or on the reduction tree;
 *  - accumulateSums: centroid sums continued over a chunk of points, each (centroid, dim) adding its
 *    members in ascending point order — the order faiss's compute_centroids adds them in, with no atomics.
 * Each has a one-thread-per-row form for CPU adapters (no barriers) and, for mergeBest, a workgroup-per-row
 * form for GPUs (strided scan, then a fixed tree over (value, index) pairs).
 */
import { paramStruct, type Engine, type Kernel, type ParamLayout, type Tensor } from '../engine.ts';

const WG = 64;
const cache = new Map<string, Kernel>();

function cached(key: string, params: ParamLayout, code: (header: string) => string): Kernel {
  let k = cache.get(key);
  if (!k) {
    k = { key, code: () => code(paramStruct(params)), params };
    cache.set(key, k);
  }
  return k;
}

/** 1-D thread grid of `n` threads (2-D beyond 65535 workgroups). */
function grid(n: number, wg = WG): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x)];
}

/** out[r] = Σ_j x[r, j]² for r < rows (sequential sum). */
export function rowSquaredNorms(engine: Engine, x: Tensor, rows: number, d: number, out = engine.empty([rows])): Tensor {
  const params: ParamLayout = [['n', 'u32'], ['d', 'u32']];
  const k = cached('kmeans-rownorms', params, (h) => `${h}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * ${WG}u;
  if (r >= p.n) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = x[r * p.d + j]; s += v * v; }
  out[r] = s;
}
`);
  engine.dispatch(k, [x, out], [rows, d], grid(rows));
  return out;
}

export type BestMode = 'l2' | 'ip';

/**
 * For rows r < n of scores [n, kb] (x·c of a block of centroids starting at column `base`): the best value
 * (l2: cn[j] − 2·score, smallest; ip: score, largest) and its column base + j, merged into best/bestIdx.
 * `first` starts the merge (earlier contents ignored). Ties keep the lowest column.
 */
export function mergeBest(engine: Engine, mode: BestMode, scores: Tensor, cn: Tensor, best: Tensor, bestIdx: Tensor,
  n: number, kb: number, base: number, first: boolean, form: 'thread' | 'workgroup' = engine.info.isCpu ? 'thread' : 'workgroup'): void {
  const params: ParamLayout = [['n', 'u32'], ['kb', 'u32'], ['base', 'u32'], ['first', 'u32']];
  const value = mode === 'l2' ? 'cn[j] - 2.0 * scores[row * p.kb + j]' : 'scores[row * p.kb + j]';
  const better = mode === 'l2' ? '<' : '>';
  const bindings = `@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read> cn: array<f32>;
@group(0) @binding(2) var<storage, read_write> best: array<f32>;
@group(0) @binding(3) var<storage, read_write> bestIdx: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;`;
  if (form === 'thread') {
    const k = cached(`kmeans-best-${mode}-thread`, params, (h) => `${h}
${bindings}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * ${WG}u;
  if (row >= p.n) { return; }
  var b = best[row];
  var bi = bestIdx[row];
  var have = p.first == 0u;
  for (var j = 0u; j < p.kb; j++) {
    let v = ${value};
    if (!have || v ${better} b) { b = v; bi = p.base + j; have = true; }
  }
  best[row] = b;
  bestIdx[row] = bi;
}
`);
    engine.dispatch(k, [scores, cn, best, bestIdx], [n, kb, base, first ? 1 : 0], grid(n));
    return;
  }
  const W = 64;
  const k = cached(`kmeans-best-${mode}-wg${W}`, params, (h) => `${h}
${bindings}
var<workgroup> vals: array<f32, ${W}>;
var<workgroup> idxs: array<u32, ${W}>;
var<workgroup> has: array<u32, ${W}>;
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wid.x + wid.y * nwg.x;
  let live = row < p.n;
  var b = 0.0;
  var bi = 0u;
  var hv = 0u;
  if (live) {
    for (var j = t; j < p.kb; j += ${W}u) {
      let v = ${value};
      if (hv == 0u || v ${better} b) { b = v; bi = p.base + j; hv = 1u; }
    }
  }
  vals[t] = b;
  idxs[t] = bi;
  has[t] = hv;
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (t < w && has[t + w] != 0u) {
      let v = vals[t + w];
      let i = idxs[t + w];
      if (has[t] == 0u || v ${better} vals[t] || (v == vals[t] && i < idxs[t])) { vals[t] = v; idxs[t] = i; has[t] = 1u; }
    }
    workgroupBarrier();
  }
  if (live && t == 0u && has[0] != 0u) {
    if (p.first != 0u || vals[0] ${better} best[row]) { best[row] = vals[0]; bestIdx[row] = idxs[0]; }
  }
}
`);
  const x = Math.min(n, 65535);
  engine.dispatch(k, [scores, cn, best, bestIdx], [n, kb, base, first ? 1 : 0], [x, Math.ceil(n / x)]);
}

/**
 * sums[c, j] += Σ x[order[q], j] over q in offsets[base + c] .. offsets[base + c + 1], in q order, for the
 * kb centroids of one block (sums is that block's [kb, d]); order lists a chunk's points grouped by centroid,
 * ascending within each group.
 */
export function accumulateSums(engine: Engine, x: Tensor, order: Tensor, offsets: Tensor, sums: Tensor, kb: number, d: number, base: number): void {
  const params: ParamLayout = [['n', 'u32'], ['d', 'u32'], ['base', 'u32']];
  const k = cached('kmeans-accumulate', params, (h) => `${h}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let c = i / p.d;
  let j = i % p.d;
  let q0 = offsets[p.base + c];
  let q1 = offsets[p.base + c + 1u];
  if (q0 == q1) { return; }
  var s = sums[i];
  for (var q = q0; q < q1; q++) { s += x[order[q] * p.d + j]; }
  sums[i] = s;
}
`);
  engine.dispatch(k, [x, order, offsets, sums], [kb * d, d, base], grid(kb * d));
}
