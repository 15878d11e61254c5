/**
 * Plain float64 CPU reference for every engine op, forward and backward. Tests compare the GPU kernels
 * with these, and check these backward functions themselves with finite differences of the forward ones.
 * Layouts are the engine's: row-major, the last dimension contiguous.
 */

export type F64 = Float64Array;

export function matmulRef(
  a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number,
  o: { transA?: boolean; transB?: boolean; batch?: number; strideA?: number; strideB?: number; alpha?: number; bias?: ArrayLike<number> } = {},
): F64 {
  const batch = o.batch ?? 1;
  const sA = o.strideA ?? (batch > 1 ? M * K : 0);
  const sB = o.strideB ?? (batch > 1 ? K * N : 0);
  const alpha = o.alpha ?? 1;
  const out = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = o.transA ? a[z * sA + k * M + m]! : a[z * sA + m * K + k]!;
          const bv = o.transB ? b[z * sB + n * K + k]! : b[z * sB + k * N + n]!;
          s += av * bv;
        }
        out[z * M * N + m * N + n] = alpha * s + (o.bias ? o.bias[n]! : 0);
      }
    }
  }
  return out;
}

type A = ArrayLike<number>;
const f64 = (n: number) => new Float64Array(n);

export function addRef(a: A, b: A): F64 {
  return Float64Array.from(a, (v, i) => v + b[i]!);
}

export function erfRef(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for a float64 reference: use the series / continued fraction.
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    let sum = ax;
    let term = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction (Lentz).
    let f = ax;
    let C = ax;
    let D = 0;
    for (let n = 1; n < 300; n++) {
      const an = n / 2;
      D = ax + an * D;
      D = 1 / D;
      C = ax + an / C;
      const delta = C * D;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}

export function geluRef(x: A): F64 {
  return Float64Array.from(x, (v) => 0.5 * v * (1 + erfRef(v / Math.SQRT2)));
}

export function geluBackwardRef(x: A, dy: A): F64 {
  return Float64Array.from(x, (v, i) => dy[i]! * (0.5 * (1 + erfRef(v / Math.SQRT2)) + v * Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI)));
}

export function sumRowsRef(x: A, rows: number, N: number): F64 {
  const out = f64(N);
  for (let r = 0; r < rows; r++) for (let c = 0; c < N; c++) out[c] += x[r * N + c]!;
  return out;
}

export function layernormRef(x: A, g: A, b: A, rows: number, C: number, eps = 1e-5): { y: F64; stats: F64 } {
  const y = f64(rows * C);
  const stats = f64(rows * 2);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[r * C + c]!;
    mean /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) y[r * C + c] = (x[r * C + c]! - mean) * rstd * g[c]! + b[c]!;
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
  }
  return { y, stats };
}

export function layernormBackwardRef(dy: A, x: A, g: A, stats: A, rows: number, C: number): { dx: F64; dgamma: F64; dbeta: F64 } {
  const dx = f64(rows * C);
  const dgamma = f64(C);
  const dbeta = f64(C);
  for (let r = 0; r < rows; r++) {
    const mean = stats[2 * r]!;
    const rstd = stats[2 * r + 1]!;
    let sumDg = 0;
    let sumDgX = 0;
    for (let c = 0; c < C; c++) {
      const xhat = (x[r * C + c]! - mean) * rstd;
      const dg = dy[r * C + c]! * g[c]!;
      sumDg += dg;
      sumDgX += dg * xhat;
      dgamma[c] += dy[r * C + c]! * xhat;
      dbeta[c] += dy[r * C + c]!;
    }
    for (let c = 0; c < C; c++) {
      const xhat = (x[r * C + c]! - mean) * rstd;
      dx[r * C + c] = rstd * (dy[r * C + c]! * g[c]! - sumDg / C - (xhat * sumDgX) / C);
    }
  }
  return { dx, dgamma, dbeta };
}

export interface AttentionShapeRef {
  B: number;
  T: number;
  H: number;
  D: number;
  causal: boolean;
}

export function attentionRef(qkv: A, s: AttentionShapeRef): { out: F64; probs: F64 } {
  const { B, T, H, D } = s;
  const C = H * D;
  const out = f64(B * T * C);
  const probs = f64(B * H * T * T);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    const prow = ((b * H + h) * T + t) * T;
    const last = s.causal ? t : T - 1;
    let mx = -Infinity;
    for (let j = 0; j <= last; j++) {
      let sc = 0;
      for (let d = 0; d < D; d++) sc += qkv[(b * T + t) * 3 * C + h * D + d]! * qkv[(b * T + j) * 3 * C + C + h * D + d]!;
      probs[prow + j] = sc * scale;
      mx = Math.max(mx, sc * scale);
    }
    let sum = 0;
    for (let j = 0; j <= last; j++) sum += probs[prow + j] = Math.exp(probs[prow + j]! - mx);
    for (let j = 0; j <= last; j++) probs[prow + j]! /= sum;
    for (let d = 0; d < D; d++) {
      let acc = 0;
      for (let j = 0; j <= last; j++) acc += probs[prow + j]! * qkv[(b * T + j) * 3 * C + 2 * C + h * D + d]!;
      out[(b * T + t) * C + h * D + d] = acc;
    }
  }
  return { out, probs };
}

export function attentionBackwardRef(dout: A, qkv: A, probs: A, s: AttentionShapeRef): F64 {
  const { B, T, H, D } = s;
  const C = H * D;
  const scale = 1 / Math.sqrt(D);
  const dqkv = f64(B * T * 3 * C);
  const ds = f64(T);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    const prow = ((b * H + h) * T + t) * T;
    let dot = 0;
    for (let j = 0; j < T; j++) {
      let dp = 0;
      for (let d = 0; d < D; d++) dp += dout[(b * T + t) * C + h * D + d]! * qkv[(b * T + j) * 3 * C + 2 * C + h * D + d]!;
      ds[j] = dp;
      dot += dp * probs[prow + j]!;
    }
    for (let j = 0; j < T; j++) {
      const g = probs[prow + j]! * (ds[j]! - dot);
      const pj = probs[prow + j]!;
      for (let d = 0; d < D; d++) {
        dqkv[(b * T + t) * 3 * C + h * D + d] += g * scale * qkv[(b * T + j) * 3 * C + C + h * D + d]!;
        dqkv[(b * T + j) * 3 * C + C + h * D + d] += g * scale * qkv[(b * T + t) * 3 * C + h * D + d]!;
        dqkv[(b * T + j) * 3 * C + 2 * C + h * D + d] += pj * dout[(b * T + t) * C + h * D + d]!;
      }
    }
  }
  return dqkv;
}

export function embeddingRef(tokens: A, table: A, C: number, pos?: { table: A; T: number }): F64 {
  const out = f64(tokens.length * C);
  for (let r = 0; r < tokens.length; r++) {
    for (let c = 0; c < C; c++) out[r * C + c] = table[tokens[r]! * C + c]! + (pos ? pos.table[(r % pos.T) * C + c]! : 0);
  }
  return out;
}

export function embeddingBackwardRef(dout: A, tokens: A, V: number, C: number): F64 {
  const dt = f64(V * C);
  for (let r = 0; r < tokens.length; r++) for (let c = 0; c < C; c++) dt[tokens[r]! * C + c] += dout[r * C + c]!;
  return dt;
}

export function positionalBackwardRef(dout: A, B: number, T: number, C: number): F64 {
  const dp = f64(T * C);
  for (let b = 0; b < B; b++) for (let i = 0; i < T * C; i++) dp[i] += dout[b * T * C + i]!;
  return dp;
}

export function gatherRowsRef(x: A, idx: A, B: number, T: number, C: number): F64 {
  const out = f64(B * C);
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) out[b * C + c] = x[(b * T + idx[b]!) * C + c]!;
  return out;
}

export function gatherRowsBackwardRef(dout: A, idx: A, B: number, T: number, C: number): F64 {
  const dx = f64(B * T * C);
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) dx[(b * T + idx[b]!) * C + c] = dout[b * C + c]!;
  return dx;
}

export function im2colRef(img: A, B: number, Ch: number, H: number, W: number, P: number): F64 {
  const gh = Math.floor(H / P);
  const gw = Math.floor(W / P);
  const K = Ch * P * P;
  const out = f64(B * gh * gw * K);
  for (let b = 0; b < B; b++) for (let l = 0; l < gh * gw; l++) for (let ch = 0; ch < Ch; ch++) for (let py = 0; py < P; py++) for (let px = 0; px < P; px++) {
    const y = Math.floor(l / gw) * P + py;
    const x = (l % gw) * P + px;
    out[(b * gh * gw + l) * K + (ch * P + py) * P + px] = img[((b * Ch + ch) * H + y) * W + x]!;
  }
  return out;
}

export function l2normalizeRef(x: A, rows: number, C: number, eps = 1e-12): { y: F64; norms: F64 } {
  const y = f64(rows * C);
  const norms = f64(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += x[r * C + c]! ** 2;
    const n = Math.max(Math.sqrt(s), eps);
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c]! / n;
    norms[r] = n;
  }
  return { y, norms };
}

export function l2normalizeBackwardRef(dy: A, y: A, norms: A, rows: number, C: number): F64 {
  const dx = f64(rows * C);
  for (let r = 0; r < rows; r++) {
    let d = 0;
    for (let c = 0; c < C; c++) d += y[r * C + c]! * dy[r * C + c]!;
    for (let c = 0; c < C; c++) dx[r * C + c] = (dy[r * C + c]! - y[r * C + c]! * d) / norms[r]!;
  }
  return dx;
}

export function scaleByExpRef(x: A, s: number): F64 {
  return Float64Array.from(x, (v) => Math.exp(s) * v);
}

export function scaleByExpBackwardRef(dout: A, out: A, s: number): { dx: F64; ds: number } {
  let ds = 0;
  for (let i = 0; i < out.length; i++) ds += dout[i]! * out[i]!;
  return { dx: Float64Array.from(dout, (v) => Math.exp(s) * v), ds };
}

export function clipLossRef(z: A, N: number, gradScale = 1): { loss: number; dlogits: F64 } {
  const lseR = f64(N);
  const lseC = f64(N);
  let loss = 0;
  for (let i = 0; i < N; i++) {
    let mr = -Infinity;
    let mc = -Infinity;
    for (let k = 0; k < N; k++) {
      mr = Math.max(mr, z[i * N + k]!);
      mc = Math.max(mc, z[k * N + i]!);
    }
    let sr = 0;
    let sc = 0;
    for (let k = 0; k < N; k++) {
      sr += Math.exp(z[i * N + k]! - mr);
      sc += Math.exp(z[k * N + i]! - mc);
    }
    lseR[i] = mr + Math.log(sr);
    lseC[i] = mc + Math.log(sc);
    loss += lseR[i]! - z[i * N + i]! + lseC[i]! - z[i * N + i]!;
  }
  const dlogits = f64(N * N);
  for (let r = 0; r < N; r++) for (let c = 0; c < N; c++) {
    const eye = r === c ? 1 : 0;
    dlogits[r * N + c] = (gradScale / (2 * N)) * (Math.exp(z[r * N + c]! - lseR[r]!) - eye + Math.exp(z[r * N + c]! - lseC[c]!) - eye);
  }
  return { loss: loss / (2 * N), dlogits };
}

export function crossEntropyRef(z: A, targets: A, rows: number, V: number, gradScale = 1): { loss: number; dlogits: F64 } {
  let loss = 0;
  const dlogits = f64(rows * V);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let k = 0; k < V; k++) mx = Math.max(mx, z[r * V + k]!);
    let s = 0;
    for (let k = 0; k < V; k++) s += Math.exp(z[r * V + k]! - mx);
    const lse = mx + Math.log(s);
    loss += lse - z[r * V + targets[r]!]!;
    for (let k = 0; k < V; k++) dlogits[r * V + k] = (gradScale / rows) * (Math.exp(z[r * V + k]! - lse) - (k === targets[r] ? 1 : 0));
  }
  return { loss: loss / rows, dlogits };
}

export interface AdamWRef {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  maxNorm?: number;
}

/** In place on param, m, v (float64 arrays). */
export function adamwRef(param: F64, grad: A, m: F64, v: F64, o: AdamWRef, norm?: number): void {
  const clip = norm !== undefined && o.maxNorm !== undefined ? Math.min(1, o.maxNorm / (norm + 1e-6)) : 1;
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]! * clip;
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g * g;
    param[i] = param[i]! * (1 - o.lr * o.weightDecay) - (o.lr * (m[i]! / bc1)) / (Math.sqrt(v[i]! / bc2) + o.eps);
  }
}

export function gradNormRef(grads: readonly A[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! ** 2;
  return Math.sqrt(s);
}
