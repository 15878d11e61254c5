/**
 * Batched matrix multiply C[b] = alpha · op(A[b]) · op(B[b]) (+ bias over columns) (+ C[b] when accumulating),
 * op = identity or transpose, row-major storage, batch strides in elements (0 broadcasts an operand).
 *
 * Two kernel families:
 *  - 'reg': no workgroup memory and no barriers; each thread keeps a 4×4 block of C in registers and reads
 *    A and B with vec4 loads. Barriers are very costly on CPU back ends (SwiftShader, llvmpipe), where this is
 *    the fast kernel (research/webgpu.md); it is always used on CPU adapters.
 *  - 'tiled' (GPUs): BM×BN tiles of C per workgroup, TM×TN per thread, BK-deep slices of A and B staged through
 *    registers into workgroup memory (double-buffered: one barrier per slice), vec4 global loads for every
 *    operand whose contiguous dimension allows it, scalar guarded loads otherwise, vec4 stores of C.
 * Every variant (transposes, batch, bias, accumulate, any size) goes through the same kernel family.
 *
 * Fused epilogues (each saves an elementwise pass over the output): `geluOut` also writes GELU(C) to a second
 * tensor (the MLP's first layer: pre-activation for the backward, activation for the next matmul), and
 * `geluGrad` multiplies the product by GELU'(X) (the MLP's hidden gradient straight out of the nn matmul).
 *
 * Plans (GPUs): the tile comes from a per-device tuning (tuning.ts, measured by bench/gpu.ts) by a small cost
 * model — padded work, relative kernel speed and how many workgroups fill the device; when the output has too
 * few tiles and K is long, K is split into S chunks whose partial products go to a scratch buffer and are
 * summed by a second pass in a fixed order (no atomics: bit-identical from run to run on one device).
 */
import { paramStruct, type Engine, type Kernel, type ParamLayout, type Tensor } from '../engine.ts';
import { DEFAULT_GPU_TUNING, type MatmulTuning } from '../tuning.ts';
import { GELU_HELPERS } from './gelu.ts';

export type MatmulConfig =
  | { kind: 'reg'; wgX: number; wgY: number }
  | { kind: 'tiled'; BM: number; BN: number; BK: number; TM: number; TN: number; /** double-buffered workgroup memory */ db?: boolean };

export type TiledConfig = Extract<MatmulConfig, { kind: 'tiled' }>;

/** A kernel and how many slices K is split into (1: no split). */
export interface MatmulPlan {
  config: MatmulConfig;
  splits: number;
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Batch count; A, B and C hold `batch` matrices at the given strides (elements). */
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  alpha?: number;
  /** Adds op(A)·op(B) to the existing contents of `out` instead of overwriting it. */
  accumulate?: boolean;
  /** A vector of length N added to every row of C. */
  bias?: Tensor;
  out?: Tensor;
  /** Forces a kernel (tests, autotuning); the split count then comes from `splits` (default 1). */
  config?: MatmulConfig;
  splits?: number;
  /** Unrolls the tiled kernels' inner loop (default: on GPUs, not on CPU adapters). */
  unroll?: boolean;
  /** Also writes GELU of the result (after bias and accumulation) here: same shape as C. */
  geluOut?: Tensor;
  /** C = GELU'(geluGrad) ⊙ (alpha·op(A)·op(B) (+ bias)): the backward of a GELU applied to geluGrad; no accumulate. */
  geluGrad?: Tensor;
}

const PARAMS: ParamLayout = [
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['sA', 'u32'], ['sB', 'u32'], ['sC', 'u32'], ['alpha', 'f32'],
  ['kc', 'u32'], ['S', 'u32'],
];

export const REG_DEFAULT: MatmulConfig = { kind: 'reg', wgX: 8, wgY: 8 };
export const TILED_DEFAULT: MatmulConfig = { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, db: true };

/** Device-wide overrides: a forced kernel (setMatmulConfig) or a tuning (setMatmulTuning). */
const forcedConfig = new WeakMap<Engine, MatmulConfig>();
const tunings = new WeakMap<Engine, MatmulTuning>();

/** Forces one kernel for every matmul on this engine (no split-K); undefined goes back to the tuning. */
export function setMatmulConfig(engine: Engine, config: MatmulConfig | undefined): void {
  if (config) forcedConfig.set(engine, config);
  else forcedConfig.delete(engine);
}

/** The per-device tuning (tuning.ts); undefined goes back to the built-in default. */
export function setMatmulTuning(engine: Engine, tuning: MatmulTuning | undefined): void {
  if (tuning) tunings.set(engine, tuning);
  else tunings.delete(engine);
}

export function getMatmulTuning(engine: Engine): MatmulTuning | undefined {
  return tunings.get(engine);
}

/** Bytes of workgroup memory a tiled config needs (with the padding of transposed stores). */
export function workgroupBytes(c: TiledConfig): number {
  return (c.db ? 2 : 1) * c.BK * (c.BM + 4 + c.BN + 4) * 4;
}

export function tiledConfigError(c: TiledConfig, engine?: Engine): string | undefined {
  const { BM, BN, BK, TM, TN } = c;
  if (TM % 4 || TN % 4 || BM % TM || BN % TN || BK % 4) return 'TM, TN and BK must be multiples of 4 dividing BM, BN';
  const T = (BM / TM) * (BN / TN);
  if (!engine) return undefined;
  const limits = engine.info.limits;
  if (T > (limits.maxComputeInvocationsPerWorkgroup ?? 256)) return `${T} invocations per workgroup exceed the device's limit`;
  if (workgroupBytes(c) > (limits.maxComputeWorkgroupStorageSize ?? 16384)) return `${workgroupBytes(c)} bytes of workgroup memory exceed the device's limit`;
  return undefined;
}

/** Kernel and split count for one matmul shape on this engine. */
export function planMatmul(engine: Engine, M: number, N: number, K: number, batch = 1): MatmulPlan {
  const forced = forcedConfig.get(engine);
  if (forced) return { config: forced, splits: 1 };
  const tuned = tunings.get(engine);
  if (tuned) return choosePlan(tuned, M, N, K, batch, engine);
  if (engine.info.isCpu) return { config: REG_DEFAULT, splits: 1 };
  return choosePlan(DEFAULT_GPU_TUNING, M, N, K, batch, engine);
}

/** Kept for callers of the first version: the kernel planMatmul would pick. */
export function chooseMatmulConfig(engine: Engine, M: number, N: number, K = 1024): MatmulConfig {
  return planMatmul(engine, M, N, K).config;
}

/**
 * The cost model: score = (useful / padded work) · relative kernel speed · min(1, workgroups / target) ·
 * split penalty, maximised over the tuning's kernels and split counts. Split-K is considered only when a
 * slice keeps at least `minSplitK` of K and the batch·tiles grid is below the target.
 */
export function choosePlan(t: MatmulTuning, M: number, N: number, K: number, batch: number, engine?: Engine): MatmulPlan {
  let best: (MatmulPlan & { score: number }) | undefined;
  for (const { config, speed } of t.kernels) {
    if (config.kind === 'tiled' && tiledConfigError(config, engine)) continue;
    const [bm, bn] = config.kind === 'tiled' ? [config.BM, config.BN] : [4 * config.wgY, 4 * config.wgX];
    const tiles = Math.ceil(M / bm) * Math.ceil(N / bn) * batch;
    const useful = (M * N) / (Math.ceil(M / bm) * bm * Math.ceil(N / bn) * bn);
    let splits = 1;
    if (config.kind === 'tiled' && tiles < t.targetWorkgroups) {
      const wanted = Math.ceil(t.targetWorkgroups / tiles);
      splits = Math.max(1, Math.min(wanted, Math.floor(K / t.minSplitK), t.maxSplits, Math.floor(65535 / batch)));
    }
    const fill = Math.min(1, (tiles * splits) / t.targetWorkgroups);
    const score = useful * speed * fill * (splits > 1 ? t.splitPenalty : 1);
    if (!best || score > best.score * 1.0001) best = { config, splits, score };
  }
  if (!best) return { config: REG_DEFAULT, splits: 1 };
  return { config: best.config, splits: best.splits };
}

export function configName(c: MatmulConfig): string {
  return c.kind === 'reg' ? `reg4x4-wg${c.wgX}x${c.wgY}` : `tiled${c.BM}x${c.BN}x${c.BK}-t${c.TM}x${c.TN}${c.db ? '-db' : ''}`;
}

export function planName(p: MatmulPlan): string {
  return configName(p.config) + (p.splits > 1 ? ` split${p.splits}` : '');
}

/** op(A) is M×K, op(B) is K×N; returns C (M×N per batch). */
export function matmul(engine: Engine, a: Tensor, b: Tensor, M: number, N: number, K: number, options: MatmulOptions = {}): Tensor {
  const batch = options.batch ?? 1;
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const sA = options.strideA ?? (batch > 1 ? M * K : 0);
  const sB = options.strideB ?? (batch > 1 ? K * N : 0);
  const sC = options.strideC ?? M * N;
  if (a.size < (batch - 1) * sA + M * K) throw new Error(`matmul: A has ${a.size} elements, needs ${(batch - 1) * sA + M * K}`);
  if (b.size < (batch - 1) * sB + K * N) throw new Error(`matmul: B has ${b.size} elements, needs ${(batch - 1) * sB + K * N}`);
  const out = options.out ?? engine.empty(batch > 1 ? [batch, M, N] : [M, N]);
  if (out.size < (batch - 1) * sC + M * N) throw new Error(`matmul: C has ${out.size} elements, needs ${(batch - 1) * sC + M * N}`);
  if (options.bias && options.bias.size !== N) throw new Error(`matmul: bias has ${options.bias.size} elements, N is ${N}`);
  const gelu = options.geluOut ?? options.geluGrad;
  if (options.geluOut && options.geluGrad) throw new Error('matmul: geluOut and geluGrad together');
  if (options.geluGrad && options.accumulate) throw new Error('matmul: geluGrad with accumulate');
  if (gelu && gelu.size !== out.size) throw new Error(`matmul: the GELU tensor has ${gelu.size} elements, C has ${out.size}`);
  const fused = { geluOut: !!options.geluOut, geluGrad: !!options.geluGrad };
  const extra = gelu ? [gelu] : [];
  const plan: MatmulPlan = options.config ? { config: options.config, splits: options.splits ?? 1 } : planMatmul(engine, M, N, K, batch);
  const accumulate = options.accumulate ?? false;
  const alpha = options.alpha ?? 1;
  // Vector access needs every row of the operand (and every batch) to start on a vec4 boundary.
  const aVec = (transA ? M : K) % 4 === 0 && sA % 4 === 0;
  const bVec = (transB ? K : N) % 4 === 0 && sB % 4 === 0;
  const cVec = N % 4 === 0 && sC % 4 === 0;
  const config = plan.config;
  if (config.kind === 'reg') {
    const aligned = K % 4 === 0 && N % 4 === 0 && (!transA || M % 4 === 0) && sA % 4 === 0 && sB % 4 === 0 && sC % 4 === 0;
    const variant: Variant = { transA, transB, aligned, aVec: aligned, bVec: aligned, cVec: aligned, accumulate, bias: !!options.bias, ...fused };
    const buffers = [...(options.bias ? [a, b, out, options.bias] : [a, b, out]), ...extra];
    engine.dispatch(matmulKernel(config, variant), buffers, [M, N, K, sA, sB, sC, alpha, K, 1], [Math.ceil(N / 4 / config.wgX), Math.ceil(M / 4 / config.wgY), batch]);
    return out;
  }
  const error = tiledConfigError(config, engine);
  if (error) throw new Error(`matmul: ${configName(config)}: ${error}`);
  const grid = [Math.ceil(N / config.BN), Math.ceil(M / config.BM)] as const;
  const unroll = options.unroll ?? !engine.info.isCpu;
  // Slices are whole BK-deep steps, so every split but the last is full and none is empty.
  const steps = Math.max(1, Math.ceil(K / config.BK));
  const kc = Math.ceil(steps / Math.max(1, plan.splits)) * config.BK;
  const splits = Math.max(1, Math.ceil(K / kc));
  if (splits === 1) {
    const variant: Variant = { transA, transB, aligned: false, aVec, bVec, cVec, accumulate, bias: !!options.bias, unroll, ...fused };
    const buffers = [...(options.bias ? [a, b, out, options.bias] : [a, b, out]), ...extra];
    engine.dispatch(matmulKernel(config, variant), buffers, [M, N, K, sA, sB, sC, alpha, Math.max(K, 1), 1], [grid[0], grid[1], batch]);
    return out;
  }
  // Split-K: partial products [batch·S, M, N], then C = alpha·Σ_s partial_s (+ bias) (+ C) in fixed order.
  const partial = engine.empty([batch * splits, M, N]);
  const pVec = N % 4 === 0;
  const variant: Variant = { transA, transB, aligned: false, aVec, bVec, cVec: pVec, accumulate: false, bias: false, unroll };
  engine.dispatch(matmulKernel(config, variant), [a, b, partial], [M, N, K, sA, sB, M * N, 1, kc, splits], [grid[0], grid[1], batch * splits]);
  splitKReduce(engine, partial, out, options.bias, gelu, { M, N, batch, splits, sC, alpha, accumulate, vec: pVec && cVec, ...fused });
  partial.dispose();
  return out;
}

interface Variant {
  transA: boolean;
  transB: boolean;
  /** reg family: every operand vec4-aligned. */
  aligned: boolean;
  /** tiled family: per-operand vec4 access. */
  aVec: boolean;
  bVec: boolean;
  cVec: boolean;
  accumulate: boolean;
  bias: boolean;
  /** tiled family: unroll the BK loop (GPUs). */
  unroll?: boolean;
  /** Writes GELU(C) to G as well. */
  geluOut?: boolean;
  /** C = gelu_grad(X, ·). */
  geluGrad?: boolean;
}

const kernels = new Map<string, Kernel>();

export function matmulKernel(config: MatmulConfig, v: Variant): Kernel {
  const layout = config.kind === 'reg' ? (v.aligned ? '-v4' : '') : `-${v.aVec ? 'a4' : 'a1'}${v.bVec ? 'b4' : 'b1'}${v.cVec ? 'c4' : 'c1'}`;
  const key = `matmul-${configName(config)}-${v.transA ? 't' : 'n'}${v.transB ? 't' : 'n'}${layout}${v.accumulate ? '-acc' : ''}${v.bias ? '-bias' : ''}${fusedKey(v)}${v.unroll && config.kind === 'tiled' ? '-u' : ''}`;
  let k = kernels.get(key);
  if (!k) {
    const code = config.kind === 'reg' ? () => regKernel(config, v) : () => tiledKernel(config, v);
    k = { key, code, params: PARAMS };
    kernels.set(key, k);
  }
  return k;
}

function fusedKey(v: Variant): string {
  return v.geluOut ? '-gelu' : v.geluGrad ? '-dgelu' : '';
}

/** Bindings from C on: C, bias?, G (geluOut) or X (geluGrad), the uniform; `first` is C's binding. */
function outputBindings(v: Variant, t: string, first: number, withBias = v.bias): string {
  let at = first;
  let s = `@group(0) @binding(${at++}) var<storage, read_write> C: array<${t}>;\n`;
  if (withBias) s += `@group(0) @binding(${at++}) var<storage, read> bias: array<${t}>;\n`;
  if (v.geluOut) s += `@group(0) @binding(${at++}) var<storage, read_write> G: array<${t}>;\n`;
  if (v.geluGrad) s += `@group(0) @binding(${at++}) var<storage, read> X: array<${t}>;\n`;
  s += `@group(0) @binding(${at}) var<uniform> p: Params;\n`;
  return v.geluOut || v.geluGrad ? s + GELU_HELPERS : s;
}

function bindings(v: Variant, vec: boolean): string {
  const t = vec ? 'vec4<f32>' : 'f32';
  return `${paramStruct(PARAMS)}
@group(0) @binding(0) var<storage, read> A: array<${t}>;
@group(0) @binding(1) var<storage, read> B: array<${t}>;
${outputBindings(v, t, 2)}`;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function regKernel(c: { wgX: number; wgY: number }, v: Variant): string {
  return v.aligned ? regAligned(c, v) : regScalar(c, v);
}

/** 4×4 per thread, vec4 loads; rows beyond M are clamped on load and skipped on store. */
function regAligned(c: { wgX: number; wgY: number }, v: Variant): string {
  const loadA = v.transA
    ? // A is K×M: four vec4 along m (one per k), then transpose into rows.
      `${range(4).map((kk) => `    let c${kk} = A[(aBase + (k + ${kk}u) * p.M + row) >> 2u];`).join('\n')}
${range(4).map((i) => `    let r${i} = vec4<f32>(c0[${i}], c1[${i}], c2[${i}], c3[${i}]);`).join('\n')}`
    : range(4).map((i) => `    let r${i} = A[(aBase + rowc${i} * p.K + k) >> 2u];`).join('\n');
  const loadBAndFma = v.transB
    ? // B is N×K: four vec4 along k (one per column), dot products.
      `${range(4).map((j) => `    let q${j} = B[(bBase + colc${j} * p.K + k) >> 2u];`).join('\n')}
${range(4).map((i) => `    acc${i} += vec4<f32>(dot(r${i}, q0), dot(r${i}, q1), dot(r${i}, q2), dot(r${i}, q3));`).join('\n')}`
    : `${range(4).map((kk) => `    let q${kk} = B[(bBase + (k + ${kk}u) * p.N + col) >> 2u];`).join('\n')}
${range(4).map((i) => `    acc${i} += q0 * r${i}.x + q1 * r${i}.y + q2 * r${i}.z + q3 * r${i}.w;`).join('\n')}`;
  const clampRows = v.transA ? '' : range(4).map((i) => `  let rowc${i} = min(row + ${i}u, p.M - 1u);`).join('\n');
  const clampCols = v.transB ? range(4).map((j) => `  let colc${j} = min(col + ${j}u, p.N - 1u);`).join('\n') : '';
  const store = range(4).map((i) => `  if (row + ${i}u < p.M) {
    let ci = (cBase + (row + ${i}u) * p.N + col) >> 2u;
    ${storeValue(v, 'ci', `acc${i}`, 'bias[col >> 2u]', true)}
  }`).join('\n');
  return `${bindings(v, true)}
@compute @workgroup_size(${c.wgX}, ${c.wgY}, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x * 4u;
  let row = gid.y * 4u;
  if (col >= p.N || row >= p.M) { return; }
  let aBase = gid.z * p.sA;
  let bBase = gid.z * p.sB;
  let cBase = gid.z * p.sC;
${clampRows}
${clampCols}
${range(4).map((i) => `  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  for (var k = 0u; k < p.K; k += 4u) {
${loadA}
${loadBAndFma}
  }
${store}
}
`;
}

/** C's new value: alpha·acc (+ bias), added to the old C as one term when accumulating (old + (alpha·acc + bias)). */
function epilogue(v: Variant, acc: string, old: string, bias: string): string {
  let e = `p.alpha * ${acc}`;
  if (v.bias) e += ` + ${bias}`;
  if (v.accumulate) e = `${old} + (${e})`;
  return e;
}

/** The statement that stores one value (f32 or vec4) at C[ci], with the fused GELU epilogues. */
function storeValue(v: Variant, ci: string, acc: string, bias: string, vec: boolean): string {
  const e = epilogue(v, acc, `C[${ci}]`, bias);
  if (v.geluOut) return `{ let e = ${e}; C[${ci}] = e; G[${ci}] = ${vec ? 'gelu4' : 'gelu_'}(e); }`;
  if (v.geluGrad) return `C[${ci}] = ${vec ? 'gelu_grad4' : 'gelu_grad'}(X[${ci}], ${e});`;
  return `C[${ci}] = ${e};`;
}

function indexA(v: Variant, m: string, k: string): string {
  return v.transA ? `aBase + (${k}) * p.M + (${m})` : `aBase + (${m}) * p.K + (${k})`;
}
function indexB(v: Variant, k: string, n: string): string {
  return v.transB ? `bBase + (${n}) * p.K + (${k})` : `bBase + (${k}) * p.N + (${n})`;
}

/** Any shape: guarded scalar loads and stores, still 4×4 per thread. */
function regScalar(c: { wgX: number; wgY: number }, v: Variant): string {
  return `${bindings(v, false)}
fn loadA(aBase: u32, m: u32, k: u32) -> f32 {
  if (m >= p.M) { return 0.0; }
  return A[${indexA(v, 'm', 'k')}];
}
fn loadB(bBase: u32, k: u32, n: u32) -> f32 {
  if (n >= p.N) { return 0.0; }
  return B[${indexB(v, 'k', 'n')}];
}
@compute @workgroup_size(${c.wgX}, ${c.wgY}, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x * 4u;
  let row = gid.y * 4u;
  if (col >= p.N || row >= p.M) { return; }
  let aBase = gid.z * p.sA;
  let bBase = gid.z * p.sB;
  let cBase = gid.z * p.sC;
${range(4).map((i) => `  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  for (var k = 0u; k < p.K; k++) {
    let q = vec4<f32>(${range(4).map((j) => `loadB(bBase, k, col + ${j}u)`).join(', ')});
${range(4).map((i) => `    acc${i} += loadA(aBase, row + ${i}u, k) * q;`).join('\n')}
  }
${range(4).map((i) => range(4).map((j) => `  if (row + ${i}u < p.M && col + ${j}u < p.N) {
    let ci = cBase + (row + ${i}u) * p.N + col + ${j}u;
    ${storeValue(v, 'ci', `acc${i}[${j}]`, `bias[col + ${j}u]`, false)}
  }`).join('\n')).join('\n')}
}
`;
}


/**
 * Workgroup-tiled kernel. Threads (BN/TN)×(BM/TM); thread (tx, ty) owns rows ty·4 + i4·TY·4 + ii and columns
 * tx·4 + j4·TX·4 + jj of the tile, so a warp reads a few broadcast vec4s of the A slice and consecutive vec4s of
 * the B slice. Slices are stored k-major (As[k][m/4], Bs[k][n/4]) as 2-D arrays: with k unrolled, the bounds
 * clamps that robustness adds depend only on the thread index and leave the inner loop. Each slice goes global →
 * registers → workgroup memory; the next slice's global loads are issued before the current slice's FMAs.
 * With `db`, two buffers alternate and one barrier per slice suffices.
 * wg.z enumerates batch × split: the split s covers K range [s·kc, min(K, (s+1)·kc)).
 */
function tiledKernel(c: TiledConfig, v: Variant): string {
  const { BM, BN, BK, TM, TN } = c;
  const err = tiledConfigError(c);
  if (err) throw new Error(`bad tiled config ${JSON.stringify(c)}: ${err}`);
  const TX = BN / TN;
  const TY = BM / TM;
  const T = TX * TY;
  const I4 = TM / 4;
  const J4 = TN / 4;
  // A slice: BM (m) × BK (k). Stored transposed into As[k][m/4][m%4] unless A is K-major with vec4 along m.
  // Padding the transposed-store rows by one vec4 spreads those scalar stores over more banks.
  const aDirect = v.transA && v.aVec;
  const bDirect = !v.transB && v.bVec;
  const aRow = BM / 4 + (aDirect ? 0 : 1);
  const bRow = BN / 4 + (bDirect ? 0 : 1);
  const bufs = c.db ? [0, 1] : [0];

  type Load = { decl: string; load: (k0: string) => string; store: (buf: number) => string };
  const loads: Load[] = [];
  const operand = (name: 'A' | 'B', S: 'As' | 'Bs', rows: number /* BM or BN */, vec: boolean, kMajor: boolean, direct: boolean, base: string, tile: string, bound: string, ld: string) => {
    // kMajor: the operand is stored with the tile's row index (m or n) contiguous (Aᵀ, or B), i.e. element (r, k) at k·ld + r.
    if (vec) {
      const count = (rows * BK) / 4;
      const per = Math.ceil(count / T);
      for (let s = 0; s < per; s++) {
        const reg = `r${name}${s}`;
        const guard = (count % T !== 0 && s === per - 1) ? `idx < ${count}u && ` : '';
        const coords = kMajor
          ? { r: `(idx % ${rows / 4}u) * 4u`, k: `idx / ${rows / 4}u` }
          : { r: `idx / ${BK / 4}u`, k: `(idx % ${BK / 4}u) * 4u` };
        const index = kMajor ? `(${base} + gk * ${ld} + gr) >> 2u` : `(${base} + gr * ${ld} + gk) >> 2u`;
        loads.push({
          decl: `  var ${reg} = vec4<f32>(0.0);`,
          load: (k0) => `    { let idx = li + ${s * T}u; let r = ${coords.r}; let k = ${coords.k};
      let gr = ${tile} + r; let gk = ${k0} + k;
      ${reg} = vec4<f32>(0.0);
      if (${guard}gr < ${bound} && gk < kEnd) { ${reg} = ${name}[${index}]; } }`,
          store: (buf) => direct
            ? `    { let idx = li + ${s * T}u; ${guard ? `if (idx < ${count}u) { ` : ''}${S}${buf}[idx / ${rows / 4}u][idx % ${rows / 4}u] = ${reg};${guard ? ' }' : ''} }`
            : `    { let idx = li + ${s * T}u; ${guard ? `if (idx < ${count}u) { ` : ''}let r = idx / ${BK / 4}u; let k = (idx % ${BK / 4}u) * 4u;
${range(4).map((q) => `      ${S}${buf}[k + ${q}u][r >> 2u][r & 3u] = ${reg}[${q}];`).join('\n')}${guard ? ' }' : ''} }`,
        });
      }
    } else {
      const count = rows * BK;
      const per = Math.ceil(count / T);
      for (let s = 0; s < per; s++) {
        const reg = `r${name}${s}`;
        const guard = (count % T !== 0 && s === per - 1) ? `idx < ${count}u && ` : '';
        // Consecutive threads walk the operand's contiguous dimension (coalesced).
        const coords = kMajor ? { r: `idx % ${rows}u`, k: `idx / ${rows}u` } : { r: `idx / ${BK}u`, k: `idx % ${BK}u` };
        const index = kMajor ? `${base} + gk * ${ld} + gr` : `${base} + gr * ${ld} + gk`;
        loads.push({
          decl: `  var ${reg} = 0.0;`,
          load: (k0) => `    { let idx = li + ${s * T}u; let r = ${coords.r}; let k = ${coords.k};
      let gr = ${tile} + r; let gk = ${k0} + k;
      ${reg} = 0.0;
      if (${guard}gr < ${bound} && gk < kEnd) { ${reg} = ${name}[${index}]; } }`,
          store: (buf) => `    { let idx = li + ${s * T}u; ${guard ? `if (idx < ${count}u) { ` : ''}let r = ${coords.r}; let k = ${coords.k};
      ${S}${buf}[k][r >> 2u][r & 3u] = ${reg};${guard ? ' }' : ''} }`,
        });
      }
    }
  };
  operand('A', 'As', BM, v.aVec, v.transA, aDirect, 'aBase', 'tileM', 'p.M', v.transA ? 'p.M' : 'p.K');
  operand('B', 'Bs', BN, v.bVec, !v.transB, bDirect, 'bBase', 'tileN', 'p.N', v.transB ? 'p.K' : 'p.N');

  const accs = range(TM).flatMap((i) => range(J4).map((j) => `acc_${i}_${j}`));
  const fmas = (k: string) => [
    ...range(I4).map((i4) => `      let a${i4} = As$BUF[${k}][${i4 * TY}u + ty];`),
    ...range(J4).map((j4) => `      let b${j4} = Bs$BUF[${k}][${j4 * TX}u + tx];`),
    ...range(I4).flatMap((i4) => range(4).flatMap((ii) => range(J4).map((j4) => `      acc_${i4 * 4 + ii}_${j4} += a${i4}[${ii}] * b${j4};`))),
  ].join('\n');
  // Unrolled on GPUs (constant k: the clamps fold away); a loop on CPU adapters, whose shader compilers
  // take seconds over the unrolled form and which run the 'reg' kernels anyway.
  const compute = (buf: number) => (v.unroll
    ? range(BK).map((k) => `    {\n${fmas(`${k}u`)}\n    }`).join('\n')
    : `    for (var k = 0u; k < BK; k++) {\n${fmas('k')}\n    }`).replaceAll('$BUF', String(buf));
  const loadAll = (k0: string) => loads.map((l) => l.load(k0)).join('\n');
  const storeAll = (buf: number) => loads.map((l) => l.store(buf)).join('\n');

  const body = c.db
    ? `${loadAll('kBegin')}
${storeAll(0)}
  workgroupBarrier();
  var t = 0u;
  loop {
    if (t >= nt) { break; }
${loadAll('kBegin + (t + 1u) * BK')}
${compute(0)}
${storeAll(1)}
    workgroupBarrier();
    t++;
    if (t >= nt) { break; }
${loadAll('kBegin + (t + 1u) * BK')}
${compute(1)}
${storeAll(0)}
    workgroupBarrier();
    t++;
  }`
    : `${loadAll('kBegin')}
  var t = 0u;
  loop {
    if (t >= nt) { break; }
${storeAll(0)}
    workgroupBarrier();
${loadAll('kBegin + (t + 1u) * BK')}
${compute(0)}
    workgroupBarrier();
    t++;
  }`;

  const stores: string[] = [];
  for (let i4 = 0; i4 < I4; i4++) {
    for (let ii = 0; ii < 4; ii++) {
      const i = i4 * 4 + ii;
      stores.push(`  { let row = tileM + ${i4 * TY * 4}u + ty * 4u + ${ii}u;\n    if (row < p.M) {`);
      for (let j4 = 0; j4 < J4; j4++) {
        const col = `tileN + ${j4 * TX * 4}u + tx * 4u`;
        if (v.cVec) {
          stores.push(`      { let col = ${col};
        if (col < p.N) {
          let ci = (cBase + row * p.N + col) >> 2u;
          ${storeValue(v, 'ci', `acc_${i}_${j4}`, 'bias[col >> 2u]', true)}
        } }`);
        } else {
          stores.push(`      { let col = ${col};
${range(4).map((jj) => `        if (col + ${jj}u < p.N) { let ci = cBase + row * p.N + col + ${jj}u; ${storeValue(v, 'ci', `acc_${i}_${j4}[${jj}]`, `bias[col + ${jj}u]`, false)} }`).join('\n')}
      }`);
        }
      }
      stores.push('    } }');
    }
  }
  const t = (vec: boolean) => (vec ? 'vec4<f32>' : 'f32');
  return `${paramStruct(PARAMS)}
@group(0) @binding(0) var<storage, read> A: array<${t(v.aVec)}>;
@group(0) @binding(1) var<storage, read> B: array<${t(v.bVec)}>;
${outputBindings(v, t(v.cVec), 2)}const BK = ${BK}u;
${bufs.map((b) => `var<workgroup> As${b}: array<array<vec4<f32>, ${aRow}>, ${BK}>;\nvar<workgroup> Bs${b}: array<array<vec4<f32>, ${bRow}>, ${BK}>;`).join('\n')}

@compute @workgroup_size(${TX}, ${TY}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let tx = lid.x;
  let ty = lid.y;
  let tileM = wg.y * ${BM}u;
  let tileN = wg.x * ${BN}u;
  let batch = wg.z / p.S;
  let split = wg.z % p.S;
  let aBase = batch * p.sA;
  let bBase = batch * p.sB;
  let cBase = wg.z * p.sC;
  let kBegin = split * p.kc;
  let kEnd = min(p.K, kBegin + p.kc);
  let nt = (kEnd - min(kBegin, kEnd) + BK - 1u) / BK;
${accs.map((a) => `  var ${a} = vec4<f32>(0.0);`).join('\n')}
${loads.map((l) => l.decl).join('\n')}
${body}
${stores.join('\n')}
}
`;
}

/** Second pass of split-K: out = alpha·Σ_s partial[b·S + s] (+ bias) (+ out), s in increasing order. */
function splitKReduce(engine: Engine, partial: Tensor, out: Tensor, bias: Tensor | undefined, gelu: Tensor | undefined,
  o: { M: number; N: number; batch: number; splits: number; sC: number; alpha: number; accumulate: boolean; vec: boolean; geluOut: boolean; geluGrad: boolean }): void {
  const w = o.vec ? 4 : 1;
  const fused = { geluOut: o.geluOut, geluGrad: o.geluGrad };
  const key = `matmul-splitk-reduce${o.vec ? '-v4' : ''}${o.accumulate ? '-acc' : ''}${bias ? '-bias' : ''}${fusedKey(fused as Variant)}`;
  let k = kernels.get(key);
  if (!k) {
    const layout: ParamLayout = [['n', 'u32'], ['mn', 'u32'], ['N', 'u32'], ['S', 'u32'], ['sC', 'u32'], ['alpha', 'f32']];
    const t = o.vec ? 'vec4<f32>' : 'f32';
    const v: Variant = { transA: false, transB: false, aligned: false, aVec: false, bVec: false, cVec: o.vec, accumulate: o.accumulate, bias: !!bias, ...fused };
    const code = () => `${paramStruct(layout)}
@group(0) @binding(0) var<storage, read> P: array<${t}>;
${outputBindings(v, t, 1)}@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let b = i / p.mn;
  let r = i % p.mn;
  var s = P[b * p.S * p.mn + r];
  for (var k = 1u; k < p.S; k++) { s += P[(b * p.S + k) * p.mn + r]; }
  let ci = b * p.sC + r;
  ${storeValue(v, 'ci', 's', `bias[r % ${o.vec ? '(p.N >> 2u)' : 'p.N'}]`, o.vec)}
}
`;
    k = { key, code, params: layout };
    kernels.set(key, k);
  }
  const mn = (o.M * o.N) / w;
  const n = mn * o.batch;
  const groups = Math.ceil(n / 256);
  const x = Math.min(groups, 65535);
  engine.dispatch(k, [partial, out, ...(bias ? [bias] : []), ...(gelu ? [gelu] : [])], [n, mn, o.N, o.splits, o.sC / w, o.alpha], [x, Math.ceil(groups / x)]);
}
