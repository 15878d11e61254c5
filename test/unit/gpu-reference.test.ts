// The float64 reference's backward functions against central finite differences of its forward functions:
// the GPU kernels are only as right as the reference they are compared with.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ref from '../../src/core/gpu/reference.ts';
import { Rng } from '../../src/core/util/random.ts';

const rng = new Rng(99);
const rand = (n: number, s = 1) => Float64Array.from({ length: n }, () => rng.normal() * s);
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

/** d/dx of L(x) = w·f(x), numerically, for every element of x; compared with the analytic gradient. */
function checkGradient(name: string, x: Float64Array, loss: (x: Float64Array) => number, analytic: ArrayLike<number>, h = 1e-5, tol = 1e-6): void {
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const saved = x[i]!;
    x[i] = saved + h;
    const up = loss(x);
    x[i] = saved - h;
    const down = loss(x);
    x[i] = saved;
    const numeric = (up - down) / (2 * h);
    worst = Math.max(worst, Math.abs(numeric - analytic[i]!) / (1 + Math.abs(numeric)));
  }
  assert.ok(worst < tol, `${name}: finite differences disagree by ${worst}`);
}

test('erf matches known values to 1e-15', () => {
  for (const [x, v] of [[0, 0], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527], [3, 0.9999779095030014], [-1.5, -0.9661051464753108]] as const) {
    assert.ok(Math.abs(ref.erfRef(x) - v) < 1e-15, `erf(${x}) = ${ref.erfRef(x)}`);
  }
});

test('matmul backward (both transposes) by finite differences', () => {
  const [M, N, K] = [3, 4, 5];
  const a = rand(M * K);
  const b = rand(K * N);
  const w = rand(M * N);
  const L = () => dot(w, ref.matmulRef(a, b, M, N, K));
  // dA = W·Bᵀ, dB = Aᵀ·W
  checkGradient('matmul dA', a, L, ref.matmulRef(w, b, M, K, N, { transB: true }));
  checkGradient('matmul dB', b, L, ref.matmulRef(a, w, K, N, M, { transA: true }));
});

test('gelu backward', () => {
  const x = rand(50, 2);
  const w = rand(50);
  checkGradient('gelu', x, (x) => dot(w, ref.geluRef(x)), ref.geluBackwardRef(x, w));
});

test('layernorm backward', () => {
  const [rows, C] = [3, 7];
  const x = rand(rows * C, 2);
  const g = rand(C);
  const b = rand(C);
  const w = rand(rows * C);
  const stats = ref.layernormRef(x, g, b, rows, C).stats;
  const grads = ref.layernormBackwardRef(w, x, g, stats, rows, C);
  checkGradient('layernorm dx', x, (x) => dot(w, ref.layernormRef(x, g, b, rows, C).y), grads.dx);
  checkGradient('layernorm dgamma', g, (g) => dot(w, ref.layernormRef(x, g, b, rows, C).y), grads.dgamma);
  checkGradient('layernorm dbeta', b, (b) => dot(w, ref.layernormRef(x, g, b, rows, C).y), grads.dbeta);
});

test('attention backward, causal and not', () => {
  for (const causal of [false, true]) {
    const s = { B: 2, T: 5, H: 2, D: 3, causal };
    const qkv = rand(s.B * s.T * 3 * s.H * s.D);
    const w = rand(s.B * s.T * s.H * s.D);
    const { probs } = ref.attentionRef(qkv, s);
    checkGradient(`attention causal=${causal}`, qkv, (q) => dot(w, ref.attentionRef(q, s).out), ref.attentionBackwardRef(w, qkv, probs, s));
  }
});

test('embedding, positions and gather backward', () => {
  const [V, C, B, T] = [6, 3, 2, 4];
  const tokens = [1, 1, 5, 0, 2, 1, 3, 3];
  const table = rand(V * C);
  const pos = rand(T * C);
  const w = rand(B * T * C);
  checkGradient('embedding', table, (t) => dot(w, ref.embeddingRef(tokens, t, C, { table: pos, T })), ref.embeddingBackwardRef(w, tokens, V, C));
  checkGradient('positions', pos, (p) => dot(w, ref.embeddingRef(tokens, table, C, { table: p, T })), ref.positionalBackwardRef(w, B, T, C));
  const x = rand(B * T * C);
  const idx = [3, 1];
  const wg = rand(B * C);
  checkGradient('gather', x, (x) => dot(wg, ref.gatherRowsRef(x, idx, B, T, C)), ref.gatherRowsBackwardRef(wg, idx, B, T, C));
});

test('l2 normalise, scaled logits and the symmetric CLIP loss', () => {
  const [rows, C] = [4, 5];
  const x = rand(rows * C);
  const w = rand(rows * C);
  const { y, norms } = ref.l2normalizeRef(x, rows, C);
  checkGradient('l2normalize', x, (x) => dot(w, ref.l2normalizeRef(x, rows, C).y), ref.l2normalizeBackwardRef(w, y, norms, rows, C));

  const N = 4;
  const z = rand(N * N, 2);
  checkGradient('clip loss', z, (z) => ref.clipLossRef(z, N).loss, ref.clipLossRef(z, N).dlogits);
  const s = [0.7];
  const raw = rand(N * N);
  const wl = rand(N * N);
  const out = ref.scaleByExpRef(raw, s[0]!);
  const grads = ref.scaleByExpBackwardRef(wl, out, s[0]!);
  checkGradient('scaled logits dx', raw, (r) => dot(wl, ref.scaleByExpRef(r, s[0]!)), grads.dx);
  const sv = Float64Array.from(s);
  checkGradient('scaled logits ds', sv, (sv) => dot(wl, ref.scaleByExpRef(raw, sv[0]!)), [grads.ds]);
});

test('softmax cross-entropy', () => {
  const [rows, V] = [3, 6];
  const z = rand(rows * V, 2);
  const targets = [0, 5, 2];
  checkGradient('cross-entropy', z, (z) => ref.crossEntropyRef(z, targets, rows, V).loss, ref.crossEntropyRef(z, targets, rows, V).dlogits);
});

test('AdamW: first step moves every weight by lr against its gradient sign (plus decay)', () => {
  const p = Float64Array.from([1, -2, 3]);
  const g = [0.5, -0.1, 0];
  const m = new Float64Array(3);
  const v = new Float64Array(3);
  ref.adamwRef(p, g, m, v, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5, step: 1 });
  assert.ok(Math.abs(p[0]! - (1 * 0.95 - 0.1)) < 1e-6);
  assert.ok(Math.abs(p[1]! - (-2 * 0.95 + 0.1)) < 1e-6);
  assert.ok(Math.abs(p[2]! - 3 * 0.95) < 1e-12);
});
