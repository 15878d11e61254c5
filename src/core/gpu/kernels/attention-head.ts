/**
 * Attention with one workgroup per (batch, head) and one thread per query (or key) row, for short sequences and
 * heads of ≤ 128 channels (CLIP: 50 image and 77 text tokens, heads of 64), on GPUs (the 'workgroup' and
 * 'subgroup' row-kernel forms). The tiled kernels (attention.ts) spread a row over many threads and synchronise
 * between phases; at these shapes that left them latency-bound. Here each thread keeps its own row in registers
 * (a q or dO row, or a dK/dV accumulator: D/4 vec4s, unrolled) and walks the keys (or queries) staged in workgroup
 * memory, where every load is a broadcast (all threads read the same staged row); the row's scores live in
 * workgroup memory at an odd stride (no bank conflicts), and the probabilities and dS move between global and
 * workgroup memory as whole tiles (coalesced).
 *
 *  - forward: scores and softmax per query row (four keys at a time for instruction-level parallelism), the
 *    probabilities [B, H, T, T] written for the backward pass, then P·V;
 *  - backward, query pass: D_i = Σ_j P_ij·(dO_i·v_j), then dS_ij = P_ij·(dO_i·v_j − D_i) (dO·v recomputed instead
 *    of kept: workgroup memory holds P), written to a [B, H, T, T] scratch, and dQ = scale·dS·K;
 *  - backward, key pass: dK_j = scale·Σ_i dS_ij q_i and dV_j = Σ_i P_ij dO_i, one thread per key row, with q and dO
 *    staged and the columns of P and dS read straight from global memory (consecutive threads, consecutive keys).
 * Keys (queries) are staged in chunks of KC (QC) rows: one chunk where the device offers 48 KiB of workgroup
 * memory (H100/H200 under Dawn/Vulkan), several under 32 KiB; where the score tile and 8 rows do not fit (T 77
 * under core WebGPU's 16 KiB) the tiled kernels run instead. No atomics; every sum runs in a fixed order (channels inside the unrolled dot products, then keys
 * or queries ascending), so results are bit-identical run to run on a device and agree with the other forms to
 * f32 rounding.
 */
import { paramStruct, type Engine, type Kernel, type Tensor } from '../engine.ts';
import { attentionKernel, attentionMemoryCap, LAYOUT, range } from './attention.ts';
import type { AttentionShape } from './ops.ts';

export const HEAD_MAX_T = 128;
export const HEAD_MAX_D = 128;

export interface HeadAttentionPlan {
  T: number;
  D: number;
  /** Threads per workgroup: T rounded up to whole warps of 32. */
  NT: number;
  /** Odd row stride of the score tile in workgroup memory. */
  TP: number;
  /** Key rows per staged chunk (forward, query pass); query rows per staged chunk (key pass). */
  KC: number;
  QC: number;
  /** Workgroup memory (bytes) of the forward / query pass and of the key pass. */
  sharedBytes: number;
  sharedBytesKV: number;
}

/** The plan for this device and shape, or undefined when these kernels do not apply (then: tiled, or per row). */
export function headAttentionPlan(engine: Engine, T: number, D: number): HeadAttentionPlan | undefined {
  if (T < 1 || T > HEAD_MAX_T || D < 4 || D % 4 !== 0 || D > HEAD_MAX_D) return undefined;
  const limits = engine.info.limits;
  const NT = Math.ceil(T / 32) * 32;
  if (NT > (limits.maxComputeInvocationsPerWorkgroup ?? 256) || NT > (limits.maxComputeWorkgroupSizeX ?? 256)) return undefined;
  const budget = Math.min(limits.maxComputeWorkgroupStorageSize ?? 16384, attentionMemoryCap(engine) ?? Infinity);
  const TP = T | 1;
  const tile = 4 * T * TP;
  const KC = Math.min(T, Math.floor((budget - tile) / (4 * D)));
  const QC = Math.min(T, Math.floor(budget / (8 * D)));
  // Chunks of fewer than 8 rows would mostly synchronise: leave such devices to the tiled kernels.
  if (KC < Math.min(T, 8) || QC < Math.min(T, 8)) return undefined;
  return { T, D, NT, TP, KC, QC, sharedBytes: tile + 4 * KC * D, sharedBytesKV: 8 * QC * D };
}


function dispatchHeads(engine: Engine, k: Kernel, buffers: Tensor[], s: AttentionShape): void {
  const blocks = s.B * s.H;
  const x = Math.min(blocks, 65535);
  engine.dispatch(k, buffers, [blocks, s.H, 1 / Math.sqrt(s.D)], [x, Math.ceil(blocks / x)]);
}

/** Constants, the entry point, and the workgroup → (batch, head) prologue; `r` is this thread's row. */
function prologue(pl: HeadAttentionPlan): string {
  return `const T = ${pl.T}u;
const D4 = ${pl.D / 4}u;
const TP = ${pl.TP}u;
const NT = ${pl.NT}u;
const KC = ${pl.KC}u;
const QC = ${pl.QC}u;
@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let bh = wid.x + wid.y * nwg.x;
  if (bh >= p.blocks) { return; }
  let h = bh % p.H;
  let b = bh / p.H;
  let C4 = p.H * D4;
  let S4 = 3u * C4;
  let base = b * T * S4 + h * D4;
  let obase = b * T * C4 + h * D4;
  let tile = bh * T * T;
  let live = t < T;
  let r = min(t, T - 1u);`;
}

/** Stages rows k0 .. k0+kn of a [T, D] slice of `src` (row stride `stride` vec4s from `at`) into `dst`. */
const stage = (dst: string, src: string, at: string, stride: string, n: string) => `    workgroupBarrier();
    for (var e = t; e < ${n} * D4; e += NT) { ${dst}[e] = ${src}[${at} + (k0 + e / D4) * ${stride} + e % D4]; }
    workgroupBarrier();`;

/** `let name_k = src[at + k]` for the D/4 vec4s of a row. */
const loadRow = (pl: HeadAttentionPlan, name: string, src: string, at: string) =>
  range(pl.D / 4).map((k) => `  let ${name}${k} = ${src}[${at} + ${k}u];`).join('\n');

/** Σ_d dot(row_d, kv[at + d]) in channel order. */
const dotRow = (pl: HeadAttentionPlan, row: string, at: string) =>
  range(pl.D / 4).map((k) => `dot(${row}${k}, kv[${at} + ${k}u])`).join(' + ');

/** Number of staged keys this thread's row uses: all kn, or (causal) those ≤ r. */
const rowKeys = (causal: boolean) => (causal ? 'select(0u, min(kn, r + 1u - k0), r + 1u > k0)' : 'kn');

/**
 * The end of the forward and of the query pass: the row tile in workgroup memory (P, or dS) is written to `dst`
 * [B, H, T, T] as whole rows (coalesced), then this thread's row of it weights the rows of the [T, D] slice at
 * `at` (V, or K) staged chunk by chunk, and `store(d)` writes each of the D/4 vec4 sums a0, a1, ….
 */
const tileTimesRows = (pl: HeadAttentionPlan, causal: boolean, dst: string, at: string, store: (d: number) => string) => `  workgroupBarrier();
  for (var e = t; e < T * T; e += NT) { ${dst}[tile + e] = sc[(e / T) * TP + e % T]; }
${range(pl.D / 4).map((d) => `  var a${d} = vec4<f32>(0.0);`).join('\n')}
  for (var k0 = 0u; k0 < T; k0 += KC) {
    let kn = min(KC, T - k0);
${stage('kv', 'qkv', at, 'S4', 'kn')}
    if (live) {
      let jn = ${rowKeys(causal)};
      for (var j = 0u; j < jn; j++) {
        let w = sc[srow + k0 + j];
        let rb = j * D4;
${range(pl.D / 4).map((d) => `        a${d} += w * kv[rb + ${d}u];`).join('\n')}
      }
    }
  }
  if (live) {
${range(pl.D / 4).map((d) => `    ${store(d)}`).join('\n')}
  }`;

/** out = softmax(q·kᵀ·scale [+ causal mask])·v and the probabilities, for qkv [B, T, 3C]. */
export function headAttention(engine: Engine, pl: HeadAttentionPlan, qkv: Tensor, out: Tensor, probs: Tensor, s: AttentionShape): void {
  const D4 = pl.D / 4;
  const k = attentionKernel(`attention-head${s.causal ? '-causal' : ''}-t${pl.T}-d${pl.D}-k${pl.KC}`, () => `${paramStruct(LAYOUT)}
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> kv: array<vec4<f32>, ${pl.KC * D4}>;
var<workgroup> sc: array<f32, ${pl.T * pl.TP}>;
${prologue(pl)}
${loadRow(pl, 'q', 'qkv', 'base + r * S4')}
  let srow = r * TP;
  var m = -3.4e38;
  for (var k0 = 0u; k0 < T; k0 += KC) {
    let kn = min(KC, T - k0);
${stage('kv', 'qkv', 'base + C4', 'S4', 'kn')}
    if (live) {
      let jn = ${rowKeys(s.causal)};
      var j = 0u;
      for (; j + 4u <= jn; j += 4u) {
${range(4).map((u) => `        let s${u} = (${dotRow(pl, 'q', `(j + ${u}u) * D4`)}) * p.scale;`).join('\n')}
${range(4).map((u) => `        sc[srow + k0 + j + ${u}u] = s${u};`).join('\n')}
        m = max(m, max(max(s0, s1), max(s2, s3)));
      }
      for (; j < jn; j++) {
        let s0 = (${dotRow(pl, 'q', 'j * D4')}) * p.scale;
        sc[srow + k0 + j] = s0;
        m = max(m, s0);
      }
    }
  }
  let last = ${s.causal ? 'r' : 'T - 1u'};
  if (live) {
    var sum = 0.0;
    for (var j = 0u; j <= last; j++) {
      let e = exp(sc[srow + j] - m);
      sc[srow + j] = e;
      sum += e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < T; j++) { sc[srow + j] = select(0.0, sc[srow + j] * inv, j <= last); }
  }
${tileTimesRows(pl, s.causal, 'probs', 'base + 2u * C4', (d) => `out[obase + r * C4 + ${d}u] = a${d};`)}
}
`);
  dispatchHeads(engine, k, [qkv, out, probs], s);
}

/** Gradient of attention with respect to qkv (every element written): the query pass, then the key pass. */
export function headAttentionBackward(engine: Engine, pl: HeadAttentionPlan, dout: Tensor, qkv: Tensor, probs: Tensor, dqkv: Tensor, s: AttentionShape): void {
  const D4 = pl.D / 4;
  const tag = `${s.causal ? '-causal' : ''}-t${pl.T}-d${pl.D}`;
  const bindings = (dsAccess: 'read' | 'read_write') => `@group(0) @binding(0) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, ${dsAccess}> ds: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: Params;`;
  const single = pl.KC >= pl.T;
  // dO_i·v_j over the staged keys; with one chunk V is staged once for both passes over it.
  const overV = (body: string) => `  for (var k0 = 0u; k0 < T; k0 += KC) {
    let kn = min(KC, T - k0);
${single ? '' : stage('kv', 'qkv', 'base + 2u * C4', 'S4', 'kn')}
    if (live) {
      let jn = ${rowKeys(s.causal)};
      for (var j = 0u; j < jn; j++) {
        let dp = ${dotRow(pl, 'g', 'j * D4')};
${body}
      }
    }
  }`;
  const q = attentionKernel(`attentionBackwardQ-head${tag}-k${pl.KC}`, () => `${paramStruct(LAYOUT)}
${bindings('read_write')}
var<workgroup> kv: array<vec4<f32>, ${pl.KC * D4}>;
var<workgroup> sc: array<f32, ${pl.T * pl.TP}>;
${prologue(pl)}
  for (var e = t; e < T * T; e += NT) { sc[(e / T) * TP + e % T] = probs[tile + e]; }
${single ? `  { let k0 = 0u;\n${stage('kv', 'qkv', 'base + 2u * C4', 'S4', 'T')}\n  }` : ''}
${loadRow(pl, 'g', 'dout', 'obase + r * C4')}
  let srow = r * TP;
  var rowdot = 0.0;
${overV('        rowdot += sc[srow + k0 + j] * dp;')}
${overV('        let at = srow + k0 + j;\n        sc[at] = sc[at] * (dp - rowdot);')}
${tileTimesRows(pl, s.causal, 'ds', 'base + C4', (d) => `dqkv[base + r * S4 + ${d}u] = a${d} * p.scale;`)}
}
`);
  const kv = attentionKernel(`attentionBackwardKV-head${tag}-c${pl.QC}`, () => `${paramStruct(LAYOUT)}
${bindings('read')}
var<workgroup> qs: array<vec4<f32>, ${pl.QC * D4}>;
var<workgroup> gs: array<vec4<f32>, ${pl.QC * D4}>;
${prologue(pl)}
  // This thread's key row is r; with a causal mask only queries i ≥ r attend to it.
${range(D4).map((d) => `  var dk${d} = vec4<f32>(0.0);\n  var dv${d} = vec4<f32>(0.0);`).join('\n')}
  for (var k0 = 0u; k0 < T; k0 += QC) {
    let kn = min(QC, T - k0);
    workgroupBarrier();
    for (var e = t; e < kn * D4; e += NT) {
      let i = k0 + e / D4;
      qs[e] = qkv[base + i * S4 + e % D4];
      gs[e] = dout[obase + i * C4 + e % D4];
    }
    workgroupBarrier();
    let i0 = ${s.causal ? 'max(k0, r)' : 'k0'};
    let i1 = k0 + kn;
    if (live && i0 < i1) {
      // P and dS of the next query are loaded one iteration ahead (their latency hides behind the FMAs).
      var pc = probs[tile + i0 * T + r];
      var dc = ds[tile + i0 * T + r];
      for (var i = i0; i < i1; i++) {
        let nx = tile + min(i + 1u, i1 - 1u) * T + r;
        let pn = probs[nx];
        let dn = ds[nx];
        let rb = (i - k0) * D4;
${range(D4).map((d) => `        dk${d} += dc * qs[rb + ${d}u];\n        dv${d} += pc * gs[rb + ${d}u];`).join('\n')}
        pc = pn;
        dc = dn;
      }
    }
  }
  if (live) {
    let o = base + r * S4;
${range(D4).map((d) => `    dqkv[o + C4 + ${d}u] = dk${d} * p.scale;\n    dqkv[o + 2u * C4 + ${d}u] = dv${d};`).join('\n')}
  }
}
`);
  const ds = engine.empty(probs.shape);
  dispatchHeads(engine, q, [dout, qkv, probs, ds, dqkv], s);
  dispatchHeads(engine, kv, [dout, qkv, probs, ds, dqkv], s);
  ds.dispose();
}
