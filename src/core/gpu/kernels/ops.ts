/**
 * Every non-matmul kernel CLIP training needs, forward and backward. All are deterministic (no atomics, fixed
 * summation order), so the same inputs on the same device give bit-identical outputs.
 *
 * Row kernels (layernorm, attention softmax rows, cross-entropy and CLIP-loss rows, L2 normalisation, column
 * sums) come in three forms, chosen per engine (rowKernelMode):
 *  - 'thread': one thread per row, no workgroup memory, no barriers — what CPU adapters (SwiftShader, llvmpipe)
 *    run fastest, since barriers are what they pay for most;
 *  - 'workgroup': one workgroup per row, strided partial sums per thread, then a fixed tree in workgroup memory
 *    (GPUs without subgroups, e.g. the compatibility adapter);
 *  - 'subgroup': the same with the tree replaced by an xor butterfly inside each subgroup (subgroupShuffleXor, a
 *    fixed order for a given subgroup size) and a sequential sum of the per-subgroup totals.
 * Column sums (bias and LayerNorm-gain gradients) on GPUs split the rows into slices, one workgroup per
 * 32 columns (32 vec4 columns where the row length is a multiple of 4) × slice, and add the slices' partial sums
 * in slice order in a second pass. The reduction order
 * depends only on the shape, the mode and the device (subgroup size, tuning), never on timing.
 *
 * Layouts: row-major; activations [rows, C] with rows = batch·seq; attention takes the fused qkv projection
 * [B, T, 3C] (q | k | v, heads contiguous inside each) and keeps the softmax probabilities [B, H, T, T].
 */
import { paramStruct, type Engine, type Kernel, type ParamLayout, type Tensor } from '../engine.ts';
import { DEFAULT_GPU_TUNING } from '../tuning.ts';
import { tiledAttention, tiledAttentionBackward, tiledAttentionPlan, type TiledAttentionPlan } from './attention.ts';
import { headAttention, headAttentionBackward, headAttentionPlan, type HeadAttentionPlan } from './attention-head.ts';
import { ERF } from './gelu.ts';
import { getMatmulTuning } from './matmul.ts';

const WG = 64;

interface Binding {
  name: string;
  access: 'read' | 'read_write';
  type?: 'f32' | 'u32' | 'vec4<f32>';
}

const cache = new Map<string, Kernel>();

/** A kernel over a 1-D index space `i < p.n` (2-D dispatch beyond 65535 workgroups). */
function kernel(key: string, bindings: Binding[], params: ParamLayout, body: string, helpers = ''): Kernel {
  let k = cache.get(key);
  if (k) return k;
  const layout: ParamLayout = [['n', 'u32'], ...params];
  const code = () => `${paramStruct(layout)}
${bindings.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b.access}> ${b.name}: array<${b.type ?? 'f32'}>;`).join('\n')}
@group(0) @binding(${bindings.length}) var<uniform> p: Params;
${helpers}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
${body}
}
`;
  k = { key, code, params: layout };
  cache.set(key, k);
  return k;
}

function run(engine: Engine, k: Kernel, buffers: Tensor[], n: number, params: number[] = []): void {
  const groups = Math.ceil(n / WG);
  const x = Math.min(groups, 65535);
  engine.dispatch(k, buffers, [n, ...params], [x, Math.ceil(groups / x)]);
}

const f32 = (name: string, access: Binding['access'] = 'read'): Binding => ({ name, access });
const u32 = (name: string): Binding => ({ name, access: 'read', type: 'u32' });

function check(t: Tensor, size: number, what: string): void {
  if (t.size !== size) throw new Error(`${what}: expected ${size} elements, got ${t.size} (shape ${JSON.stringify(t.shape)})`);
}

// ---------------------------------------------------------------- row kernels: modes and builders

export type RowKernelMode = 'thread' | 'workgroup' | 'subgroup';

const rowModes = new WeakMap<Engine, RowKernelMode>();

/** The row-kernel forms this engine's device can run ('subgroup' needs subgroups and the subgroup_id builtin). */
export function rowKernelModes(engine: Engine): RowKernelMode[] {
  const modes: RowKernelMode[] = ['thread', 'workgroup'];
  if (engine.info.subgroups && engine.info.wgslFeatures.includes('subgroup_id') && engine.info.subgroupMaxSize > 0) modes.push('subgroup');
  return modes;
}

/** The form row kernels take on this engine: a forced one, else one thread per row on CPU adapters, else the best the GPU has. */
export function rowKernelMode(engine: Engine): RowKernelMode {
  const forced = rowModes.get(engine);
  if (forced) return forced;
  if (engine.info.isCpu) return 'thread';
  return rowKernelModes(engine).includes('subgroup') ? 'subgroup' : 'workgroup';
}

/** Forces a row-kernel form on this engine (tests, benchmarks); undefined goes back to the default. */
export function setRowKernelMode(engine: Engine, mode: RowKernelMode | undefined): void {
  if (mode && !rowKernelModes(engine).includes(mode)) throw new Error(`row kernels '${mode}' are not available on this device`);
  if (mode) rowModes.set(engine, mode);
  else rowModes.delete(engine);
}

/** Threads per row: a power of two, about len/2 (clamped), at least one subgroup, within the device limit. */
function rowThreads(engine: Engine, len: number, max = 256): number {
  const limit = Math.min(max, engine.info.limits.maxComputeInvocationsPerWorkgroup ?? 256);
  let w = 32;
  while (w < limit && w * 2 <= len) w *= 2;
  return Math.max(Math.min(w, limit), Math.min(engine.info.subgroupMaxSize || 0, limit));
}

interface RowReduce {
  /** WGSL expression: the sum over the workgroup of each thread's `v` (an f32 expression); every thread gets it. */
  sum(v: string): string;
  max(v: string): string;
}

/**
 * A kernel with one workgroup of W threads per row `row < p.rows` (2-D grid beyond 65535 rows). The body sees
 * `row`, `t` (thread in the row, 0..W−1), `W`, and uses reduce.sum()/max() in uniform control flow.
 */
function rowKernel(key: string, mode: Exclude<RowKernelMode, 'thread'>, W: number, bindings: Binding[], params: ParamLayout,
  body: (r: RowReduce) => string, helpers = '', shared = ''): Kernel {
  const fullKey = `${key}-${mode}${W}`;
  let k = cache.get(fullKey);
  if (k) return k;
  const layout: ParamLayout = [['rows', 'u32'], ...params];
  const sg = mode === 'subgroup';
  const reduceFns = sg ? `
fn rsum(v: f32, sgi: u32, sgid: u32, nsg: u32, sgs: u32) -> f32 {
  var s = v;
  for (var o = 1u; o < sgs; o <<= 1u) { s = s + subgroupShuffleXor(s, o); }
  workgroupBarrier();
  if (sgi == 0u) { red[sgid] = s; }
  workgroupBarrier();
  var total = red[0];
  for (var k = 1u; k < nsg; k++) { total = total + red[k]; }
  return total;
}
fn rmax(v: f32, sgi: u32, sgid: u32, nsg: u32) -> f32 {
  let s = subgroupMax(v);
  workgroupBarrier();
  if (sgi == 0u) { red[sgid] = s; }
  workgroupBarrier();
  var total = red[0];
  for (var k = 1u; k < nsg; k++) { total = max(total, red[k]); }
  return total;
}` : `
fn rsum(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { red[t] = red[t] + red[t + w]; }
    workgroupBarrier();
  }
  return red[0];
}
fn rmax(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { red[t] = max(red[t], red[t + w]); }
    workgroupBarrier();
  }
  return red[0];
}`;
  const reduce: RowReduce = sg
    ? { sum: (v) => `rsum(${v}, sgi, sgid, nsg, sgs)`, max: (v) => `rmax(${v}, sgi, sgid, nsg)` }
    : { sum: (v) => `rsum(${v}, t)`, max: (v) => `rmax(${v}, t)` };
  const builtins = sg
    ? ', @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_id) sgid: u32, @builtin(num_subgroups) nsg: u32, @builtin(subgroup_size) sgs: u32'
    : '';
  const code = () => `${sg ? 'enable subgroups;\n' : ''}${paramStruct(layout)}
${bindings.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b.access}> ${b.name}: array<${b.type ?? 'f32'}>;`).join('\n')}
@group(0) @binding(${bindings.length}) var<uniform> p: Params;
const W = ${W}u;
var<workgroup> red: array<f32, ${W}>;
${shared}
${reduceFns}
${helpers}
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32${builtins}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
${body(reduce)}
}
`;
  k = { key: fullKey, code, params: layout };
  cache.set(fullKey, k);
  return k;
}

function runRows(engine: Engine, k: Kernel, buffers: Tensor[], rows: number, params: number[] = []): void {
  const x = Math.min(rows, 65535);
  engine.dispatch(k, buffers, [rows, ...params], [x, Math.ceil(rows / x)]);
}

const COLS = 32;
const COL_LANES = 8;

/**
 * Column sums on GPUs: out_k[c] (+)= Σ_r term_k(r, c) for each term, over `rows` rows of N columns. The rows are
 * cut into S slices (enough workgroups to fill the device); each workgroup sums 32 columns of one slice with
 * 8 row lanes (strided, then a fixed tree), and a second pass adds the slices in order.
 */
function columnSums(engine: Engine, name: string, inputs: { t: Tensor; b: Binding; rowsByN?: boolean }[], terms: string[], rows: number, N: number,
  outs: Tensor[], accumulate: boolean, params: { layout: ParamLayout; values: number[] } = { layout: [], values: [] }, terms4?: string[]): void {
  if (terms4 && N % 4 === 0 && columnSumKernels(engine) === 'v4') {
    columnSums4(engine, name, inputs, terms4, rows, N, outs, accumulate);
    return;
  }
  const groupsX = Math.ceil(N / COLS);
  const target = getMatmulTuning(engine)?.targetWorkgroups ?? DEFAULT_GPU_TUNING.targetWorkgroups;
  const S = Math.max(1, Math.min(Math.ceil(target / groupsX), Math.ceil(rows / 64), 65535));
  const L = Math.ceil(rows / S);
  const direct = S === 1;
  const nt = terms.length;
  const key = `colsum-${name}${direct ? `-direct${accumulate ? '-acc' : ''}` : ''}`;
  let k = cache.get(key);
  if (!k) {
    const layout: ParamLayout = [['rows', 'u32'], ['N', 'u32'], ['L', 'u32'], ['S', 'u32'], ...params.layout];
    const outBindings = direct ? terms.map((_, j) => `out${j}`) : ['part'];
    const code = () => `${paramStruct(layout)}
${inputs.map((x, i) => `@group(0) @binding(${i}) var<storage, read> ${x.b.name}: array<${x.b.type ?? 'f32'}>;`).join('\n')}
${outBindings.map((o, j) => `@group(0) @binding(${inputs.length + j}) var<storage, read_write> ${o}: array<f32>;`).join('\n')}
@group(0) @binding(${inputs.length + outBindings.length}) var<uniform> p: Params;
var<workgroup> red: array<f32, ${COLS * COL_LANES * nt}>;
@compute @workgroup_size(${COLS}, ${COL_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * ${COLS}u + lid.x;
  let s = wid.y;
  let r0 = s * p.L;
  let r1 = min(r0 + p.L, p.rows);
${terms.map((_, j) => `  var acc${j} = 0.0;`).join('\n')}
  if (c < p.N) {
    for (var r = r0 + lid.y; r < r1; r += ${COL_LANES}u) {
${terms.map((term, j) => `      acc${j} += ${term};`).join('\n')}
    }
  }
${terms.map((_, j) => `  red[${j * COLS * COL_LANES}u + lid.y * ${COLS}u + lid.x] = acc${j};`).join('\n')}
  workgroupBarrier();
  for (var w = ${COL_LANES / 2}u; w > 0u; w >>= 1u) {
    if (lid.y < w) {
${terms.map((_, j) => `      red[${j * COLS * COL_LANES}u + lid.y * ${COLS}u + lid.x] += red[${j * COLS * COL_LANES}u + (lid.y + w) * ${COLS}u + lid.x];`).join('\n')}
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < p.N) {
${terms.map((_, j) => direct
    ? `    out${j}[c] = ${accumulate ? `out${j}[c] + ` : ''}red[${j * COLS * COL_LANES}u + lid.x];`
    : `    part[(${j}u * p.S + s) * p.N + c] = red[${j * COLS * COL_LANES}u + lid.x];`).join('\n')}
  }
}
`;
    k = { key, code, params: layout };
    cache.set(key, k);
  }
  const values = [rows, N, L, S, ...params.values];
  if (direct) {
    engine.dispatch(k, [...inputs.map((x) => x.t), ...outs], values, [groupsX, 1]);
    return;
  }
  const part = engine.empty([nt, S, N]);
  engine.dispatch(k, [...inputs.map((x) => x.t), part], values, [groupsX, S]);
  outs.forEach((o, j) => {
    run(engine, kernel(`colsumFinish${accumulate ? '-acc' : ''}`, [f32('part'), f32('out', 'read_write')], [['S', 'u32'], ['off', 'u32']], `
  var s = part[p.off + i];
  for (var k = 1u; k < p.S; k++) { s += part[p.off + k * p.n + i]; }
  out[i] = ${accumulate ? 'out[i] + ' : ''}s;`), [part, o], N, [S, j * S * N]);
  });
  part.dispose();
}

/** 'v4' (the default): column sums in vec4s with one finishing pass per call; 'scalar': one column per thread and one finishing pass per sum (before issue #5's round 4). */
export type ColumnSumKernels = 'v4' | 'scalar';
const columnSumForced = new WeakMap<Engine, ColumnSumKernels>();

/** Forces the column-sum kernels (benchmarks, tests); undefined: the default, 'v4' where N is a multiple of 4. */
export function setColumnSumKernels(engine: Engine, kernels: ColumnSumKernels | undefined): void {
  if (kernels) columnSumForced.set(engine, kernels);
  else columnSumForced.delete(engine);
}

export function columnSumKernels(engine: Engine): ColumnSumKernels {
  return columnSumForced.get(engine) ?? 'v4';
}

const COLS4 = 32;

/**
 * columnSums for N a multiple of 4: each thread sums 4 columns as a vec4 (a warp reads 512 contiguous bytes per
 * row instead of 128), the [rows, N] inputs bound as vec4 arrays (`terms4` index them by r·N4 + c, c a vec4
 * column), the rest (LayerNorm's per-row stats) as f32. Slices of rows as in columnSums; one finishing pass adds
 * the slices in order for every term at once (LayerNorm's gain and bias: one dispatch, not two). Per column the
 * order is fixed (row lanes strided by 8, the same tree, slices ascending); with 128 columns per workgroup there
 * are more slices than in the scalar form, so the two agree to f32 rounding, not bit for bit.
 */
function columnSums4(engine: Engine, name: string, inputs: { t: Tensor; b: Binding; rowsByN?: boolean }[], terms: string[], rows: number, N: number,
  outs: Tensor[], accumulate: boolean): void {
  const N4 = N / 4;
  const groupsX = Math.ceil(N4 / COLS4);
  const target = getMatmulTuning(engine)?.targetWorkgroups ?? DEFAULT_GPU_TUNING.targetWorkgroups;
  const S = Math.max(1, Math.min(Math.ceil(target / groupsX), Math.ceil(rows / 64), 65535));
  const L = Math.ceil(rows / S);
  const direct = S === 1;
  const nt = terms.length;
  const acc = accumulate ? '-acc' : '';
  const key = `colsum4-${name}${direct ? `-direct${acc}` : ''}`;
  const layout: ParamLayout = [['rows', 'u32'], ['N4', 'u32'], ['L', 'u32'], ['S', 'u32']];
  let k = cache.get(key);
  if (!k) {
    const outBindings = direct ? terms.map((_, j) => `out${j}`) : ['part'];
    const W = COLS4 * COL_LANES;
    const code = () => `${paramStruct(layout)}
${inputs.map((x, i) => `@group(0) @binding(${i}) var<storage, read> ${x.b.name}: array<${x.rowsByN ? 'vec4<f32>' : (x.b.type ?? 'f32')}>;`).join('\n')}
${outBindings.map((o, j) => `@group(0) @binding(${inputs.length + j}) var<storage, read_write> ${o}: array<vec4<f32>>;`).join('\n')}
@group(0) @binding(${inputs.length + outBindings.length}) var<uniform> p: Params;
var<workgroup> red: array<vec4<f32>, ${W * nt}>;
@compute @workgroup_size(${COLS4}, ${COL_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * ${COLS4}u + lid.x;
  let s = wid.y;
  let r0 = s * p.L;
  let r1 = min(r0 + p.L, p.rows);
${terms.map((_, j) => `  var acc${j} = vec4<f32>(0.0);`).join('\n')}
  if (c < p.N4) {
    for (var r = r0 + lid.y; r < r1; r += ${COL_LANES}u) {
${terms.map((term, j) => `      acc${j} += ${term};`).join('\n')}
    }
  }
${terms.map((_, j) => `  red[${j * W}u + lid.y * ${COLS4}u + lid.x] = acc${j};`).join('\n')}
  workgroupBarrier();
  for (var w = ${COL_LANES / 2}u; w > 0u; w >>= 1u) {
    if (lid.y < w) {
${terms.map((_, j) => `      red[${j * W}u + lid.y * ${COLS4}u + lid.x] += red[${j * W}u + (lid.y + w) * ${COLS4}u + lid.x];`).join('\n')}
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < p.N4) {
${terms.map((_, j) => direct
    ? `    out${j}[c] = ${accumulate ? `out${j}[c] + ` : ''}red[${j * W}u + lid.x];`
    : `    part[(${j}u * p.S + s) * p.N4 + c] = red[${j * W}u + lid.x];`).join('\n')}
  }
}
`;
    k = { key, code, params: layout };
    cache.set(key, k);
  }
  const values = [rows, N4, L, S];
  if (direct) {
    engine.dispatch(k, [...inputs.map((x) => x.t), ...outs], values, [groupsX, 1]);
    return;
  }
  const part = engine.empty([nt, S, N]);
  engine.dispatch(k, [...inputs.map((x) => x.t), part], values, [groupsX, S]);
  // One thread per (term, vec4 column): the slices in order.
  const finish = kernel(`colsum4Finish-${nt}${acc}`, [{ name: 'part', access: 'read', type: 'vec4<f32>' },
    ...outs.map((_, j) => ({ name: `out${j}`, access: 'read_write' as const, type: 'vec4<f32>' as const }))], [['S', 'u32'], ['N4', 'u32']], `
  let j = i / p.N4;
  let c = i % p.N4;
  let at = j * p.S * p.N4 + c;
  var s = part[at];
  for (var k = 1u; k < p.S; k++) { s += part[at + k * p.N4]; }
${outs.map((_, j) => `  if (j == ${j}u) { out${j}[c] = ${accumulate ? `out${j}[c] + ` : ''}s; }`).join('\n')}`);
  run(engine, finish, [part, ...outs], nt * N4, [S, N4]);
  part.dispose();
}

// ---------------------------------------------------------------- elementwise

/** out = a + b (same size). */
export function add(engine: Engine, a: Tensor, b: Tensor, out = engine.empty(a.shape)): Tensor {
  check(b, a.size, 'add');
  run(engine, kernel('add', [f32('a'), f32('b'), f32('out', 'read_write')], [], '  out[i] = a[i] + b[i];'), [a, b, out], a.size);
  return out;
}

/** acc += x · alpha, in place. */
export function addInto(engine: Engine, acc: Tensor, x: Tensor, alpha = 1): Tensor {
  check(x, acc.size, 'addInto');
  run(engine, kernel('addInto', [f32('acc', 'read_write'), f32('x')], [['alpha', 'f32']], '  acc[i] = acc[i] + p.alpha * x[i];'), [acc, x], acc.size, [alpha]);
  return acc;
}

export function scale(engine: Engine, x: Tensor, alpha: number, out = engine.empty(x.shape)): Tensor {
  run(engine, kernel('scale', [f32('x'), f32('out', 'read_write')], [['alpha', 'f32']], '  out[i] = p.alpha * x[i];'), [x, out], x.size, [alpha]);
  return out;
}

export function fill(engine: Engine, out: Tensor, value: number): Tensor {
  run(engine, kernel('fill', [f32('out', 'read_write')], [['value', 'f32']], '  out[i] = p.value;'), [out], out.size, [value]);
  return out;
}

/** GELU, exact (erf) form: x·Φ(x). */
export function gelu(engine: Engine, x: Tensor, out = engine.empty(x.shape)): Tensor {
  run(engine, kernel('gelu', [f32('x'), f32('out', 'read_write')], [], '  let v = x[i];\n  out[i] = 0.5 * v * (1.0 + erf_(v * 0.70710678118654752));', ERF), [x, out], x.size);
  return out;
}

/** dx = dy · (Φ(x) + x·φ(x)). */
export function geluBackward(engine: Engine, x: Tensor, dy: Tensor, out = engine.empty(x.shape)): Tensor {
  check(dy, x.size, 'geluBackward');
  run(engine, kernel('geluBackward', [f32('x'), f32('dy'), f32('dx', 'read_write')], [],
    '  let v = x[i];\n  let cdf = 0.5 * (1.0 + erf_(v * 0.70710678118654752));\n  let pdf = 0.39894228040143268 * exp(-0.5 * v * v);\n  dx[i] = dy[i] * (cdf + v * pdf);', ERF),
  [x, dy, out], x.size);
  return out;
}

// ---------------------------------------------------------------- pixels

/**
 * uint8 pixels → float32 through a per-channel table: out[e] = table[c·256 + byte e], c = (e / plane) mod
 * channels. `bytes` holds the pixels packed four to a u32 word (little-endian, as a Uint8Array's bytes land in
 * a storage buffer). Training uploads a batch as uint8 (4× fewer bytes than float32) and normalises here; the
 * table holds the host's float32 ToTensor + Normalize values, so the result is bit-identical to normalising on
 * the host.
 */
export function normalizePixels(engine: Engine, bytes: Tensor, table: Tensor, shape: readonly number[], plane: number, channels: number): Tensor {
  const total = shape.reduce((a, b) => a * b, 1);
  check(bytes, Math.ceil(total / 4), 'normalizePixels bytes');
  check(table, 256 * channels, 'normalizePixels table');
  const out = engine.empty(shape);
  run(engine, kernel('normalizePixels', [u32('src'), f32('table'), f32('out', 'read_write')], [['total', 'u32'], ['plane', 'u32'], ['channels', 'u32']], `
  let w = src[i];
  for (var j = 0u; j < 4u; j++) {
    let e = 4u * i + j;
    if (e < p.total) {
      let c = (e / p.plane) % p.channels;
      out[e] = table[c * 256u + ((w >> (8u * j)) & 255u)];
    }
  }`), [bytes, table, out], bytes.size, [total, plane, channels]);
  return out;
}

// ---------------------------------------------------------------- reductions

/** Column sums of x [rows, N] → [N] (bias gradients); adds into `out` when accumulate. */
export function sumRows(engine: Engine, x: Tensor, rows: number, N: number, out?: Tensor, accumulate = false): Tensor {
  check(x, rows * N, 'sumRows');
  const o = out ?? engine.empty([N]);
  if (rowKernelMode(engine) !== 'thread') {
    columnSums(engine, 'sumRows', [{ t: x, b: f32('x'), rowsByN: true }], ['x[r * p.N + c]'], rows, N, [o], accumulate, undefined, ['x[r * p.N4 + c]']);
    return o;
  }
  run(engine, kernel(`sumRows${accumulate ? '-acc' : ''}`, [f32('x'), f32('out', 'read_write')], [['rows', 'u32']],
    `  var s = 0.0;\n  for (var r = 0u; r < p.rows; r++) { s += x[r * p.n + i]; }\n  out[i] = ${accumulate ? 'out[i] + ' : ''}s;`),
  [x, o], N, [rows]);
  return o;
}

const REDUCE_WG = 256;
function reduceKernel(key: string, term: string, finish: string): Kernel {
  let k = cache.get(key);
  if (k) return k;
  const layout: ParamLayout = [['n', 'u32'], ['slot', 'u32'], ['alpha', 'f32']];
  const code = () => `${paramStruct(layout)}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> part: array<f32, ${REDUCE_WG}>;
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var i = t; i < p.n; i += ${REDUCE_WG}u) { let v = x[i]; s += ${term}; }
  part[t] = s;
  workgroupBarrier();
  for (var w = ${REDUCE_WG / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { part[t] = part[t] + part[t + w]; }
    workgroupBarrier();
  }
  if (t == 0u) { ${finish} }
}
`;
  k = { key, code, params: layout };
  cache.set(key, k);
  return k;
}

/** out[slot] = alpha · Σx (one workgroup, fixed order). */
export function sumAll(engine: Engine, x: Tensor, out = engine.empty([1]), slot = 0, alpha = 1): Tensor {
  engine.dispatch(reduceKernel('sumAll', 'v', 'out[p.slot] = p.alpha * part[0];'), [x, out], [x.size, slot, alpha], [1]);
  return out;
}

/** out[slot] = Σx² (gradient norms). */
export function sumSquares(engine: Engine, x: Tensor, out: Tensor, slot: number): Tensor {
  engine.dispatch(reduceKernel('sumSquares', 'v * v', 'out[p.slot] = part[0];'), [x, out], [x.size, slot, 1], [1]);
  return out;
}

/** out[0] = sqrt(Σ parts) — the global gradient norm from per-tensor sums of squares. */
export function sqrtSum(engine: Engine, parts: Tensor, out = engine.empty([1])): Tensor {
  engine.dispatch(reduceKernel('sqrtSum', 'v', 'out[p.slot] = sqrt(part[0]);'), [parts, out], [parts.size, 0, 1], [1]);
  return out;
}

// ---------------------------------------------------------------- layernorm

/** y = (x − mean)/sqrt(var + eps)·γ + β per row; stats[2r] = mean, stats[2r+1] = rstd. */
export function layernorm(engine: Engine, x: Tensor, gamma: Tensor, beta: Tensor, rows: number, C: number, eps = 1e-5): { y: Tensor; stats: Tensor } {
  check(x, rows * C, 'layernorm');
  const y = engine.empty(x.shape);
  const stats = engine.empty([rows, 2]);
  const mode = rowKernelMode(engine);
  if (mode !== 'thread') {
    const W = rowThreads(engine, C);
    runRows(engine, rowKernel('layernorm', mode, W, [f32('x'), f32('g'), f32('b'), f32('y', 'read_write'), f32('stats', 'read_write')], [['C', 'u32'], ['eps', 'f32']], (r) => `
  let base = row * p.C;
  var s = 0.0;
  for (var c = t; c < p.C; c += W) { s += x[base + c]; }
  let mean = ${r.sum('s')} / f32(p.C);
  var v = 0.0;
  for (var c = t; c < p.C; c += W) { let d = x[base + c] - mean; v += d * d; }
  let rstd = 1.0 / sqrt(${r.sum('v')} / f32(p.C) + p.eps);
  for (var c = t; c < p.C; c += W) { y[base + c] = (x[base + c] - mean) * rstd * g[c] + b[c]; }
  if (t == 0u) {
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
  }`), [x, gamma, beta, y, stats], rows, [C, eps]);
    return { y, stats };
  }
  run(engine, kernel('layernorm', [f32('x'), f32('g'), f32('b'), f32('y', 'read_write'), f32('stats', 'read_write')], [['C', 'u32'], ['eps', 'f32']], `
  let base = i * p.C;
  var mean = 0.0;
  for (var c = 0u; c < p.C; c++) { mean += x[base + c]; }
  mean = mean / f32(p.C);
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) { let d = x[base + c] - mean; v += d * d; }
  let rstd = 1.0 / sqrt(v / f32(p.C) + p.eps);
  for (var c = 0u; c < p.C; c++) { y[base + c] = (x[base + c] - mean) * rstd * g[c] + b[c]; }
  stats[2u * i] = mean;
  stats[2u * i + 1u] = rstd;`), [x, gamma, beta, y, stats], rows, [C, eps]);
  return { y, stats };
}

export function layernormBackward(engine: Engine, dy: Tensor, x: Tensor, gamma: Tensor, stats: Tensor, rows: number, C: number,
  grads: { dgamma?: Tensor; dbeta?: Tensor; accumulate?: boolean; /** adds dx into this tensor (x's gradient so far) */ dx?: Tensor } = {}): { dx: Tensor; dgamma: Tensor; dbeta: Tensor } {
  if (grads.dx) check(grads.dx, x.size, 'layernormBackward dx');
  const dx = grads.dx ?? engine.empty(x.shape);
  // Adding into x's gradient here saves the addInto pass the residual stream would otherwise take.
  const dxAcc = grads.dx ? 'dx[base + c] + ' : '';
  const dxKey = grads.dx ? '-acc' : '';
  const mode = rowKernelMode(engine);
  const acc = grads.accumulate ?? false;
  const dgamma = grads.dgamma ?? engine.empty([C]);
  const dbeta = grads.dbeta ?? engine.empty([C]);
  if (mode !== 'thread') {
    const W = rowThreads(engine, C);
    runRows(engine, rowKernel(`layernormBackwardDx${dxKey}`, mode, W, [f32('dy'), f32('x'), f32('g'), f32('stats'), f32('dx', 'read_write')], [['C', 'u32']], (r) => `
  let base = row * p.C;
  let mean = stats[2u * row];
  let rstd = stats[2u * row + 1u];
  var sumDg = 0.0;
  var sumDgXhat = 0.0;
  for (var c = t; c < p.C; c += W) {
    let dg = dy[base + c] * g[c];
    sumDg += dg;
    sumDgXhat += dg * (x[base + c] - mean) * rstd;
  }
  let inv = 1.0 / f32(p.C);
  let tDg = ${r.sum('sumDg')};
  let tDgXhat = ${r.sum('sumDgXhat')};
  for (var c = t; c < p.C; c += W) {
    let xhat = (x[base + c] - mean) * rstd;
    dx[base + c] = ${dxAcc}rstd * (dy[base + c] * g[c] - inv * tDg - xhat * inv * tDgXhat);
  }`), [dy, x, gamma, stats, dx], rows, [C]);
    columnSums(engine, 'layernormParams', [{ t: dy, b: f32('dy'), rowsByN: true }, { t: x, b: f32('x'), rowsByN: true }, { t: stats, b: f32('stats') }],
      ['dy[r * p.N + c] * (x[r * p.N + c] - stats[2u * r]) * stats[2u * r + 1u]', 'dy[r * p.N + c]'], rows, C, [dgamma, dbeta], acc, undefined,
      ['dy[r * p.N4 + c] * (x[r * p.N4 + c] - stats[2u * r]) * stats[2u * r + 1u]', 'dy[r * p.N4 + c]']);
    return { dx, dgamma, dbeta };
  }
  run(engine, kernel(`layernormBackwardDx${dxKey}`, [f32('dy'), f32('x'), f32('g'), f32('stats'), f32('dx', 'read_write')], [['C', 'u32']], `
  let base = i * p.C;
  let mean = stats[2u * i];
  let rstd = stats[2u * i + 1u];
  var sumDg = 0.0;
  var sumDgXhat = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let dg = dy[base + c] * g[c];
    sumDg += dg;
    sumDgXhat += dg * (x[base + c] - mean) * rstd;
  }
  let inv = 1.0 / f32(p.C);
  for (var c = 0u; c < p.C; c++) {
    let xhat = (x[base + c] - mean) * rstd;
    dx[base + c] = ${dxAcc}rstd * (dy[base + c] * g[c] - inv * sumDg - xhat * inv * sumDgXhat);
  }`), [dy, x, gamma, stats, dx], rows, [C]);
  run(engine, kernel(`layernormBackwardParams${acc ? '-acc' : ''}`, [f32('dy'), f32('x'), f32('stats'), f32('dg', 'read_write'), f32('db', 'read_write')], [['rows', 'u32']], `
  var sg = 0.0;
  var sb = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    let d = dy[r * p.n + i];
    sg += d * (x[r * p.n + i] - stats[2u * r]) * stats[2u * r + 1u];
    sb += d;
  }
  dg[i] = ${acc ? 'dg[i] + ' : ''}sg;
  db[i] = ${acc ? 'db[i] + ' : ''}sb;`), [dy, x, stats, dgamma, dbeta], C, [rows]);
  return { dx, dgamma, dbeta };
}

// ---------------------------------------------------------------- attention

/** Longest row the workgroup attention kernels keep in workgroup memory (longer rows use the per-thread kernels). */
const MAX_SHARED_T = 2048;
/** Workgroup array length for rows of T: a multiple of 64, so few specialisations. */
function sharedRowSize(T: number): number {
  return Math.ceil(T / 64) * 64;
}

export interface AttentionShape {
  B: number;
  T: number;
  H: number;
  /** Head dimension; C = H·D. */
  D: number;
  causal: boolean;
}

/**
 * Which attention kernels run: 'head' (kernels/attention-head.ts, one workgroup per (batch, head): GPUs, T ≤ 128,
 * D a multiple of 4 up to 128, when the score tile and a chunk of keys fit the workgroup memory), 'tiled'
 * (kernels/attention.ts: GPUs, T ≤ 128, D a multiple of 4, down to 16 KiB of workgroup memory), 'rows' (one
 * workgroup per query row: GPUs, longer rows) or 'thread' (one thread per query row: CPU adapters).
 */
export type AttentionKernels = 'head' | 'tiled' | 'rows' | 'thread';

const attentionForced = new WeakMap<Engine, 'head' | 'tiled' | 'rows'>();
const attentionBackwardForced = new WeakMap<Engine, 'head' | 'tiled' | 'rows'>();

/** Which pass of attention: the forward (softmax and P·V) or the backward (the query and key passes). */
export type AttentionPass = 'forward' | 'backward';

/**
 * The first attention kernels to try on this engine's GPU row forms, both passes (benchmarks, tests): 'head',
 * 'tiled' (skips 'head') or 'rows' (skips both); a shape they do not take falls back down that list. Unset: the
 * default per pass (see attentionPlan).
 */
export function setAttentionKernels(engine: Engine, kernels: 'head' | 'tiled' | 'rows' | undefined): void {
  if (kernels) attentionForced.set(engine, kernels);
  else attentionForced.delete(engine);
}

/** Overrides the backward pass's first kernels (else: setAttentionKernels's, else the default). */
export function setAttentionBackwardKernels(engine: Engine, kernels: 'head' | 'tiled' | 'rows' | undefined): void {
  if (kernels) attentionBackwardForced.set(engine, kernels);
  else attentionBackwardForced.delete(engine);
}

/**
 * Default: 'head' for the forward; for the backward 'head' without a mask but 'tiled' with a causal one. The head
 * key pass gives each thread one key row, and with a causal mask key r has T − r queries, so the first warp does
 * all the work (H200, ViT-B/32 text T 77: head key pass 16.4 ms vs tiled 8.2 per step; T 32: 2.2 vs 0.9), while
 * without a mask the head kernels win both passes (T 50: 16.9 vs 18.7 ms; T 65: 7.1 vs 10.5).
 */
function attentionPlan(engine: Engine, s: AttentionShape, pass: AttentionPass = 'forward'): { kernels: AttentionKernels; plan?: TiledAttentionPlan; head?: HeadAttentionPlan } {
  if (rowKernelMode(engine) === 'thread') return { kernels: 'thread' };
  const forced = attentionForced.get(engine);
  const first = pass === 'forward' ? forced ?? 'head' : attentionBackwardForced.get(engine) ?? forced ?? (s.causal ? 'tiled' : 'head');
  const head = first === 'head' ? headAttentionPlan(engine, s.T, s.D) : undefined;
  if (head) return { kernels: 'head', head };
  const plan = first === 'rows' ? undefined : tiledAttentionPlan(engine, s.T, s.D);
  if (plan) return { kernels: 'tiled', plan };
  return { kernels: s.T <= MAX_SHARED_T ? 'rows' : 'thread' };
}

/** The attention kernels this engine runs at this shape, in this pass (default: the forward). */
export function attentionKernels(engine: Engine, s: AttentionShape, pass: AttentionPass = 'forward'): AttentionKernels {
  return attentionPlan(engine, s, pass).kernels;
}

/**
 * softmax(q·kᵀ/√D [+ causal mask])·v per head, fused, keeping the probabilities [B, H, T, T] for the backward
 * pass: per (batch, head) or tiled per block of queries on GPUs (attention-head.ts, attention.ts), else one
 * workgroup or one thread per query row.
 */
export function attention(engine: Engine, qkv: Tensor, s: AttentionShape): { out: Tensor; probs: Tensor } {
  const C = s.H * s.D;
  check(qkv, s.B * s.T * 3 * C, 'attention qkv');
  const out = engine.empty([s.B, s.T, C]);
  const probs = engine.empty([s.B, s.H, s.T, s.T]);
  const chosen = attentionPlan(engine, s);
  if (chosen.head) {
    headAttention(engine, chosen.head, qkv, out, probs, s);
    return { out, probs };
  }
  if (chosen.plan) {
    tiledAttention(engine, chosen.plan, qkv, out, probs, s);
    return { out, probs };
  }
  const mode = rowKernelMode(engine);
  if (mode !== 'thread' && s.T <= MAX_SHARED_T) {
    // One workgroup per (batch, head, query): threads over keys for the scores, over d for P·v; the row's
    // probabilities stay in workgroup memory between the two.
    const W = rowThreads(engine, Math.max(s.T, s.D), 128);
    const TP = sharedRowSize(s.T);
    runRows(engine, rowKernel(`attention${s.causal ? '-causal' : ''}-t${TP}`, mode, W, [f32('qkv'), f32('out', 'read_write'), f32('probs', 'read_write')],
      [['T', 'u32'], ['H', 'u32'], ['D', 'u32'], ['scale', 'f32']], (r) => `
  let i = row;
  let tq = i % p.T;
  let h = (i / p.T) % p.H;
  let b = i / (p.T * p.H);
  let C = p.H * p.D;
  let q = (b * p.T + tq) * 3u * C + h * p.D;
  let prow = i * p.T;
  let last = ${s.causal ? 'tq' : 'p.T - 1u'};
  var mx = -3.4e38;
  for (var j = t; j <= last; j += W) {
    let k = (b * p.T + j) * 3u * C + C + h * p.D;
    var sc = 0.0;
    for (var d = 0u; d < p.D; d++) { sc += qkv[q + d] * qkv[k + d]; }
    sc = sc * p.scale;
    ps[j] = sc;
    mx = max(mx, sc);
  }
  let rmx = ${r.max('mx')};
  var sum = 0.0;
  for (var j = t; j <= last; j += W) { let e = exp(ps[j] - rmx); ps[j] = e; sum += e; }
  let inv = 1.0 / ${r.sum('sum')};
  for (var j = t; j < p.T; j += W) {
    let pj = select(0.0, ps[j] * inv, j <= last);
    ps[j] = pj;
    probs[prow + j] = pj;
  }
  workgroupBarrier();
  let o = (b * p.T + tq) * C + h * p.D;
  for (var d = t; d < p.D; d += W) {
    var acc = 0.0;
    for (var j = 0u; j <= last; j++) { acc += ps[j] * qkv[(b * p.T + j) * 3u * C + 2u * C + h * p.D + d]; }
    out[o + d] = acc;
  }`, '', `var<workgroup> ps: array<f32, ${TP}>;`), [qkv, out, probs], s.B * s.H * s.T, [s.T, s.H, s.D, 1 / Math.sqrt(s.D)]);
    return { out, probs };
  }
  run(engine, kernel(`attention${s.causal ? '-causal' : ''}`, [f32('qkv'), f32('out', 'read_write'), f32('probs', 'read_write')],
    [['T', 'u32'], ['H', 'u32'], ['D', 'u32'], ['scale', 'f32']], `
  let t = i % p.T;
  let h = (i / p.T) % p.H;
  let b = i / (p.T * p.H);
  let C = p.H * p.D;
  let q = (b * p.T + t) * 3u * C + h * p.D;
  let prow = i * p.T;
  let last = ${s.causal ? 't' : 'p.T - 1u'};
  var mx = -3.4e38;
  for (var j = 0u; j <= last; j++) {
    let k = (b * p.T + j) * 3u * C + C + h * p.D;
    var sc = 0.0;
    for (var d = 0u; d < p.D; d++) { sc += qkv[q + d] * qkv[k + d]; }
    sc = sc * p.scale;
    probs[prow + j] = sc;
    mx = max(mx, sc);
  }
  var sum = 0.0;
  for (var j = 0u; j <= last; j++) { let e = exp(probs[prow + j] - mx); probs[prow + j] = e; sum += e; }
  let inv = 1.0 / sum;
  for (var j = 0u; j < p.T; j++) { probs[prow + j] = select(0.0, probs[prow + j] * inv, j <= last); }
  let o = (b * p.T + t) * C + h * p.D;
  for (var d = 0u; d < p.D; d++) {
    var acc = 0.0;
    for (var j = 0u; j <= last; j++) { acc += probs[prow + j] * qkv[(b * p.T + j) * 3u * C + 2u * C + h * p.D + d]; }
    out[o + d] = acc;
  }`), [qkv, out, probs], s.B * s.H * s.T, [s.T, s.H, s.D, 1 / Math.sqrt(s.D)]);
  return { out, probs };
}

/** Gradient of attention with respect to qkv, in two race-free passes (per query row, then per key row). */
export function attentionBackward(engine: Engine, dout: Tensor, qkv: Tensor, probs: Tensor, s: AttentionShape): Tensor {
  const C = s.H * s.D;
  const dqkv = engine.empty(qkv.shape);
  const chosen = attentionPlan(engine, s, 'backward');
  if (chosen.head) {
    headAttentionBackward(engine, chosen.head, dout, qkv, probs, dqkv, s);
    return dqkv;
  }
  if (chosen.plan) {
    tiledAttentionBackward(engine, chosen.plan, dout, qkv, probs, dqkv, s);
    return dqkv;
  }
  const dscores = engine.empty(probs.shape);
  const params: ParamLayout = [['T', 'u32'], ['H', 'u32'], ['D', 'u32'], ['scale', 'f32']];
  const values = [s.T, s.H, s.D, 1 / Math.sqrt(s.D)];
  const n = s.B * s.H * s.T;
  const mode = rowKernelMode(engine);
  if (mode !== 'thread' && s.T <= MAX_SHARED_T) {
    const W = rowThreads(engine, Math.max(s.T, s.D), 128);
    const TP = sharedRowSize(s.T);
    // Pass 1, one workgroup per query row: threads over keys for dP and dS, over d for dq.
    runRows(engine, rowKernel(`attentionBackwardQ-t${TP}`, mode, W, [f32('dout'), f32('qkv'), f32('probs'), f32('ds', 'read_write'), f32('dqkv', 'read_write')], params, (r) => `
  let i = row;
  let tq = i % p.T;
  let h = (i / p.T) % p.H;
  let b = i / (p.T * p.H);
  let C = p.H * p.D;
  let prow = i * p.T;
  let o = (b * p.T + tq) * C + h * p.D;
  var dot = 0.0;
  for (var j = t; j < p.T; j += W) {
    let v = (b * p.T + j) * 3u * C + 2u * C + h * p.D;
    var dp = 0.0;
    for (var d = 0u; d < p.D; d++) { dp += dout[o + d] * qkv[v + d]; }
    ps[j] = dp;
    dot += dp * probs[prow + j];
  }
  let rdot = ${r.sum('dot')};
  for (var j = t; j < p.T; j += W) {
    let dsj = probs[prow + j] * (ps[j] - rdot);
    ps[j] = dsj;
    ds[prow + j] = dsj;
  }
  workgroupBarrier();
  let q = (b * p.T + tq) * 3u * C + h * p.D;
  for (var d = t; d < p.D; d += W) {
    var acc = 0.0;
    for (var j = 0u; j < p.T; j++) { acc += ps[j] * qkv[(b * p.T + j) * 3u * C + C + h * p.D + d]; }
    dqkv[q + d] = acc * p.scale;
  }`, '', `var<workgroup> ps: array<f32, ${TP}>;`), [dout, qkv, probs, dscores, dqkv], n, values);
    // Pass 2, one thread per (key row j, d): dk_j[d] = scale · Σ_i dS_ij q_i[d], dv_j[d] = Σ_i P_ij dout_i[d].
    run(engine, kernel('attentionBackwardKV-elem', [f32('dout'), f32('qkv'), f32('probs'), f32('ds'), f32('dqkv', 'read_write')], params, `
  let d = i % p.D;
  let j = (i / p.D) % p.T;
  let h = (i / (p.D * p.T)) % p.H;
  let b = i / (p.D * p.T * p.H);
  let C = p.H * p.D;
  let bh = (b * p.H + h) * p.T * p.T;
  var dk = 0.0;
  var dv = 0.0;
  for (var r = 0u; r < p.T; r++) {
    dk += ds[bh + r * p.T + j] * qkv[(b * p.T + r) * 3u * C + h * p.D + d];
    dv += probs[bh + r * p.T + j] * dout[(b * p.T + r) * C + h * p.D + d];
  }
  let k = (b * p.T + j) * 3u * C + C + h * p.D + d;
  dqkv[k] = dk * p.scale;
  dqkv[k + C] = dv;`), [dout, qkv, probs, dscores, dqkv], n * s.D, values);
    dscores.dispose();
    return dqkv;
  }
  const index = `
  let t = i % p.T;
  let h = (i / p.T) % p.H;
  let b = i / (p.T * p.H);
  let C = p.H * p.D;
  let prow = i * p.T;`;
  // Pass 1, one thread per query row: dS = P ∘ (dP − rowsum(P ∘ dP)), dP = dout·vᵀ; dq = scale · dS·k.
  run(engine, kernel('attentionBackwardQ', [f32('dout'), f32('qkv'), f32('probs'), f32('ds', 'read_write'), f32('dqkv', 'read_write')], params, `${index}
  let o = (b * p.T + t) * C + h * p.D;
  var dot = 0.0;
  for (var j = 0u; j < p.T; j++) {
    let v = (b * p.T + j) * 3u * C + 2u * C + h * p.D;
    var dp = 0.0;
    for (var d = 0u; d < p.D; d++) { dp += dout[o + d] * qkv[v + d]; }
    ds[prow + j] = dp;
    dot += dp * probs[prow + j];
  }
  for (var j = 0u; j < p.T; j++) { ds[prow + j] = probs[prow + j] * (ds[prow + j] - dot); }
  let q = (b * p.T + t) * 3u * C + h * p.D;
  for (var d = 0u; d < p.D; d++) {
    var acc = 0.0;
    for (var j = 0u; j < p.T; j++) { acc += ds[prow + j] * qkv[(b * p.T + j) * 3u * C + C + h * p.D + d]; }
    dqkv[q + d] = acc * p.scale;
  }`), [dout, qkv, probs, dscores, dqkv], n, values);
  // Pass 2, one thread per key row j: dk_j = scale · Σ_i dS_ij q_i, dv_j = Σ_i P_ij dout_i.
  run(engine, kernel('attentionBackwardKV', [f32('dout'), f32('qkv'), f32('probs'), f32('ds'), f32('dqkv', 'read_write')], params, `${index}
  let j = t;
  let bh = (b * p.H + h) * p.T * p.T;
  let k = (b * p.T + j) * 3u * C + C + h * p.D;
  for (var d = 0u; d < p.D; d++) {
    var dk = 0.0;
    var dv = 0.0;
    for (var r = 0u; r < p.T; r++) {
      dk += ds[bh + r * p.T + j] * qkv[(b * p.T + r) * 3u * C + h * p.D + d];
      dv += probs[bh + r * p.T + j] * dout[(b * p.T + r) * C + h * p.D + d];
    }
    dqkv[k + d] = dk * p.scale;
    dqkv[k + C + d] = dv;
  }`), [dout, qkv, probs, dscores, dqkv], n, values);
  dscores.dispose();
  return dqkv;
}

// ---------------------------------------------------------------- embeddings, gathers, patches

/** out[r, c] = table[tokens[r], c] (+ pos[r mod T, c]). */
export function embedding(engine: Engine, tokens: Tensor, table: Tensor, C: number, pos?: { table: Tensor; T: number }): Tensor {
  const rows = tokens.size;
  const out = engine.empty([rows, C]);
  if (pos) {
    run(engine, kernel('embeddingPos', [u32('tok'), f32('table'), f32('pos'), f32('out', 'read_write')], [['C', 'u32'], ['T', 'u32']],
      '  let r = i / p.C;\n  let c = i % p.C;\n  out[i] = table[tok[r] * p.C + c] + pos[(r % p.T) * p.C + c];'), [tokens, table, pos.table, out], rows * C, [C, pos.T]);
  } else {
    run(engine, kernel('embedding', [u32('tok'), f32('table'), f32('out', 'read_write')], [['C', 'u32']],
      '  let r = i / p.C;\n  let c = i % p.C;\n  out[i] = table[tok[r] * p.C + c];'), [tokens, table, out], rows * C, [C]);
  }
  return out;
}

/**
 * The inverse of a token batch, built on the CPU where the tokens come from: positions grouped by token (tokens
 * ascending, positions ascending within each), so the scatter-add gradient is a race-free, fixed-order gather.
 * Each token's positions are also cut into segments of at most EMBEDDING_SEGMENT: a padded caption batch holds
 * one token (the padding id) at most of its positions, and one thread summing them all in a row was the whole
 * cost of the old kernel (a 15,000-long chain of dependent loads at ViT-B/32's batch of 256).
 */
export interface TokenIndex {
  tokens: Tensor;
  /** Distinct tokens, ascending. */
  unique: Tensor;
  /** starts[u]..starts[u+1] index into `positions` for unique token u. */
  starts: Tensor;
  positions: Tensor;
  /** segments[k]..segments[k+1] index into `positions` for segment k (no segment spans two tokens). */
  segments: Tensor;
  /** firstSegment[u]..firstSegment[u+1] are unique token u's segments. */
  firstSegment: Tensor;
  uniqueCount: number;
  segmentCount: number;
  dispose(): void;
}

/** Positions per segment of the embedding gradient's first pass. */
export const EMBEDDING_SEGMENT = 64;

export function tokenIndex(engine: Engine, tokens: ArrayLike<number>, shape: readonly number[] = [tokens.length]): TokenIndex {
  // Counting sort: ids ascending, each id's positions in increasing order (linear in the batch).
  const counts = new Map<number, number>();
  for (let i = 0; i < tokens.length; i++) counts.set(tokens[i]!, (counts.get(tokens[i]!) ?? 0) + 1);
  const unique = Uint32Array.from([...counts.keys()].sort((a, b) => a - b));
  const starts = new Uint32Array(unique.length + 1);
  const next = new Map<number, number>();
  const firstSegment = new Uint32Array(unique.length + 1);
  const segments: number[] = [];
  for (let u = 0; u < unique.length; u++) {
    const n = counts.get(unique[u]!)!;
    next.set(unique[u]!, starts[u]!);
    starts[u + 1] = starts[u]! + n;
    firstSegment[u] = segments.length;
    for (let k = 0; k < n; k += EMBEDDING_SEGMENT) segments.push(starts[u]! + k);
  }
  firstSegment[unique.length] = segments.length;
  segments.push(tokens.length);
  const positions = new Uint32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const at = next.get(tokens[i]!)!;
    positions[at] = i;
    next.set(tokens[i]!, at + 1);
  }
  const t = {
    tokens: engine.tensor(tokens, shape, 'u32'),
    unique: engine.tensor(unique, [unique.length], 'u32'),
    starts: engine.tensor(starts, [starts.length], 'u32'),
    positions: engine.tensor(positions, [positions.length], 'u32'),
    segments: engine.tensor(segments, [segments.length], 'u32'),
    firstSegment: engine.tensor(firstSegment, [firstSegment.length], 'u32'),
    uniqueCount: unique.length,
    segmentCount: segments.length - 1,
    dispose() {
      for (const x of [t.tokens, t.unique, t.starts, t.positions, t.segments, t.firstSegment]) x.dispose();
    },
  };
  return t;
}

/**
 * How the token-embedding gradient is summed: 'segments' (the default: one thread per (segment, channel group)
 * sums ≤ EMBEDDING_SEGMENT rows, then one per (token, channel group) adds its segments in order) or 'direct' (one
 * thread per (token, channel) sums all of the token's rows: the kernel before, kept for A/B measurements).
 */
export type EmbeddingBackwardKernels = 'segments' | 'direct';
const embeddingForced = new WeakMap<Engine, EmbeddingBackwardKernels>();

export function setEmbeddingBackwardKernels(engine: Engine, kernels: EmbeddingBackwardKernels | undefined): void {
  if (kernels) embeddingForced.set(engine, kernels);
  else embeddingForced.delete(engine);
}

export function embeddingBackwardKernels(engine: Engine): EmbeddingBackwardKernels {
  return embeddingForced.get(engine) ?? 'segments';
}

/**
 * dtable (cleared here unless accumulate) += scatter of dout rows onto their tokens' rows. Every token's sum runs
 * over its positions in increasing order; the 'segments' form adds them in segments of EMBEDDING_SEGMENT (the
 * same order, grouped), so the two forms differ by f32 rounding only.
 */
export function embeddingBackward(engine: Engine, dout: Tensor, index: TokenIndex, vocab: number, C: number, dtable?: Tensor, accumulate = false): Tensor {
  const out = dtable ?? engine.empty([vocab, C]);
  if (!accumulate) engine.clear(out);
  if (embeddingBackwardKernels(engine) === 'direct') {
    run(engine, kernel('embeddingBackward', [f32('dout'), u32('uniq'), u32('starts'), u32('pos'), f32('dt', 'read_write')], [['C', 'u32']], `
  let u = i / p.C;
  let c = i % p.C;
  var s = 0.0;
  for (var k = starts[u]; k < starts[u + 1u]; k++) { s += dout[pos[k] * p.C + c]; }
  let o = uniq[u] * p.C + c;
  dt[o] = dt[o] + s;`), [dout, index.unique, index.starts, index.positions, out], index.uniqueCount * C, [C]);
    return out;
  }
  // Channels four at a time where rows are whole vec4s.
  const v4 = C % 4 === 0;
  const V = v4 ? 'vec4<f32>' : 'f32';
  const CV = v4 ? C / 4 : C;
  const part = engine.empty([index.segmentCount, C]);
  // Four independent loads in flight per step; the sum still runs in position order.
  run(engine, kernel(`embeddingBackward-seg${v4 ? '-v4' : ''}`, [{ name: 'dout', access: 'read', type: V }, u32('seg'), u32('pos'), { name: 'part', access: 'read_write', type: V }], [['CV', 'u32']], `
  let k = i / p.CV;
  let c = i % p.CV;
  let e = seg[k + 1u];
  var s = ${V}(0.0);
  var r = seg[k];
  for (; r + 4u <= e; r += 4u) {
    let x0 = dout[pos[r] * p.CV + c];
    let x1 = dout[pos[r + 1u] * p.CV + c];
    let x2 = dout[pos[r + 2u] * p.CV + c];
    let x3 = dout[pos[r + 3u] * p.CV + c];
    s += x0;
    s += x1;
    s += x2;
    s += x3;
  }
  for (; r < e; r++) { s += dout[pos[r] * p.CV + c]; }
  part[i] = s;`), [dout, index.segments, index.positions, part], index.segmentCount * CV, [CV]);
  run(engine, kernel(`embeddingBackward-sum${v4 ? '-v4' : ''}`, [{ name: 'part', access: 'read', type: V }, u32('uniq'), u32('first'), { name: 'dt', access: 'read_write', type: V }], [['CV', 'u32']], `
  let u = i / p.CV;
  let c = i % p.CV;
  let e = first[u + 1u];
  var s = ${V}(0.0);
  var k = first[u];
  for (; k + 4u <= e; k += 4u) {
    let x0 = part[k * p.CV + c];
    let x1 = part[(k + 1u) * p.CV + c];
    let x2 = part[(k + 2u) * p.CV + c];
    let x3 = part[(k + 3u) * p.CV + c];
    s += x0;
    s += x1;
    s += x2;
    s += x3;
  }
  for (; k < e; k++) { s += part[k * p.CV + c]; }
  let o = uniq[u] * p.CV + c;
  dt[o] = dt[o] + s;`), [part, index.unique, index.firstSegment, out], index.uniqueCount * CV, [CV]);
  part.dispose();
  return out;
}

/** dpos[t, c] (+)= Σ_b dout[b, t, c] — the positional embedding's gradient. */
export function positionalBackward(engine: Engine, dout: Tensor, B: number, T: number, C: number, dpos?: Tensor, accumulate = false): Tensor {
  const out = dpos ?? engine.empty([T, C]);
  run(engine, kernel(`positionalBackward${accumulate ? '-acc' : ''}`, [f32('dout'), f32('dp', 'read_write')], [['B', 'u32']], `
  var s = 0.0;
  for (var b = 0u; b < p.B; b++) { s += dout[b * p.n + i]; }
  dp[i] = ${accumulate ? 'dp[i] + ' : ''}s;`), [dout, out], T * C, [B]);
  return out;
}

/** out[b, c] = x[b, idx[b], c] (EOT pooling of the text tower). */
export function gatherRows(engine: Engine, x: Tensor, idx: Tensor, B: number, T: number, C: number): Tensor {
  check(x, B * T * C, 'gatherRows');
  const out = engine.empty([B, C]);
  run(engine, kernel('gatherRows', [f32('x'), u32('idx'), f32('out', 'read_write')], [['T', 'u32'], ['C', 'u32']],
    '  let b = i / p.C;\n  out[i] = x[(b * p.T + idx[b]) * p.C + i % p.C];'), [x, idx, out], B * C, [T, C]);
  return out;
}

export function gatherRowsBackward(engine: Engine, dout: Tensor, idx: Tensor, B: number, T: number, C: number): Tensor {
  const dx = engine.zeros([B, T, C]);
  run(engine, kernel('gatherRowsBackward', [f32('dout'), u32('idx'), f32('dx', 'read_write')], [['T', 'u32'], ['C', 'u32']],
    '  let b = i / p.C;\n  dx[(b * p.T + idx[b]) * p.C + i % p.C] = dout[i];'), [dout, idx, dx], B * C, [T, C]);
  return dx;
}

/**
 * Patch extraction for a patch-embedding conv with stride = kernel = P: images [B, Ch, H, W] →
 * [B, (H/P)·(W/P), Ch·P·P], each patch flattened as (channel, y, x) like a PyTorch conv weight [out, Ch, P, P].
 * The patch embedding is then a matmul with the flattened weight (transposed). Images need no gradient.
 */
export function im2col(engine: Engine, images: Tensor, B: number, Ch: number, H: number, W: number, P: number): Tensor {
  check(images, B * Ch * H * W, 'im2col');
  const gh = Math.floor(H / P);
  const gw = Math.floor(W / P);
  const K = Ch * P * P;
  const out = engine.empty([B, gh * gw, K]);
  run(engine, kernel('im2col', [f32('img'), f32('out', 'read_write')], [['Ch', 'u32'], ['H', 'u32'], ['W', 'u32'], ['P', 'u32'], ['gw', 'u32'], ['L', 'u32']], `
  let K = p.Ch * p.P * p.P;
  let k = i % K;
  let l = (i / K) % p.L;
  let b = i / (K * p.L);
  let ch = k / (p.P * p.P);
  let py = (k / p.P) % p.P;
  let px = k % p.P;
  let y = (l / p.gw) * p.P + py;
  let x = (l % p.gw) * p.P + px;
  out[i] = img[((b * p.Ch + ch) * p.H + y) * p.W + x];`), [images, out], B * gh * gw * K, [Ch, H, W, P, gw, gh * gw]);
  return out;
}

// ---------------------------------------------------------------- CLIP head

/** y = x/‖x‖ per row; norms kept for the backward pass. */
export function l2normalize(engine: Engine, x: Tensor, rows: number, C: number, eps = 1e-12): { y: Tensor; norms: Tensor } {
  const y = engine.empty(x.shape);
  const norms = engine.empty([rows]);
  const mode = rowKernelMode(engine);
  if (mode !== 'thread') {
    const W = rowThreads(engine, C);
    runRows(engine, rowKernel('l2normalize', mode, W, [f32('x'), f32('y', 'read_write'), f32('norms', 'read_write')], [['C', 'u32'], ['eps', 'f32']], (r) => `
  let base = row * p.C;
  var s = 0.0;
  for (var c = t; c < p.C; c += W) { s += x[base + c] * x[base + c]; }
  let nrm = max(sqrt(${r.sum('s')}), p.eps);
  for (var c = t; c < p.C; c += W) { y[base + c] = x[base + c] / nrm; }
  if (t == 0u) { norms[row] = nrm; }`), [x, y, norms], rows, [C, eps]);
    return { y, norms };
  }
  run(engine, kernel('l2normalize', [f32('x'), f32('y', 'read_write'), f32('norms', 'read_write')], [['C', 'u32'], ['eps', 'f32']], `
  let base = i * p.C;
  var s = 0.0;
  for (var c = 0u; c < p.C; c++) { s += x[base + c] * x[base + c]; }
  let nrm = max(sqrt(s), p.eps);
  for (var c = 0u; c < p.C; c++) { y[base + c] = x[base + c] / nrm; }
  norms[i] = nrm;`), [x, y, norms], rows, [C, eps]);
  return { y, norms };
}

/** dx = (dy − y·(y·dy))/‖x‖. */
export function l2normalizeBackward(engine: Engine, dy: Tensor, y: Tensor, norms: Tensor, rows: number, C: number): Tensor {
  const dx = engine.empty(y.shape);
  const mode = rowKernelMode(engine);
  if (mode !== 'thread') {
    const W = rowThreads(engine, C);
    runRows(engine, rowKernel('l2normalizeBackward', mode, W, [f32('dy'), f32('y'), f32('norms'), f32('dx', 'read_write')], [['C', 'u32']], (r) => `
  let base = row * p.C;
  var s = 0.0;
  for (var c = t; c < p.C; c += W) { s += y[base + c] * dy[base + c]; }
  let d = ${r.sum('s')};
  let inv = 1.0 / norms[row];
  for (var c = t; c < p.C; c += W) { dx[base + c] = (dy[base + c] - y[base + c] * d) * inv; }`), [dy, y, norms, dx], rows, [C]);
    return dx;
  }
  run(engine, kernel('l2normalizeBackward', [f32('dy'), f32('y'), f32('norms'), f32('dx', 'read_write')], [['C', 'u32']], `
  let base = i * p.C;
  var d = 0.0;
  for (var c = 0u; c < p.C; c++) { d += y[base + c] * dy[base + c]; }
  let inv = 1.0 / norms[i];
  for (var c = 0u; c < p.C; c++) { dx[base + c] = (dy[base + c] - y[base + c] * d) * inv; }`), [dy, y, norms, dx], rows, [C]);
  return dx;
}

/** out = exp(s[0])·x — CLIP's learnable logit scale, kept on the GPU (no readback). */
export function scaleByExp(engine: Engine, x: Tensor, s: Tensor, maxLogScale = Infinity): Tensor {
  const out = engine.empty(x.shape);
  run(engine, kernel('scaleByExp', [f32('x'), f32('s'), f32('out', 'read_write')], [['maxLog', 'f32']],
    '  out[i] = exp(min(s[0], p.maxLog)) * x[i];'), [x, s, out], x.size, [Math.min(maxLogScale, 3.4e38)]);
  return out;
}

/** Gradients of out = exp(s)·x: dx = exp(s)·dout, ds = Σ dout·out. */
export function scaleByExpBackward(engine: Engine, dout: Tensor, out: Tensor, s: Tensor, maxLogScale = Infinity): { dx: Tensor; ds: Tensor } {
  const dx = engine.empty(out.shape);
  const prod = engine.empty(out.shape);
  run(engine, kernel('scaleByExpBackward', [f32('dout'), f32('out'), f32('s'), f32('dx', 'read_write'), f32('prod', 'read_write')], [['maxLog', 'f32']],
    '  dx[i] = exp(min(s[0], p.maxLog)) * dout[i];\n  prod[i] = dout[i] * out[i];'), [dout, out, s, dx, prod], out.size, [Math.min(maxLogScale, 3.4e38)]);
  const ds = sumAll(engine, prod);
  prod.dispose();
  return { dx, ds };
}

/**
 * CLIP's symmetric contrastive loss for logits [N, N] (image i ↔ text i): (CE(rows) + CE(columns))/2, mean over
 * N. Returns the loss [1] and its gradient (fused: the loss is where backward starts), scaled by `gradScale`.
 */
export function clipLoss(engine: Engine, logits: Tensor, N: number, gradScale = 1): { loss: Tensor; dlogits: Tensor } {
  check(logits, N * N, 'clipLoss');
  const lse = engine.empty([2 * N]);
  const terms = engine.empty([2 * N]);
  const mode = rowKernelMode(engine);
  if (mode !== 'thread') {
    const W = rowThreads(engine, N);
    runRows(engine, rowKernel('clipLossLse', mode, W, [f32('z'), f32('lse', 'read_write'), f32('terms', 'read_write')], [['N', 'u32']], (r) => `
  let col = row >= p.N;
  let rr = select(row, row - p.N, col);
  let stride = select(p.N, 1u, col);
  let step = select(1u, p.N, col);
  let start = rr * stride;
  var mx = -3.4e38;
  for (var k = t; k < p.N; k += W) { mx = max(mx, z[start + k * step]); }
  let rmx = ${r.max('mx')};
  var s = 0.0;
  for (var k = t; k < p.N; k += W) { s += exp(z[start + k * step] - rmx); }
  let l = rmx + log(${r.sum('s')});
  if (t == 0u) {
    lse[row] = l;
    terms[row] = l - z[rr * p.N + rr];
  }`), [logits, lse, terms], 2 * N, [N]);
  } else {
  run(engine, kernel('clipLossLse', [f32('z'), f32('lse', 'read_write'), f32('terms', 'read_write')], [['N', 'u32']], `
  let col = i >= p.N;
  let r = select(i, i - p.N, col);
  let stride = select(p.N, 1u, col);
  let step = select(1u, p.N, col);
  let start = r * stride;
  var mx = -3.4e38;
  for (var k = 0u; k < p.N; k++) { mx = max(mx, z[start + k * step]); }
  var s = 0.0;
  for (var k = 0u; k < p.N; k++) { s += exp(z[start + k * step] - mx); }
  let l = mx + log(s);
  lse[i] = l;
  terms[i] = l - z[r * p.N + r];`), [logits, lse, terms], 2 * N, [N]);
  }
  const loss = sumAll(engine, terms, engine.empty([1]), 0, 1 / (2 * N));
  const dlogits = engine.empty([N, N]);
  run(engine, kernel('clipLossGrad', [f32('z'), f32('lse'), f32('dz', 'read_write')], [['N', 'u32'], ['scale', 'f32']], `
  let r = i / p.N;
  let c = i % p.N;
  let eye = select(0.0, 1.0, r == c);
  dz[i] = p.scale * ((exp(z[i] - lse[r]) - eye) + (exp(z[i] - lse[p.N + c]) - eye));`), [logits, lse, dlogits], N * N, [N, gradScale / (2 * N)]);
  lse.dispose();
  terms.dispose();
  return { loss, dlogits };
}

/** Mean softmax cross-entropy of logits [rows, V] against targets (u32 [rows]); fused gradient ·gradScale. */
export function crossEntropy(engine: Engine, logits: Tensor, targets: Tensor, rows: number, V: number, gradScale = 1): { loss: Tensor; dlogits: Tensor } {
  check(logits, rows * V, 'crossEntropy');
  const losses = engine.empty([rows]);
  const dlogits = engine.empty([rows, V]);
  const mode = rowKernelMode(engine);
  if (mode !== 'thread') {
    const W = rowThreads(engine, V);
    runRows(engine, rowKernel('crossEntropy', mode, W, [f32('z'), u32('targets'), f32('losses', 'read_write'), f32('dz', 'read_write')], [['V', 'u32'], ['scale', 'f32']], (r) => `
  let base = row * p.V;
  var mx = -3.4e38;
  for (var k = t; k < p.V; k += W) { mx = max(mx, z[base + k]); }
  let rmx = ${r.max('mx')};
  var s = 0.0;
  for (var k = t; k < p.V; k += W) { s += exp(z[base + k] - rmx); }
  let lse = rmx + log(${r.sum('s')});
  let tg = targets[row];
  if (t == 0u) { losses[row] = lse - z[base + tg]; }
  for (var k = t; k < p.V; k += W) { dz[base + k] = p.scale * (exp(z[base + k] - lse) - select(0.0, 1.0, k == tg)); }`),
    [logits, targets, losses, dlogits], rows, [V, gradScale / rows]);
  } else {
  run(engine, kernel('crossEntropy', [f32('z'), u32('targets'), f32('losses', 'read_write'), f32('dz', 'read_write')], [['V', 'u32'], ['scale', 'f32']], `
  let base = i * p.V;
  var mx = -3.4e38;
  for (var k = 0u; k < p.V; k++) { mx = max(mx, z[base + k]); }
  var s = 0.0;
  for (var k = 0u; k < p.V; k++) { s += exp(z[base + k] - mx); }
  let lse = mx + log(s);
  let t = targets[i];
  losses[i] = lse - z[base + t];
  for (var k = 0u; k < p.V; k++) { dz[base + k] = p.scale * (exp(z[base + k] - lse) - select(0.0, 1.0, k == t)); }`),
  [logits, targets, losses, dlogits], rows, [V, gradScale / rows]);
  }
  const loss = sumAll(engine, losses, engine.empty([1]), 0, 1 / rows);
  losses.dispose();
  return { loss, dlogits };
}

// ---------------------------------------------------------------- optimizer

export interface AdamWSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay for this tensor: 0 for the ones the mask excludes (gains, biases, logit scale…). */
  weightDecay: number;
  /** 1-based step count, for the bias corrections. */
  step: number;
  /** Clip the global gradient norm to this (with `norm` given). */
  maxNorm?: number;
}

/**
 * Fused AdamW (torch.optim.AdamW semantics): p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + eps). With a global-norm tensor
 * the gradient is first scaled by min(1, maxNorm/(norm + 1e-6)) (torch's clip_grad_norm_), read on the GPU.
 */
export function adamw(engine: Engine, param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamWSettings, norm?: Tensor): void {
  check(grad, param.size, 'adamw grad');
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  const clip = norm && o.maxNorm !== undefined;
  const normBuf = clip ? norm : grad; // unused binding when not clipping (kept for one layout)
  run(engine, kernel(`adamw${clip ? '-clip' : ''}`, [f32('param', 'read_write'), f32('grad'), f32('m', 'read_write'), f32('v', 'read_write'), f32('norm')],
    [['lr', 'f32'], ['b1', 'f32'], ['b2', 'f32'], ['eps', 'f32'], ['wd', 'f32'], ['bc1', 'f32'], ['bc2', 'f32'], ['maxNorm', 'f32']], `
  var g = grad[i];
  ${clip ? 'g = g * min(1.0, p.maxNorm / (norm[0] + 1e-6));' : 'let unused = norm[0];'}
  let mi = p.b1 * m[i] + (1.0 - p.b1) * g;
  let vi = p.b2 * v[i] + (1.0 - p.b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let mhat = mi / p.bc1;
  let vhat = vi / p.bc2;
  param[i] = param[i] * (1.0 - p.lr * p.wd) - p.lr * mhat / (sqrt(vhat) + p.eps);`),
  [param, grad, m, v, normBuf], param.size, [o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, bc1, bc2, o.maxNorm ?? 0]);
}

/** Global L2 norm of a set of gradients, as a [1] tensor on the GPU. */
export function gradNorm(engine: Engine, grads: readonly Tensor[]): Tensor {
  const parts = engine.empty([grads.length]);
  grads.forEach((g, k) => sumSquares(engine, g, parts, k));
  const norm = sqrtSum(engine, parts);
  parts.dispose();
  return norm;
}
