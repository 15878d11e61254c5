/**
 * Reference checks of the engine's kernels against the float64 CPU reference, as plain functions that run
 * wherever an Engine runs: the Node tests, the headless-Chromium tests (through page.evaluate) and, in the
 * app, a quick self-test of a user's device. Each check returns its worst error and the tolerance it used.
 */
import type { Engine } from './engine.ts';
import { matmul, tiledConfigError, TILED_DEFAULT, type MatmulConfig } from './kernels/matmul.ts';
import { setTiledAttentionMemory, tiledAttentionPlan } from './kernels/attention.ts';
import { headAttentionPlan } from './kernels/attention-head.ts';
import * as ops from './kernels/ops.ts';
import * as ref from './reference.ts';
import { matmulRef } from './reference.ts';
import { Rng } from '../util/random.ts';

export interface CheckResult {
  name: string;
  maxError: number;
  tolerance: number;
  ok: boolean;
}

/**
 * f32 tolerance: |gpu − ref| ≤ atol + rtol·|ref|, with the error normalised by that bound. Sums of K products
 * of N(0,1) values carry rounding of order √K·2⁻²⁴·|terms|, far below these bounds.
 */
export const F32_TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

export function compare(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = F32_TOLERANCE): CheckResult {
  if (got.length !== want.length) return { name: `${name} (length ${got.length} ≠ ${want.length})`, maxError: Infinity, tolerance: 1, ok: false };
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const bound = tol.atol + tol.rtol * Math.abs(want[i]!);
    const e = Math.abs(got[i]! - want[i]!) / bound;
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return { name, maxError: worst, tolerance: 1, ok: worst <= 1 };
}

export function randomArray(rng: Rng, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

/** Shapes that do and do not divide the tile sizes (4, 16, 64, 128), batched and broadcast. */
export const MATMUL_SHAPES: readonly { M: number; N: number; K: number; batch: number; broadcastB?: boolean }[] = [
  { M: 1, N: 1, K: 1, batch: 1 },
  { M: 5, N: 7, K: 3, batch: 1 },
  { M: 8, N: 8, K: 8, batch: 1 },
  { M: 33, N: 65, K: 17, batch: 2 },
  { M: 64, N: 128, K: 36, batch: 3 },
  { M: 77, N: 77, K: 64, batch: 2 },
  { M: 130, N: 132, K: 20, batch: 1 },
  { M: 12, N: 20, K: 16, batch: 3, broadcastB: true },
];

export async function checkMatmul(engine: Engine, config?: MatmulConfig, seed = 1, splits?: number, unroll?: boolean): Promise<CheckResult[]> {
  const rng = new Rng(seed);
  const results: CheckResult[] = [];
  engine.beginScope();
  try {
    for (const s of MATMUL_SHAPES) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = randomArray(rng, s.batch * s.M * s.K);
          const b = randomArray(rng, (s.broadcastB ? 1 : s.batch) * s.K * s.N);
          const bias = randomArray(rng, s.N);
          const c0 = randomArray(rng, s.batch * s.M * s.N);
          const strideB = s.broadcastB ? 0 : undefined;
          const name = `matmul ${s.batch}×${s.M}×${s.N}×${s.K}${transA ? ' Aᵀ' : ''}${transB ? ' Bᵀ' : ''}${s.broadcastB ? ' B broadcast' : ''}${splits ? ` split ${splits}` : ''}`;
          const ta = engine.tensor(a);
          const tb = engine.tensor(b);
          const plain = matmul(engine, ta, tb, s.M, s.N, s.K, { transA, transB, batch: s.batch, strideB, config, splits, unroll });
          const withBias = matmul(engine, ta, tb, s.M, s.N, s.K, { transA, transB, batch: s.batch, strideB, config, splits, unroll, bias: engine.tensor(bias), alpha: 0.5 });
          const acc = engine.tensor(c0);
          matmul(engine, ta, tb, s.M, s.N, s.K, { transA, transB, batch: s.batch, strideB, config, splits, unroll, out: acc, accumulate: true });
          const ref = matmulRef(a, b, s.M, s.N, s.K, { transA, transB, batch: s.batch, strideB });
          const refBias = matmulRef(a, b, s.M, s.N, s.K, { transA, transB, batch: s.batch, strideB, bias, alpha: 0.5 });
          results.push(compare(name, await engine.readF32(plain), ref));
          results.push(compare(`${name} ·0.5 + bias`, await engine.readF32(withBias), refBias));
          results.push(compare(`${name} accumulate`, await engine.readF32(acc), ref.map((v, i) => v + c0[i]!)));
        }
      }
    }
  } finally {
    engine.endScope();
  }
  return results;
}

/**
 * The fused matmul epilogues the residual blocks use (nn.ts Tape.mlp / linearResidual), for one kernel (default:
 * the planner's) and split count: bias + GELU written beside the product (Aᵀ-free, Bᵀ: the MLP's first layer),
 * accumulate + bias (the residual add), and the product times GELU'(X) (the MLP's hidden gradient, nn and nt).
 */
export async function checkMatmulEpilogues(engine: Engine, config?: MatmulConfig, seed = 1, splits?: number, unroll?: boolean): Promise<CheckResult[]> {
  const rng = new Rng(seed);
  const results: CheckResult[] = [];
  engine.beginScope();
  try {
    for (const s of [{ M: 5, N: 7, K: 3 }, { M: 33, N: 65, K: 17 }, { M: 64, N: 128, K: 36 }, { M: 130, N: 132, K: 20 }]) {
      const o = { config, splits, unroll };
      const shape = `${s.M}×${s.N}×${s.K}${splits ? ` split ${splits}` : ''}`;
      const a = randomArray(rng, s.M * s.K);
      const b = randomArray(rng, s.K * s.N);
      const bias = randomArray(rng, s.N);
      const c0 = randomArray(rng, s.M * s.N);
      const x = randomArray(rng, s.M * s.N, 2.5);
      const [ta, tb, tbias] = [engine.tensor(a), engine.tensor(b), engine.tensor(bias)];
      // bias + GELU (B transposed, as Linear weights are)
      const g = engine.empty([s.M, s.N]);
      const pre = matmul(engine, ta, tb, s.M, s.N, s.K, { ...o, transB: true, bias: tbias, geluOut: g });
      const refPre = matmulRef(a, b, s.M, s.N, s.K, { transB: true, bias });
      results.push(compare(`matmul ${shape} Bᵀ + bias, GELU fused: pre-activation`, await engine.readF32(pre), refPre));
      results.push(compare(`matmul ${shape} Bᵀ + bias, GELU fused: activation`, await engine.readF32(g), ref.geluRef(refPre)));
      // residual + (A·Bᵀ + bias)
      const acc = engine.tensor(c0);
      matmul(engine, ta, tb, s.M, s.N, s.K, { ...o, transB: true, bias: tbias, out: acc, accumulate: true });
      results.push(compare(`matmul ${shape} Bᵀ + bias accumulated (residual)`, await engine.readF32(acc), refPre.map((v, i) => c0[i]! + v)));
      // (A·B) ⊙ GELU'(X), with B as stored (nn) and transposed
      for (const transB of [false, true]) {
        const d = matmul(engine, ta, tb, s.M, s.N, s.K, { ...o, transB, geluGrad: engine.tensor(x) });
        const want = ref.geluBackwardRef(x, matmulRef(a, b, s.M, s.N, s.K, { transB }));
        results.push(compare(`matmul ${shape}${transB ? ' Bᵀ' : ''} ⊙ GELU'(X) fused`, await engine.readF32(d), want));
      }
    }
  } finally {
    engine.endScope();
  }
  return results;
}

/** Every check, for a device self-test (bench/gpu-check.ts runs it on real GPUs): every row-kernel form the device has. */
export async function allChecks(engine: Engine): Promise<CheckResult[]> {
  const results = [...(await checkMatmul(engine)), ...(await checkMatmulEpilogues(engine))];
  for (const mode of ops.rowKernelModes(engine)) results.push(...(await checkOps(engine, 11, mode)));
  for (const config of MATMUL_CONFIGS_TO_CHECK) {
    if (config.kind === 'tiled' && tiledConfigError(config, engine)) continue;
    results.push(...(await checkMatmul(engine, config, 5)));
    results.push(...(await checkMatmulEpilogues(engine, config, 5)));
  }
  // Split-K (3 slices: a full one, a full one and a short last one for most K) on the default kernel.
  results.push(...(await checkMatmul(engine, TILED_DEFAULT, 6, 3)));
  results.push(...(await checkMatmulEpilogues(engine, TILED_DEFAULT, 6, 3)));
  results.push(...(await checkMatmul(engine, { kind: 'tiled', BM: 32, BN: 32, BK: 4, TM: 4, TN: 4, db: true }, 7, 2)));
  return results;
}

/** Every kernel shape the autotuner may pick (bench/gpu-suite.ts), so a device self-test covers them all. */
export const MATMUL_CONFIGS_TO_CHECK: MatmulConfig[] = [
  { kind: 'reg', wgX: 8, wgY: 8 },
  { kind: 'reg', wgX: 16, wgY: 16 },
  { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 },
  { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 },
  { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, db: true },
  { kind: 'tiled', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, db: true },
  { kind: 'tiled', BM: 64, BN: 128, BK: 8, TM: 8, TN: 8, db: true },
  { kind: 'tiled', BM: 128, BN: 64, BK: 8, TM: 8, TN: 8, db: true },
  { kind: 'tiled', BM: 64, BN: 64, BK: 8, TM: 4, TN: 4, db: true },
  { kind: 'tiled', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, db: true },
];

/**
 * Every other kernel, forward and backward, against the reference, at sizes that are not multiples of the
 * workgroup size (64) or of 4, with rows that do and do not fill a workgroup, and rows longer than one
 * workgroup's threads (several elements per thread in the workgroup-per-row forms). `mode` forces a row-kernel
 * form (ops.rowKernelModes); by default the engine's own; check names then end in [mode].
 */
export interface CheckOpsOptions {
  /**
   * 'quick': of CLIP's attention shapes only one image-sized and one text-sized case (every kernel variant still
   * runs on them) — for CPU adapters in the test suite, where SwiftShader compiles and runs the full set for minutes.
   * Default 'all' (bench/gpu-check.ts on a real GPU).
   */
  attentionShapes?: 'all' | 'quick';
}

export async function checkOps(engine: Engine, seed = 11, mode?: ops.RowKernelMode, options: CheckOpsOptions = {}): Promise<CheckResult[]> {
  if (!mode) return checkOpsNow(engine, seed, options);
  const before = ops.rowKernelMode(engine);
  ops.setRowKernelMode(engine, mode);
  try {
    return (await checkOpsNow(engine, seed, options)).map((r) => ({ ...r, name: `${r.name} [${mode}]` }));
  } finally {
    ops.setRowKernelMode(engine, before);
  }
}

async function checkOpsNow(engine: Engine, seed: number, options: CheckOpsOptions): Promise<CheckResult[]> {
  const rng = new Rng(seed);
  const out: CheckResult[] = [];
  const rand = (n: number, scale = 1) => randomArray(rng, n, scale);
  const read = (t: Parameters<Engine['readF32']>[0]) => engine.readF32(t);
  engine.beginScope();
  try {
    // elementwise
    for (const n of [1, 63, 65, 1000]) {
      const a = rand(n);
      const b = rand(n);
      out.push(compare(`add ${n}`, await read(ops.add(engine, engine.tensor(a), engine.tensor(b))), ref.addRef(a, b)));
      const acc = engine.tensor(a);
      ops.addInto(engine, acc, engine.tensor(b), -0.5);
      out.push(compare(`addInto ${n}`, await read(acc), Float64Array.from(a, (v, i) => v - 0.5 * b[i]!)));
      const x = rand(n, 2.5);
      const dy = rand(n);
      out.push(compare(`gelu ${n}`, await read(ops.gelu(engine, engine.tensor(x))), ref.geluRef(x)));
      out.push(compare(`gelu backward ${n}`, await read(ops.geluBackward(engine, engine.tensor(x), engine.tensor(dy))), ref.geluBackwardRef(x, dy)));
    }
    // reductions
    for (const [rows, N] of [[1, 1], [7, 13], [129, 33], [1000, 37]] as const) {
      const x = rand(rows * N);
      out.push(compare(`sumRows ${rows}×${N}`, await read(ops.sumRows(engine, engine.tensor(x), rows, N)), ref.sumRowsRef(x, rows, N)));
      const total = x.reduce((s, v) => s + v, 0);
      out.push(compare(`sumAll ${rows * N}`, await read(ops.sumAll(engine, engine.tensor(x))), [total]));
    }
    const g1 = rand(300);
    const g2 = rand(17);
    out.push(compare('gradNorm', await read(ops.gradNorm(engine, [engine.tensor(g1), engine.tensor(g2)])), [ref.gradNormRef([g1, g2])]));
    // layernorm
    for (const [rows, C] of [[1, 8], [5, 67], [70, 32], [3, 517]] as const) {
      const x = rand(rows * C, 3);
      const g = rand(C);
      const b = rand(C);
      const dy = rand(rows * C);
      const r = ref.layernormRef(x, g, b, rows, C);
      const { y, stats } = ops.layernorm(engine, engine.tensor(x), engine.tensor(g), engine.tensor(b), rows, C);
      out.push(compare(`layernorm ${rows}×${C}`, await read(y), r.y));
      out.push(compare(`layernorm stats ${rows}×${C}`, await read(stats), r.stats));
      const rb = ref.layernormBackwardRef(dy, x, g, r.stats, rows, C);
      const gb = ops.layernormBackward(engine, engine.tensor(dy), engine.tensor(x), engine.tensor(g), stats, rows, C);
      out.push(compare(`layernorm backward dx ${rows}×${C}`, await read(gb.dx), rb.dx));
      out.push(compare(`layernorm backward dgamma ${rows}×${C}`, await read(gb.dgamma), rb.dgamma));
      out.push(compare(`layernorm backward dbeta ${rows}×${C}`, await read(gb.dbeta), rb.dbeta));
      // dx added into a gradient so far (the residual stream's), as the fused tape does
      const dx0 = rand(rows * C);
      const into = engine.tensor(dx0);
      ops.layernormBackward(engine, engine.tensor(dy), engine.tensor(x), engine.tensor(g), stats, rows, C, { dx: into });
      out.push(compare(`layernorm backward dx added into ${rows}×${C}`, await read(into), rb.dx.map((v, i) => v + dx0[i]!)));
    }
    // column sums on GPU forms (bias and LayerNorm gain/bias gradients): in vec4s (one finishing pass per call) and
    // in scalars, in one pass (few rows) and in slices, written and added into
    if (ops.rowKernelMode(engine) !== 'thread') {
      for (const kernels of ['v4', 'scalar'] as const) {
        ops.setColumnSumKernels(engine, kernels);
        try {
          for (const [rows, N] of [[3, 8], [700, 132], [2000, 260]] as const) {
            const x = rand(rows * N);
            const sums = ref.sumRowsRef(x, rows, N);
            out.push(compare(`column sums ${rows}×${N} [${kernels}]`, await read(ops.sumRows(engine, engine.tensor(x), rows, N)), sums));
            const o0 = rand(N);
            const into = engine.tensor(o0);
            ops.sumRows(engine, engine.tensor(x), rows, N, into, true);
            out.push(compare(`column sums added into ${rows}×${N} [${kernels}]`, await read(into), sums.map((v, i) => v + o0[i]!)));
            const lx = rand(rows * N, 3);
            const g = rand(N);
            const dy = rand(rows * N);
            const lr = ref.layernormRef(lx, g, rand(N), rows, N);
            const rb = ref.layernormBackwardRef(dy, lx, g, lr.stats, rows, N);
            const dg0 = rand(N);
            const db0 = rand(N);
            const dgamma = engine.tensor(dg0);
            const dbeta = engine.tensor(db0);
            ops.layernormBackward(engine, engine.tensor(dy), engine.tensor(lx), engine.tensor(g), engine.tensor(lr.stats), rows, N, { dgamma, dbeta, accumulate: true });
            out.push(compare(`layernorm backward dgamma added into ${rows}×${N} [${kernels}]`, await read(dgamma), rb.dgamma.map((v, i) => v + dg0[i]!)));
            out.push(compare(`layernorm backward dbeta added into ${rows}×${N} [${kernels}]`, await read(dbeta), rb.dbeta.map((v, i) => v + db0[i]!)));
          }
        } finally {
          ops.setColumnSumKernels(engine, undefined);
        }
      }
    }
    // attention
    for (const s of [
      { B: 1, T: 1, H: 1, D: 4, causal: false },
      { B: 2, T: 7, H: 3, D: 5, causal: true },
      { B: 2, T: 13, H: 2, D: 8, causal: false },
      { B: 1, T: 77, H: 2, D: 16, causal: true },
      { B: 1, T: 131, H: 1, D: 67, causal: false },
      { B: 2, T: 150, H: 1, D: 3, causal: true },
      // CLIP's shapes (image 50 tokens, text 77, heads of 64; 65 and 32 for other patch grids and contexts) and
      // the longest tiled row.
      ...(options.attentionShapes === 'quick'
        ? [{ B: 1, T: 50, H: 2, D: 64, causal: false }, { B: 1, T: 77, H: 1, D: 64, causal: true }]
        : [
          { B: 2, T: 50, H: 2, D: 64, causal: false },
          { B: 1, T: 50, H: 3, D: 64, causal: true },
          { B: 2, T: 77, H: 2, D: 64, causal: true },
          { B: 1, T: 77, H: 2, D: 64, causal: false },
          { B: 1, T: 65, H: 2, D: 64, causal: true },
          { B: 2, T: 65, H: 1, D: 64, causal: false },
          { B: 2, T: 32, H: 2, D: 64, causal: true },
          { B: 1, T: 32, H: 2, D: 64, causal: false },
          { B: 1, T: 128, H: 1, D: 128, causal: true },
        ]),
    ]) {
      const C = s.H * s.D;
      const qkv = rand(s.B * s.T * 3 * C);
      const dout = rand(s.B * s.T * C);
      const r = ref.attentionRef(qkv, s);
      const rb = ref.attentionBackwardRef(dout, qkv, r.probs, s);
      // Every GPU kernel set that takes the shape: per (batch, head) with the device's memory and with 20 KiB (keys
      // and queries staged in chunks), tiled with the device's memory and with core WebGPU's 16 KiB (smaller query
      // blocks, keys staged in several chunks).
      // The forward and the backward may run different kernels (the default per pass; each forced both ways).
      type Kernels = 'head' | 'tiled';
      const variants: { kernels?: Kernels; backward?: Kernels; memory?: number }[] = [{}];
      const both = ops.attentionKernels(engine, s) === 'head';
      if (both) variants.push({ kernels: 'head' }, { kernels: 'head', memory: 20480 });
      ops.setAttentionKernels(engine, 'tiled');
      if (ops.attentionKernels(engine, s) === 'tiled') {
        variants.push({ kernels: 'tiled' }, { kernels: 'tiled', memory: 16384 });
        if (both) variants.push({ kernels: 'head', backward: 'tiled' }, { kernels: 'tiled', backward: 'head' });
      }
      ops.setAttentionKernels(engine, undefined);
      const planName = (kernels: ops.AttentionKernels) => {
        const head = kernels === 'head' ? headAttentionPlan(engine, s.T, s.D)! : undefined;
        const tiled = kernels === 'tiled' ? tiledAttentionPlan(engine, s.T, s.D)! : undefined;
        return head ? ` head k${head.KC} c${head.QC}` : tiled ? ` tiled q${tiled.BQ} k${tiled.KC} c${tiled.QC}` : '';
      };
      const seen = new Set<string>();
      for (const v of variants) {
        ops.setAttentionKernels(engine, v.kernels);
        ops.setAttentionBackwardKernels(engine, v.backward);
        setTiledAttentionMemory(engine, v.memory);
        try {
          const forward = planName(ops.attentionKernels(engine, s));
          const backward = planName(ops.attentionKernels(engine, s, 'backward'));
          const plan = backward === forward ? forward : `${forward}, backward${backward || ' rows'}`;
          const name = `attention B${s.B} T${s.T} H${s.H} D${s.D}${s.causal ? ' causal' : ''}${plan}`;
          if (seen.has(name)) continue; // a smaller memory that plans the same tiles
          seen.add(name);
          const g = ops.attention(engine, engine.tensor(qkv), s);
          out.push(compare(name, await read(g.out), r.out));
          out.push(compare(`${name} probs`, await read(g.probs), r.probs));
          out.push(compare(`${name} backward`, await read(ops.attentionBackward(engine, engine.tensor(dout), engine.tensor(qkv), g.probs, s)), rb));
        } finally {
          setTiledAttentionMemory(engine, undefined);
          ops.setAttentionKernels(engine, undefined);
          ops.setAttentionBackwardKernels(engine, undefined);
        }
      }
    }
    // embeddings
    {
      const V = 37;
      const C = 10;
      const B = 3;
      const T = 9;
      const tokens = Array.from({ length: B * T }, () => rng.int(V));
      tokens[5] = tokens[4]!; // repeated tokens must add up
      const table = rand(V * C);
      const pos = rand(T * C);
      const dout = rand(B * T * C);
      const index = ops.tokenIndex(engine, tokens, [B, T]);
      out.push(compare('embedding', await read(ops.embedding(engine, index.tokens, engine.tensor(table), C)), ref.embeddingRef(tokens, table, C)));
      out.push(compare('embedding + positions', await read(ops.embedding(engine, index.tokens, engine.tensor(table), C, { table: engine.tensor(pos), T })), ref.embeddingRef(tokens, table, C, { table: pos, T })));
      out.push(compare('embedding backward (scatter-add)', await read(ops.embeddingBackward(engine, engine.tensor(dout), index, V, C)), ref.embeddingBackwardRef(dout, tokens, V, C)));
      // A padded caption batch (most positions hold the padding id: many segments for one token), rows of whole
      // vec4s, both summation forms, and adding into a gradient so far.
      {
        const [V2, C2, B2, T2] = [50, 16, 4, 77];
        const ids = Array.from({ length: B2 * T2 }, (_, i) => (i % T2 < 3 + (i % 5) ? 1 + rng.int(V2 - 1) : 0));
        const dy = rand(B2 * T2 * C2);
        const want = ref.embeddingBackwardRef(dy, ids, V2, C2);
        const idx2 = ops.tokenIndex(engine, ids, [B2, T2]);
        for (const kernels of ['segments', 'direct'] as const) {
          ops.setEmbeddingBackwardKernels(engine, kernels);
          try {
            out.push(compare(`embedding backward ${B2}×${T2}, padded, ${kernels}`, await read(ops.embeddingBackward(engine, engine.tensor(dy), idx2, V2, C2)), want));
            const g0 = rand(V2 * C2);
            const into = engine.tensor(g0);
            ops.embeddingBackward(engine, engine.tensor(dy), idx2, V2, C2, into, true);
            out.push(compare(`embedding backward ${B2}×${T2}, padded, ${kernels}, accumulated`, await read(into), want.map((v, i) => v + g0[i]!)));
          } finally {
            ops.setEmbeddingBackwardKernels(engine, undefined);
          }
        }
        idx2.dispose();
      }
      out.push(compare('positional backward', await read(ops.positionalBackward(engine, engine.tensor(dout), B, T, C)), ref.positionalBackwardRef(dout, B, T, C)));
      const idx = Array.from({ length: B }, () => rng.int(T));
      const x = rand(B * T * C);
      const dg = rand(B * C);
      const idxT = engine.tensor(idx, [B], 'u32');
      out.push(compare('gather rows (EOT)', await read(ops.gatherRows(engine, engine.tensor(x), idxT, B, T, C)), ref.gatherRowsRef(x, idx, B, T, C)));
      out.push(compare('gather rows backward', await read(ops.gatherRowsBackward(engine, engine.tensor(dg), idxT, B, T, C)), ref.gatherRowsBackwardRef(dg, idx, B, T, C)));
      index.dispose();
    }
    // patches
    {
      const [B, Ch, H, W, P] = [2, 3, 10, 14, 4];
      const img = rand(B * Ch * H * W);
      out.push(compare('im2col (patch embedding)', await read(ops.im2col(engine, engine.tensor(img), B, Ch, H, W, P)), ref.im2colRef(img, B, Ch, H, W, P)));
    }
    // uint8 pixels through a normalisation table (training's upload), odd sizes: a partial last word
    for (const [B, Ch, plane] of [[1, 3, 5], [2, 3, 49], [3, 2, 6]] as const) {
      const bytes = Uint8Array.from({ length: B * Ch * plane }, () => rng.int(256));
      const table = rand(256 * Ch);
      const words = engine.empty([Math.ceil(bytes.length / 4)], 'u32');
      engine.writeBytes(words, bytes);
      const got = ops.normalizePixels(engine, words, engine.tensor(table), [B, Ch, plane], plane, Ch);
      out.push(compare(`pixels ${B}×${Ch}×${plane} through a table`, await read(got), Array.from(bytes, (v, e) => table[(Math.floor(e / plane) % Ch) * 256 + v]!), { atol: Number.MIN_VALUE, rtol: 0 }));
    }
    // CLIP head
    for (const [rows, C] of [[1, 3], [9, 33], [4, 700]] as const) {
      const x = rand(rows * C);
      const dy = rand(rows * C);
      const r = ref.l2normalizeRef(x, rows, C);
      const g = ops.l2normalize(engine, engine.tensor(x), rows, C);
      out.push(compare(`l2normalize ${rows}×${C}`, await read(g.y), r.y));
      out.push(compare(`l2normalize backward ${rows}×${C}`, await read(ops.l2normalizeBackward(engine, engine.tensor(dy), g.y, g.norms, rows, C)), ref.l2normalizeBackwardRef(dy, r.y, r.norms, rows, C)));
    }
    for (const N of [1, 5, 70, 300]) {
      const x = rand(N * N);
      const s = Math.log(1 / 0.07);
      const logits = ref.scaleByExpRef(x, s);
      const sT = engine.tensor([s]);
      const gLogits = ops.scaleByExp(engine, engine.tensor(x), sT);
      out.push(compare(`scaled logits ${N}×${N}`, await read(gLogits), logits, { atol: 1e-3, rtol: 1e-4 }));
      const r = ref.clipLossRef(logits, N, 2);
      const g = ops.clipLoss(engine, gLogits, N, 2);
      out.push(compare(`clip loss ${N}×${N}`, await read(g.loss), [r.loss]));
      out.push(compare(`clip loss gradient ${N}×${N}`, await read(g.dlogits), r.dlogits));
      const rb = ref.scaleByExpBackwardRef(r.dlogits, logits, s);
      const gb = ops.scaleByExpBackward(engine, g.dlogits, gLogits, sT);
      out.push(compare(`scaled logits backward dx ${N}`, await read(gb.dx), rb.dx, { atol: 1e-3, rtol: 1e-4 }));
      out.push(compare(`scaled logits backward dscale ${N}`, await read(gb.ds), [rb.ds], { atol: 1e-3, rtol: 1e-4 }));
    }
    for (const [rows, V] of [[1, 2], [13, 67], [3, 1031]] as const) {
      const z = rand(rows * V, 3);
      const targets = Array.from({ length: rows }, () => rng.int(V));
      const r = ref.crossEntropyRef(z, targets, rows, V);
      const g = ops.crossEntropy(engine, engine.tensor(z), engine.tensor(targets, [rows], 'u32'), rows, V);
      out.push(compare(`cross-entropy ${rows}×${V}`, await read(g.loss), [r.loss]));
      out.push(compare(`cross-entropy gradient ${rows}×${V}`, await read(g.dlogits), r.dlogits));
    }
    // AdamW, with and without clipping and decay
    for (const [n, wd, maxNorm] of [[1, 0, undefined], [1000, 0.1, undefined], [77, 0.2, 0.5]] as const) {
      const p0 = rand(n);
      const grad = rand(n);
      const m0 = rand(n, 0.1);
      const v0 = Float32Array.from(rand(n), (x) => x * x * 0.01);
      const settings = { lr: 1e-2, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: wd, step: 3, maxNorm };
      const norm = ref.gradNormRef([grad]);
      const [rp, rm, rv] = [Float64Array.from(p0), Float64Array.from(m0), Float64Array.from(v0)];
      ref.adamwRef(rp, grad, rm, rv, settings, maxNorm ? norm : undefined);
      const [tp, tm, tv, tg] = [engine.tensor(p0), engine.tensor(m0), engine.tensor(v0), engine.tensor(grad)];
      ops.adamw(engine, tp, tg, tm, tv, settings, maxNorm ? ops.gradNorm(engine, [tg]) : undefined);
      const name = `adamw n${n} wd${wd}${maxNorm ? ' clip' : ''}`;
      out.push(compare(`${name} param`, await read(tp), rp));
      out.push(compare(`${name} m`, await read(tm), rm));
      out.push(compare(`${name} v`, await read(tv), rv));
    }
  } finally {
    engine.endScope();
  }
  return out;
}
