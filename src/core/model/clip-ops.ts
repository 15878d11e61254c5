/**
 * The ops CLIP needs beyond the engine's Backend interface (patch extraction, class token + positional
 * embedding, EOT gather, L2 normalisation, exp-scaled logits, the symmetric contrastive loss, the logit-scale
 * clamp), for both backends: the GPU through the engine's kernels (src/core/gpu/kernels/ops.ts) plus two small
 * kernels of our own, the float64 reference through src/core/gpu/reference.ts. Tape wrappers for them are in
 * layers.ts. Kept here, outside src/core/gpu/, until the Backend interface grows these methods.
 */
import { GpuBackend, RefBackend, RefTensor, type Backend, type BackendTensor } from '../gpu/backend.ts';
import { paramStruct, type Engine, type Kernel, type Tensor } from '../gpu/engine.ts';
import * as ops from '../gpu/kernels/ops.ts';
import * as ref from '../gpu/reference.ts';

export interface ClipOps<T extends BackendTensor> {
  /** Integer indices (u32 on the GPU), e.g. the EOT positions. */
  indices(ids: ArrayLike<number>): T;
  /** images [B, Ch, H, W] → patches [B, L, Ch·P·P] (conv weight order). */
  im2col(images: T, B: number, Ch: number, H: number, W: number, P: number): T;
  /** [cls; patches] + pos: patches [B, L, C], cls [C], pos [L+1, C] → [B, L+1, C]. */
  assembleTokens(patches: T, cls: T, pos: T, B: number, L: number, C: number): T;
  assembleTokensBackward(dout: T, B: number, L: number, C: number): { dpatches: T; dcls: T; dpos: T };
  gatherRows(x: T, idx: T, B: number, T: number, C: number): T;
  gatherRowsBackward(dout: T, idx: T, B: number, T: number, C: number): T;
  l2normalize(x: T, rows: number, C: number): { y: T; norms: T };
  l2normalizeBackward(dy: T, y: T, norms: T, rows: number, C: number): T;
  scaleByExp(x: T, s: T): T;
  scaleByExpBackward(dout: T, out: T, s: T): { dx: T; ds: T };
  clipLoss(logits: T, N: number): { loss: T; dlogits: T };
  /** x ← min(max(x, lo), hi) in place (the logit scale after each step). */
  clampInPlace(x: T, lo: number, hi: number): void;
}

// ---------------------------------------------------------------- GPU

const WG = 64;
const kernels = new Map<string, Kernel>();

function kernel(key: string, buffers: string[], params: [string, 'u32' | 'f32'][], body: string): Kernel {
  let k = kernels.get(key);
  if (!k) {
    const layout: [string, 'u32' | 'f32'][] = [['n', 'u32'], ...params];
    const code = () => `${paramStruct(layout)}
${buffers.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b.endsWith('!') ? 'read_write' : 'read'}> ${b.replace('!', '')}: array<f32>;`).join('\n')}
@group(0) @binding(${buffers.length}) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
${body}
}
`;
    k = { key: `clip.${key}`, code, params: layout };
    kernels.set(key, k);
  }
  return k;
}

function run(engine: Engine, k: Kernel, buffers: Tensor[], n: number, params: number[]): void {
  const groups = Math.ceil(n / WG);
  const x = Math.min(groups, 65535);
  engine.dispatch(k, buffers, [n, ...params], [x, Math.ceil(groups / x)]);
}

class GpuClipOps implements ClipOps<Tensor> {
  constructor(readonly engine: Engine) {}
  indices(ids: ArrayLike<number>): Tensor {
    return this.engine.tensor(ids, [ids.length], 'u32');
  }
  im2col(images: Tensor, B: number, Ch: number, H: number, W: number, P: number): Tensor {
    return ops.im2col(this.engine, images, B, Ch, H, W, P);
  }
  assembleTokens(patches: Tensor, cls: Tensor, pos: Tensor, B: number, L: number, C: number): Tensor {
    const out = this.engine.empty([B, L + 1, C]);
    run(this.engine, kernel('assemble', ['patches', 'cls', 'pos', 'out!'], [['L', 'u32'], ['C', 'u32']], `
  let c = i % p.C;
  let t = (i / p.C) % (p.L + 1u);
  let b = i / (p.C * (p.L + 1u));
  var v = cls[c];
  if (t > 0u) { v = patches[(b * p.L + t - 1u) * p.C + c]; }
  out[i] = v + pos[t * p.C + c];`), [patches, cls, pos, out], B * (L + 1) * C, [L, C]);
    return out;
  }
  assembleTokensBackward(dout: Tensor, B: number, L: number, C: number) {
    const dpatches = this.engine.empty([B, L, C]);
    run(this.engine, kernel('assembleBackPatches', ['dout', 'dp!'], [['L', 'u32'], ['C', 'u32']], `
  let c = i % p.C;
  let l = (i / p.C) % p.L;
  let b = i / (p.C * p.L);
  dp[i] = dout[(b * (p.L + 1u) + l + 1u) * p.C + c];`), [dout, dpatches], B * L * C, [L, C]);
    const dcls = this.engine.empty([C]);
    run(this.engine, kernel('assembleBackCls', ['dout', 'dc!'], [['B', 'u32'], ['rowStride', 'u32']], `
  var s = 0.0;
  for (var b = 0u; b < p.B; b++) { s += dout[b * p.rowStride + i]; }
  dc[i] = s;`), [dout, dcls], C, [B, (L + 1) * C]);
    const dpos = ops.positionalBackward(this.engine, dout, B, L + 1, C);
    return { dpatches, dcls, dpos };
  }
  gatherRows(x: Tensor, idx: Tensor, B: number, T: number, C: number): Tensor {
    return ops.gatherRows(this.engine, x, idx, B, T, C);
  }
  gatherRowsBackward(dout: Tensor, idx: Tensor, B: number, T: number, C: number): Tensor {
    return ops.gatherRowsBackward(this.engine, dout, idx, B, T, C);
  }
  l2normalize(x: Tensor, rows: number, C: number) {
    return ops.l2normalize(this.engine, x, rows, C);
  }
  l2normalizeBackward(dy: Tensor, y: Tensor, norms: Tensor, rows: number, C: number): Tensor {
    return ops.l2normalizeBackward(this.engine, dy, y, norms, rows, C);
  }
  scaleByExp(x: Tensor, s: Tensor): Tensor {
    return ops.scaleByExp(this.engine, x, s);
  }
  scaleByExpBackward(dout: Tensor, out: Tensor, s: Tensor) {
    return ops.scaleByExpBackward(this.engine, dout, out, s);
  }
  clipLoss(logits: Tensor, N: number) {
    return ops.clipLoss(this.engine, logits, N);
  }
  clampInPlace(x: Tensor, lo: number, hi: number): void {
    run(this.engine, kernel('clamp', ['x!'], [['lo', 'f32'], ['hi', 'f32']], '  x[i] = min(max(x[i], p.lo), p.hi);'), [x], x.size, [lo, hi]);
  }
}

// ---------------------------------------------------------------- float64 reference

const r64 = (data: Float64Array, shape: readonly number[]) => new RefTensor(data, shape);

class RefClipOps implements ClipOps<RefTensor> {
  indices(ids: ArrayLike<number>): RefTensor {
    return r64(Float64Array.from(ids), [ids.length]);
  }
  im2col(images: RefTensor, B: number, Ch: number, H: number, W: number, P: number): RefTensor {
    const L = Math.floor(H / P) * Math.floor(W / P);
    return r64(ref.im2colRef(images.data, B, Ch, H, W, P), [B, L, Ch * P * P]);
  }
  assembleTokens(patches: RefTensor, cls: RefTensor, pos: RefTensor, B: number, L: number, C: number): RefTensor {
    const out = new Float64Array(B * (L + 1) * C);
    for (let b = 0; b < B; b++) for (let t = 0; t <= L; t++) for (let c = 0; c < C; c++) {
      const v = t === 0 ? cls.data[c]! : patches.data[(b * L + t - 1) * C + c]!;
      out[(b * (L + 1) + t) * C + c] = v + pos.data[t * C + c]!;
    }
    return r64(out, [B, L + 1, C]);
  }
  assembleTokensBackward(dout: RefTensor, B: number, L: number, C: number) {
    const dp = new Float64Array(B * L * C);
    const dc = new Float64Array(C);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) dc[c] += dout.data[b * (L + 1) * C + c]!;
      for (let l = 0; l < L; l++) for (let c = 0; c < C; c++) dp[(b * L + l) * C + c] = dout.data[(b * (L + 1) + l + 1) * C + c]!;
    }
    return { dpatches: r64(dp, [B, L, C]), dcls: r64(dc, [C]), dpos: r64(ref.positionalBackwardRef(dout.data, B, L + 1, C), [L + 1, C]) };
  }
  gatherRows(x: RefTensor, idx: RefTensor, B: number, T: number, C: number): RefTensor {
    return r64(ref.gatherRowsRef(x.data, idx.data, B, T, C), [B, C]);
  }
  gatherRowsBackward(dout: RefTensor, idx: RefTensor, B: number, T: number, C: number): RefTensor {
    return r64(ref.gatherRowsBackwardRef(dout.data, idx.data, B, T, C), [B, T, C]);
  }
  l2normalize(x: RefTensor, rows: number, C: number) {
    const r = ref.l2normalizeRef(x.data, rows, C);
    return { y: r64(r.y, x.shape), norms: r64(r.norms, [rows]) };
  }
  l2normalizeBackward(dy: RefTensor, y: RefTensor, norms: RefTensor, rows: number, C: number): RefTensor {
    return r64(ref.l2normalizeBackwardRef(dy.data, y.data, norms.data, rows, C), y.shape);
  }
  scaleByExp(x: RefTensor, s: RefTensor): RefTensor {
    return r64(ref.scaleByExpRef(x.data, s.data[0]!), x.shape);
  }
  scaleByExpBackward(dout: RefTensor, out: RefTensor, s: RefTensor) {
    const r = ref.scaleByExpBackwardRef(dout.data, out.data, s.data[0]!);
    return { dx: r64(r.dx, out.shape), ds: r64(Float64Array.of(r.ds), [1]) };
  }
  clipLoss(logits: RefTensor, N: number) {
    const r = ref.clipLossRef(logits.data, N);
    return { loss: r64(Float64Array.of(r.loss), [1]), dlogits: r64(r.dlogits, [N, N]) };
  }
  clampInPlace(x: RefTensor, lo: number, hi: number): void {
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.min(Math.max(x.data[i]!, lo), hi);
  }
}

/** The CLIP ops for a backend (the engine's GPU backend or the float64 reference). */
export function clipOps<T extends BackendTensor>(be: Backend<T>): ClipOps<T> {
  if (be instanceof GpuBackend) return new GpuClipOps(be.engine) as unknown as ClipOps<T>;
  if (be instanceof RefBackend) return new RefClipOps() as unknown as ClipOps<T>;
  throw new Error(`no CLIP ops for backend ${be.name}`);
}
