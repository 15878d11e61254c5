/**
 * Batched matrix multiply C[b] = alpha · op(A[b]) · op(B[b]) (+ bias over columns) (+ C[b] when accumulating),
 * op = identity or transpose, row-major storage, batch strides in elements (0 broadcasts an operand).
 *
 * Two kernel families, chosen per device (or by autotuning, see bench/gpu.ts):
 *  - 'reg': no workgroup memory and no barriers; each thread keeps a 4×4 block of C in registers and reads
 *    A and B with vec4 loads. Barriers are very costly on CPU back ends (SwiftShader, llvmpipe), where this is
 *    the fast kernel (research/webgpu.md), and it reached 24 TFLOP/s on an H100 (research/gpu-anchors.md).
 *  - 'tiled': BM×BN tiles of C per workgroup, BK-deep slices of A and B staged in workgroup memory, TM×TN
 *    per thread with a strided thread→column mapping (conflict-free vec4 reads of the B tile).
 * Both are generated for each (transA, transB, aligned, accumulate, bias) combination. "Aligned" (every
 * row of every operand starts on a vec4 boundary and K, N are multiples of 4) selects vec4 loads; other
 * shapes take guarded scalar loads, so any size is correct.
 */
import { paramStruct, type Engine, type Kernel, type ParamLayout, type Tensor } from '../engine.ts';

export type MatmulConfig =
  | { kind: 'reg'; wgX: number; wgY: number }
  | { kind: 'tiled'; BM: number; BN: number; BK: number; TM: number; TN: number };

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
  config?: MatmulConfig;
}

const PARAMS: ParamLayout = [
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['sA', 'u32'], ['sB', 'u32'], ['sC', 'u32'], ['alpha', 'f32'],
];

export const REG_DEFAULT: MatmulConfig = { kind: 'reg', wgX: 8, wgY: 8 };
export const TILED_DEFAULT: MatmulConfig = { kind: 'tiled', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 };

/** Device-wide override (set by an autotuner); otherwise chosen from the adapter kind. */
const tuned = new WeakMap<Engine, MatmulConfig>();
export function setMatmulConfig(engine: Engine, config: MatmulConfig | undefined): void {
  if (config) tuned.set(engine, config);
  else tuned.delete(engine);
}

export function chooseMatmulConfig(engine: Engine, M: number, N: number): MatmulConfig {
  const forced = tuned.get(engine);
  if (forced) return forced;
  if (engine.info.isCpu) return REG_DEFAULT;
  // Small outputs leave most of a GPU idle with 128×128 tiles: fall back to 64×64.
  if (M * N < 256 * 256 * 16) return { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 };
  return TILED_DEFAULT;
}

export function configName(c: MatmulConfig): string {
  return c.kind === 'reg' ? `reg4x4-wg${c.wgX}x${c.wgY}` : `tiled${c.BM}x${c.BN}x${c.BK}-t${c.TM}x${c.TN}`;
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
  const aligned = K % 4 === 0 && N % 4 === 0 && (!transA || M % 4 === 0) && sA % 4 === 0 && sB % 4 === 0 && sC % 4 === 0;
  const config = options.config ?? chooseMatmulConfig(engine, M, N);
  const variant: Variant = { transA, transB, aligned, accumulate: options.accumulate ?? false, bias: !!options.bias };
  const kernel = matmulKernel(config, variant);
  const buffers = options.bias ? [a, b, out, options.bias] : [a, b, out];
  const params = [M, N, K, sA, sB, sC, options.alpha ?? 1];
  if (config.kind === 'reg') {
    engine.dispatch(kernel, buffers, params, [Math.ceil(N / 4 / config.wgX), Math.ceil(M / 4 / config.wgY), batch]);
  } else {
    engine.dispatch(kernel, buffers, params, [Math.ceil(N / config.BN), Math.ceil(M / config.BM), batch]);
  }
  return out;
}

interface Variant {
  transA: boolean;
  transB: boolean;
  aligned: boolean;
  accumulate: boolean;
  bias: boolean;
}

const kernels = new Map<string, Kernel>();

export function matmulKernel(config: MatmulConfig, v: Variant): Kernel {
  const key = `matmul-${configName(config)}-${v.transA ? 't' : 'n'}${v.transB ? 't' : 'n'}${v.aligned ? '-v4' : ''}${v.accumulate ? '-acc' : ''}${v.bias ? '-bias' : ''}`;
  let k = kernels.get(key);
  if (!k) {
    const code = config.kind === 'reg' ? () => regKernel(config, v) : () => tiledKernel(config, v);
    k = { key, code, params: PARAMS };
    kernels.set(key, k);
  }
  return k;
}

function bindings(v: Variant, vec: boolean): string {
  const t = vec ? 'vec4<f32>' : 'f32';
  return `${paramStruct(PARAMS)}
@group(0) @binding(0) var<storage, read> A: array<${t}>;
@group(0) @binding(1) var<storage, read> B: array<${t}>;
@group(0) @binding(2) var<storage, read_write> C: array<${t}>;
${v.bias ? `@group(0) @binding(3) var<storage, read> bias: array<${t}>;\n` : ''}@group(0) @binding(${v.bias ? 4 : 3}) var<uniform> p: Params;
`;
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
    C[ci] = ${epilogue(v, `acc${i}`, 'C[ci]', 'bias[col >> 2u]')};
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

function epilogue(v: Variant, acc: string, old: string, bias: string): string {
  let e = `p.alpha * ${acc}`;
  if (v.bias) e += ` + ${bias}`;
  if (v.accumulate) e = `${old} + ${e}`;
  return e;
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
    C[ci] = ${epilogue(v, `acc${i}[${j}]`, 'C[ci]', `bias[col + ${j}u]`)};
  }`).join('\n')).join('\n')}
}
`;
}

/**
 * Workgroup-tiled: threads (BN/TN)×(BM/TM); thread (tx, ty) owns rows ty·4 + i4·TY·4 + ii and columns
 * tx·4 + j4·TX·4 + jj of the tile, so consecutive threads read consecutive vec4s of the staged B slice.
 */
function tiledKernel(c: { BM: number; BN: number; BK: number; TM: number; TN: number }, v: Variant): string {
  const { BM, BN, BK, TM, TN } = c;
  const TX = BN / TN;
  const TY = BM / TM;
  const T = TX * TY;
  if (TM % 4 || TN % 4 || BM % TM || BN % TN || (BM * BK) % T || (BN * BK) % T) throw new Error(`bad tiled config ${JSON.stringify(c)}`);
  const I4 = TM / 4;
  const J4 = TN / 4;
  const aLoads = (BM * BK) / T;
  const bLoads = (BN * BK) / T;
  // Coalesced global reads: consecutive threads walk the operand's contiguous dimension.
  const aCoord = v.transA ? { m: 'idx % BM', k: 'idx / BM' } : { m: 'idx / BK', k: 'idx % BK' };
  const bCoord = v.transB ? { n: 'idx / BK', k: 'idx % BK' } : { n: 'idx % BN', k: 'idx / BN' };
  const accs = range(I4 * 4).flatMap((i) => range(J4).map((j) => `acc_${i}_${j}`));
  const aIdx = indexA(v, 'gm', 'gk');
  const bIdx = indexB(v, 'gk', 'gn');
  const storeVec = v.aligned;
  const stores: string[] = [];
  for (let i4 = 0; i4 < I4; i4++) {
    for (let ii = 0; ii < 4; ii++) {
      const i = i4 * 4 + ii;
      const row = `tileM + ${i4 * TY * 4}u + ty * 4u + ${ii}u`;
      stores.push(`  { let row = ${row};\n    if (row < p.M) {`);
      for (let j4 = 0; j4 < J4; j4++) {
        const col = `tileN + ${j4 * TX * 4}u + tx * 4u`;
        if (storeVec) {
          stores.push(`      { let col = ${col};
        if (col < p.N) {
          let ci = cBase + row * p.N + col;
          let val = ${epilogue(v, `acc_${i}_${j4}`, 'vec4<f32>(C[ci], C[ci + 1u], C[ci + 2u], C[ci + 3u])', 'vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u])')};
          C[ci] = val.x; C[ci + 1u] = val.y; C[ci + 2u] = val.z; C[ci + 3u] = val.w;
        } }`);
        } else {
          stores.push(`      { let col = ${col};
${range(4).map((jj) => `        if (col + ${jj}u < p.N) { let ci = cBase + row * p.N + col + ${jj}u; C[ci] = ${epilogue(v, `acc_${i}_${j4}[${jj}]`, 'C[ci]', `bias[col + ${jj}u]`)}; }`).join('\n')}
      }`);
        }
      }
      stores.push('    } }');
    }
  }
  return `${bindings(v, false)}
const BM = ${BM}u;
const BN = ${BN}u;
const BK = ${BK}u;
var<workgroup> As: array<vec4<f32>, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * BN) / 4}>;

@compute @workgroup_size(${TX}, ${TY}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let tx = lid.x;
  let ty = lid.y;
  let tileM = wg.y * BM;
  let tileN = wg.x * BN;
  let aBase = wg.z * p.sA;
  let bBase = wg.z * p.sB;
  let cBase = wg.z * p.sC;
${accs.map((a) => `  var ${a} = vec4<f32>(0.0);`).join('\n')}
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
${range(aLoads).map((s) => `    {
      let idx = li + ${s * T}u;
      let m = ${aCoord.m}; let k = ${aCoord.k};
      let gm = tileM + m; let gk = k0 + k;
      var x = 0.0;
      if (gm < p.M && gk < p.K) { x = A[${aIdx}]; }
      As[(k * BM + m) >> 2u][m & 3u] = x;
    }`).join('\n')}
${range(bLoads).map((s) => `    {
      let idx = li + ${s * T}u;
      let n = ${bCoord.n}; let k = ${bCoord.k};
      let gn = tileN + n; let gk = k0 + k;
      var x = 0.0;
      if (gn < p.N && gk < p.K) { x = B[${bIdx}]; }
      Bs[(k * BN + n) >> 2u][n & 3u] = x;
    }`).join('\n')}
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
${range(I4).map((i4) => `      let a${i4} = As[k * ${BM / 4}u + ${i4 * TY}u + ty];`).join('\n')}
${range(J4).map((j4) => `      let b${j4} = Bs[k * ${BN / 4}u + ${j4 * TX}u + tx];`).join('\n')}
${range(I4).flatMap((i4) => range(4).flatMap((ii) => range(J4).map((j4) => `      acc_${i4 * 4 + ii}_${j4} += a${i4}[${ii}] * b${j4};`))).join('\n')}
    }
    workgroupBarrier();
  }
${stores.join('\n')}
}
`;
}
