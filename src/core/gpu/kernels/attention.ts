/**
 * Tiled attention for short sequences (T ≤ 128 — CLIP's 50 image and 77 text tokens), forward and backward, on
 * GPUs (the 'workgroup' and 'subgroup' row-kernel forms; CPU adapters keep one thread per row, ops.ts).
 *
 * Forward, one workgroup per (batch, head, block of BQ queries): the query block and K (then V) in chunks of KC
 * rows are staged in workgroup memory as vec4s; the block's scores stay in workgroup memory for the softmax
 * (G threads per row) and for P·V, so each K and V row is read from global memory once per query block instead of
 * once per query. The probabilities [B, H, T, T] are written for the backward pass, as before.
 *
 * Backward in two passes, as before but tiled:
 *  - per query block: dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)) (written to a [B, H, T, T] scratch), dQ = scale·dS·K;
 *  - per key block: dK = scale·dSᵀ·Q and dV = Pᵀ·dO, with Q, dO and the block's columns of dS and P staged in
 *    chunks of QC queries, so each thread keeps a few rows of dK and dV in registers.
 * No atomics; every sum runs in a fixed order (d inside vec4 dots, then keys or queries ascending, chunk by chunk),
 * so results are bit-identical run to run on a device.
 *
 * Threads: W = NRG·(D/4) per workgroup (NRG row groups of D/4 threads, each owning 4 consecutive channels), at
 * most 128. Tile sizes come from the device's workgroup-memory limit (capped at 32 KiB so several workgroups fit
 * on a multiprocessor), falling back to smaller query blocks and key chunks under the 16 KiB core minimum.
 */
import { paramStruct, type Engine, type Kernel, type ParamLayout, type Tensor } from '../engine.ts';
import type { AttentionShape } from './ops.ts';

/** Longest sequence and widest head the tiled kernels take (others use the row kernels). */
export const TILED_MAX_T = 128;
export const TILED_MAX_D = 128;
const MAX_THREADS = 128;
const MAX_SHARED_BYTES = 32768;

export interface TiledAttentionPlan {
  T: number;
  D: number;
  /** Threads per workgroup = NRG · D/4. */
  W: number;
  NRG: number;
  /** Queries per block (forward, dQ) and keys per block (dK, dV), and the number of blocks. */
  BQ: number;
  NB: number;
  /** Key rows per staged chunk (forward, dQ); query rows per staged chunk (dK, dV). */
  KC: number;
  QC: number;
  /** Threads per row in the softmax. */
  G: number;
  /** Workgroup memory used (bytes), forward and key-block pass. */
  sharedBytes: number;
  sharedBytesKV: number;
}

const sharedCaps = new WeakMap<Engine, number>();

/**
 * Plans the attention kernels (these tiles and attention-head.ts) for at most this much workgroup memory (checks
 * of the small-memory plans); undefined: the default.
 */
export function setTiledAttentionMemory(engine: Engine, bytes: number | undefined): void {
  if (bytes) sharedCaps.set(engine, bytes);
  else sharedCaps.delete(engine);
}

/** The workgroup-memory cap set by setTiledAttentionMemory, if any. */
export function attentionMemoryCap(engine: Engine): number | undefined {
  return sharedCaps.get(engine);
}

/** Tile sizes for this device and shape, or undefined when the tiled kernels do not apply. */
export function tiledAttentionPlan(engine: Engine, T: number, D: number): TiledAttentionPlan | undefined {
  if (T < 1 || T > TILED_MAX_T || D < 4 || D % 4 !== 0 || D > TILED_MAX_D) return undefined;
  const limits = engine.info.limits;
  const D4 = D / 4;
  const NRG = Math.floor(MAX_THREADS / D4);
  const W = NRG * D4;
  if (W > (limits.maxComputeInvocationsPerWorkgroup ?? 128) || W > (limits.maxComputeWorkgroupSizeX ?? 128)) return undefined;
  const budget = Math.floor(Math.min(limits.maxComputeWorkgroupStorageSize ?? 16384, sharedCaps.get(engine) ?? MAX_SHARED_BYTES) / 4);
  // Query blocks of ≤ 16 rows, as even as T allows (50 → 4 × 13, 77 → 5 × 16); smaller where memory is short.
  for (let blocks = Math.ceil(T / 16); ; blocks *= 2) {
    const BQ = Math.ceil(T / Math.min(blocks, T));
    const G = Math.max(1, Math.floor(W / BQ));
    const fixed = BQ * D + BQ * T + BQ * G;
    const KC = Math.min(T, Math.floor((budget - fixed) / (D + 4)));
    const QC = Math.min(T, Math.floor(budget / (2 * D + 2 * BQ)));
    if (KC >= Math.min(T, 4) && QC >= 1) {
      return {
        T, D, W, NRG, BQ, NB: Math.ceil(T / BQ), KC, QC, G,
        sharedBytes: 4 * (fixed + KC * (D + 4)), sharedBytesKV: 4 * (2 * QC * D + 2 * QC * BQ),
      };
    }
    if (BQ === 1) return undefined;
  }
}

const cache = new Map<string, Kernel>();
/** The uniform block of every attention kernel here and in attention-head.ts: blocks to run, heads, 1/√D. */
export const LAYOUT: ParamLayout = [['blocks', 'u32'], ['H', 'u32'], ['scale', 'f32']];
export const range = (n: number) => Array.from({ length: n }, (_, k) => k);

/** The attention kernel under `key`, made once (its WGSL generated on first use). */
export function attentionKernel(key: string, code: () => string): Kernel {
  let k = cache.get(key);
  if (!k) cache.set(key, (k = { key, code, params: LAYOUT }));
  return k;
}

function dispatchBlocks(engine: Engine, k: Kernel, buffers: Tensor[], blocks: number, H: number, scale: number): void {
  const x = Math.min(blocks, 65535);
  engine.dispatch(k, buffers, [blocks, H, scale], [x, Math.ceil(blocks / x)]);
}

/** Constants and the block → (batch, head, first row) prologue shared by the kernels. */
function prologue(pl: TiledAttentionPlan, causal: boolean): { consts: string; head: string } {
  const D4 = pl.D / 4;
  const consts = `const T = ${pl.T}u;
const D4 = ${D4}u;
const DP4 = ${D4 + 1}u;
const W = ${pl.W}u;
const NRG = ${pl.NRG}u;
const BQ = ${pl.BQ}u;
const NB = ${pl.NB}u;
const KC = ${pl.KC}u;
const QC = ${pl.QC}u;
const G = ${pl.G}u;`;
  const head = `  let blk = wid.x + wid.y * nwg.x;
  if (blk >= p.blocks) { return; }
  let bh = blk / NB;
  let h = bh % p.H;
  let b = bh / p.H;
  let C4 = p.H * D4;
  let S4 = 3u * C4;
  let base = b * T * S4 + h * D4;
  let r0 = (blk % NB) * BQ;
  let nr = min(BQ, T - r0);
  let kend = ${causal ? 'r0 + nr' : 'T'};
  let d4 = t % D4;
  let rg = t / D4;`;
  return { consts, head };
}

/** Stages key rows k0 .. k0+kn of the qkv part at vec4 offset `part` into kv (padded rows: no bank conflicts). */
const stageKeys = (part: string) => `    workgroupBarrier();
    for (var e = t; e < kn * D4; e += W) {
      let j = e / D4;
      kv[j * DP4 + e % D4] = qkv[base + ${part} + (k0 + j) * S4 + e % D4];
    }
    workgroupBarrier();`;

/**
 * sc[i, k0 + j] = scale · qs[i]·kv[j] for the staged chunk: lanes over keys (32 per warp), warps over query rows,
 * RQ rows per thread so each kv vec4 read serves RQ dot products.
 */
function scores(pl: TiledAttentionPlan, scale: string): string {
  const W32 = Math.floor(pl.W / 32) * 32;
  const NQG = W32 / 32;
  const RQ = Math.ceil(pl.BQ / NQG);
  return `    if (t < ${W32}u) {
      let lane = t % 32u;
      let qg = t / 32u;
${range(RQ).map((k) => `      let q${k} = min(qg + ${k * NQG}u, BQ - 1u) * D4;`).join('\n')}
      for (var j = lane; j < kn; j += 32u) {
${range(RQ).map((k) => `        var s${k} = 0.0;`).join('\n')}
        for (var d = 0u; d < D4; d++) {
          let kd = kv[j * DP4 + d];
${range(RQ).map((k) => `          s${k} += dot(qs[q${k} + d], kd);`).join('\n')}
        }
${range(RQ).map((k) => `        if (qg + ${k * NQG}u < BQ) { sc[(qg + ${k * NQG}u) * T + k0 + j] = s${k}${scale}; }`).join('\n')}
      }
    }`;
}

/** acc_k[d4] = Σ_j sc[row_k, j]·kv[j, d4] over key rows 0 .. kend, staging the qkv part at `part` chunk by chunk. */
function rowsTimesKeys(pl: TiledAttentionPlan, part: string): string {
  const RPT = Math.ceil(pl.BQ / pl.NRG);
  return `${range(RPT).map((k) => `  var a${k} = vec4<f32>(0.0);\n  let o${k} = min(rg + ${k * pl.NRG}u, BQ - 1u) * T;`).join('\n')}
  for (var k0 = 0u; k0 < kend; k0 += KC) {
    let kn = min(KC, kend - k0);
${stageKeys(part)}
    for (var j = 0u; j < kn; j++) {
      let v = kv[j * DP4 + d4];
${range(RPT).map((k) => `      a${k} += sc[o${k} + k0 + j] * v;`).join('\n')}
    }
  }`;
}

const SHARED = (pl: TiledAttentionPlan) => `var<workgroup> qs: array<vec4<f32>, ${pl.BQ * (pl.D / 4)}>;
var<workgroup> kv: array<vec4<f32>, ${pl.KC * (pl.D / 4 + 1)}>;
var<workgroup> sc: array<f32, ${pl.BQ * pl.T}>;
var<workgroup> red: array<f32, ${pl.BQ * pl.G}>;`;

const MAIN = `@compute @workgroup_size(W)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {`;

/** out = softmax(q·kᵀ·scale [+ causal mask])·v and the probabilities, for qkv [B, T, 3C]. */
export function tiledAttention(engine: Engine, pl: TiledAttentionPlan, qkv: Tensor, out: Tensor, probs: Tensor, s: AttentionShape): void {
  const key = `attention-tiled${s.causal ? '-causal' : ''}-t${pl.T}-d${pl.D}-q${pl.BQ}-k${pl.KC}-w${pl.W}`;
  const k = attentionKernel(key, () => {
    const { consts, head } = prologue(pl, s.causal);
    return `${paramStruct(LAYOUT)}
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${consts}
${SHARED(pl)}
${MAIN}
${head}
  for (var e = t; e < BQ * D4; e += W) {
    qs[e] = qkv[base + (r0 + min(e / D4, nr - 1u)) * S4 + e % D4];
  }
  for (var k0 = 0u; k0 < kend; k0 += KC) {
    let kn = min(KC, kend - k0);
${stageKeys('C4')}
${scores(pl, ' * p.scale')}
  }
  workgroupBarrier();
  // Softmax: G threads per row, partial max and sum combined in a fixed order.
  let r = t / G;
  let lane = t % G;
  let live = r < nr;
  let last = ${s.causal ? 'r0 + r' : 'T - 1u'};
  var m = -3.4e38;
  if (live) { for (var j = lane; j <= last; j += G) { m = max(m, sc[r * T + j]); } }
  if (r < BQ) { red[r * G + lane] = m; }
  workgroupBarrier();
  var rm = -3.4e38;
  if (r < BQ) { for (var k = 0u; k < G; k++) { rm = max(rm, red[r * G + k]); } }
  var sum = 0.0;
  if (live) {
    for (var j = lane; j <= last; j += G) {
      let e = exp(sc[r * T + j] - rm);
      sc[r * T + j] = e;
      sum += e;
    }
  }
  workgroupBarrier();
  if (r < BQ) { red[r * G + lane] = sum; }
  workgroupBarrier();
  var total = 0.0;
  if (r < BQ) { for (var k = 0u; k < G; k++) { total += red[r * G + k]; } }
  if (live) {
    let inv = 1.0 / total;
    for (var j = lane; j < T; j += G) { sc[r * T + j] = select(0.0, sc[r * T + j] * inv, j <= last); }
  }
  workgroupBarrier();
  let pbase = bh * T * T + r0 * T;
  for (var e = t; e < nr * T; e += W) { probs[pbase + e] = sc[e]; }
${rowsTimesKeys(pl, '2u * C4')}
${range(Math.ceil(pl.BQ / pl.NRG)).map((k) => `  { let i = rg + ${k * pl.NRG}u; if (i < nr) { out[(b * T + r0 + i) * C4 + h * D4 + d4] = a${k}; } }`).join('\n')}
}
`;
  });
  dispatchBlocks(engine, k, [qkv, out, probs], s.B * s.H * pl.NB, s.H, 1 / Math.sqrt(s.D));
}

/** Gradient of attention with respect to qkv (every element written): the query-block pass, then the key-block pass. */
export function tiledAttentionBackward(engine: Engine, pl: TiledAttentionPlan, dout: Tensor, qkv: Tensor, probs: Tensor, dqkv: Tensor, s: AttentionShape): void {
  const ds = engine.empty(probs.shape);
  const tag = `${s.causal ? '-causal' : ''}-t${pl.T}-d${pl.D}-q${pl.BQ}-k${pl.KC}-c${pl.QC}-w${pl.W}`;
  const RPT = Math.ceil(pl.BQ / pl.NRG);
  const q = attentionKernel(`attentionBackwardQ-tiled${tag}`, () => {
    const { consts, head } = prologue(pl, s.causal);
    return `${paramStruct(LAYOUT)}
@group(0) @binding(0) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> ds: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: Params;
${consts}
${SHARED(pl)}
${MAIN}
${head}
  for (var e = t; e < BQ * D4; e += W) {
    qs[e] = dout[(b * T + r0 + min(e / D4, nr - 1u)) * C4 + h * D4 + e % D4];
  }
  // dP = dO·vᵀ into sc.
  for (var k0 = 0u; k0 < kend; k0 += KC) {
    let kn = min(KC, kend - k0);
${stageKeys('2u * C4')}
${scores(pl, '')}
  }
  workgroupBarrier();
  // dS = P ∘ (dP − Σ_j P·dP), G threads per row.
  let r = t / G;
  let lane = t % G;
  let live = r < nr;
  let last = ${s.causal ? 'r0 + r' : 'T - 1u'};
  let prow = bh * T * T + (r0 + min(r, BQ - 1u)) * T;
  var part = 0.0;
  if (live) { for (var j = lane; j <= last; j += G) { part += probs[prow + j] * sc[r * T + j]; } }
  if (r < BQ) { red[r * G + lane] = part; }
  workgroupBarrier();
  var rowdot = 0.0;
  if (r < BQ) { for (var k = 0u; k < G; k++) { rowdot += red[r * G + k]; } }
  if (live) {
    for (var j = lane; j < T; j += G) { sc[r * T + j] = select(0.0, probs[prow + j] * (sc[r * T + j] - rowdot), j <= last); }
  }
  workgroupBarrier();
  let pbase = bh * T * T + r0 * T;
  for (var e = t; e < nr * T; e += W) { ds[pbase + e] = sc[e]; }
  // dQ = scale · dS·k.
${rowsTimesKeys(pl, 'C4')}
${range(RPT).map((k) => `  { let i = rg + ${k * pl.NRG}u; if (i < nr) { dqkv[base + (r0 + i) * S4 + d4] = a${k} * p.scale; } }`).join('\n')}
}
`;
  });
  const kv = attentionKernel(`attentionBackwardKV-tiled${tag}`, () => {
    const { consts, head } = prologue(pl, s.causal);
    return `${paramStruct(LAYOUT)}
@group(0) @binding(0) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read> ds: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: Params;
${consts}
var<workgroup> qc: array<vec4<f32>, ${pl.QC * (pl.D / 4)}>;
var<workgroup> gc: array<vec4<f32>, ${pl.QC * (pl.D / 4)}>;
var<workgroup> dsc: array<f32, ${pl.QC * pl.BQ}>;
var<workgroup> pc: array<f32, ${pl.QC * pl.BQ}>;
${MAIN}
${head}
  // This block's key rows are r0 .. r0+nr; with a causal mask only queries i ≥ r0 attend to them.
${range(RPT).map((k) => `  var dk${k} = vec4<f32>(0.0);\n  var dv${k} = vec4<f32>(0.0);\n  let c${k} = min(rg + ${k * pl.NRG}u, BQ - 1u);`).join('\n')}
  for (var i0 = ${s.causal ? 'r0' : '0u'}; i0 < T; i0 += QC) {
    let ni = min(QC, T - i0);
    workgroupBarrier();
    for (var e = t; e < ni * D4; e += W) {
      let i = i0 + e / D4;
      qc[e] = qkv[base + i * S4 + e % D4];
      gc[e] = dout[(b * T + i) * C4 + h * D4 + e % D4];
    }
    for (var e = t; e < ni * BQ; e += W) {
      let src = bh * T * T + (i0 + e / BQ) * T + r0 + min(e % BQ, nr - 1u);
      dsc[e] = ds[src];
      pc[e] = probs[src];
    }
    workgroupBarrier();
    for (var i = 0u; i < ni; i++) {
      let qv = qc[i * D4 + d4];
      let gv = gc[i * D4 + d4];
${range(RPT).map((k) => `      dk${k} += dsc[i * BQ + c${k}] * qv;\n      dv${k} += pc[i * BQ + c${k}] * gv;`).join('\n')}
    }
  }
${range(RPT).map((k) => `  { let j = rg + ${k * pl.NRG}u; if (j < nr) { let o = base + (r0 + j) * S4 + d4; dqkv[o + C4] = dk${k} * p.scale; dqkv[o + 2u * C4] = dv${k}; } }`).join('\n')}
}
`;
  });
  const blocks = s.B * s.H * pl.NB;
  const scale = 1 / Math.sqrt(s.D);
  dispatchBlocks(engine, q, [dout, qkv, probs, ds, dqkv], blocks, s.H, scale);
  dispatchBlocks(engine, kv, [dout, qkv, probs, ds, dqkv], blocks, s.H, scale);
  ds.dispose();
}
