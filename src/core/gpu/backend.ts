/**
 * The kernel set the autograd layer (nn.ts) is written against, with two implementations: the GPU engine and
 * the float64 CPU reference. A model is written once and runs on either, which is how the toy-transformer test
 * compares a whole training run on WebGPU with the same run in float64.
 */
import { Engine, type Tensor } from './engine.ts';
import { matmul } from './kernels/matmul.ts';
import * as ops from './kernels/ops.ts';
import * as ref from './reference.ts';

export interface BackendTensor {
  readonly shape: readonly number[];
  readonly size: number;
  dispose(): void;
}

export interface MatmulArgs<T> {
  transA?: boolean;
  transB?: boolean;
  batch?: number;
  bias?: T;
  /** Adds into `out` instead of allocating. */
  out?: T;
  accumulate?: boolean;
  /** Also writes GELU of the result (bias included) to this tensor (fused MLP forward). */
  geluOut?: T;
  /** Multiplies the product by GELU'(geluGrad): the gradient through a GELU whose input was geluGrad (no accumulate). */
  geluGrad?: T;
}

export interface Tokens<T> {
  ids: ArrayLike<number>;
  /** The ids as a tensor (u32 on the GPU), also used as class targets. */
  tensor: T;
  dispose(): void;
}

export interface Backend<T extends BackendTensor = BackendTensor> {
  readonly name: string;
  tensor(data: ArrayLike<number>, shape: readonly number[]): T;
  zeros(shape: readonly number[]): T;
  /** A tensor whose contents are not defined (to be overwritten); zeros on the CPU. */
  empty(shape: readonly number[]): T;
  copy(t: T): T;
  read(t: T): Promise<Float32Array | Float64Array>;
  /**
   * Images from uint8 pixels [B, C, H, W] (CHW per sample): value = table[c·256 + byte], the channel's
   * normalisation as a lookup table (augment.ts pixelTable). The GPU uploads the bytes and maps them there.
   */
  pixels(data: Uint8Array, shape: readonly number[], table: Float32Array): T;
  /** Resolves once the work recorded so far has finished (the GPU's queue drained to here); at once on the CPU. */
  settled(): Promise<void>;
  tokens(ids: ArrayLike<number>, shape: readonly number[]): Tokens<T>;
  beginScope(): void;
  endScope(keep?: readonly T[]): void;

  matmul(a: T, b: T, M: number, N: number, K: number, o?: MatmulArgs<T>): T;
  add(a: T, b: T): T;
  addInto(acc: T, x: T): void;
  gelu(x: T): T;
  geluBackward(x: T, dy: T): T;
  sumRows(x: T, rows: number, N: number, out?: T, accumulate?: boolean): T;
  layernorm(x: T, g: T, b: T, rows: number, C: number): { y: T; stats: T };
  /** With `dxInto`, dx is added into it (x's gradient so far) and returned as dx. */
  layernormBackward(dy: T, x: T, g: T, stats: T, rows: number, C: number, dxInto?: T): { dx: T; dgamma: T; dbeta: T };
  attention(qkv: T, s: ops.AttentionShape): { out: T; probs: T };
  attentionBackward(dout: T, qkv: T, probs: T, s: ops.AttentionShape): T;
  embedding(tokens: Tokens<T>, table: T, C: number, pos?: { table: T; T: number }): T;
  embeddingBackward(dout: T, tokens: Tokens<T>, V: number, C: number): T;
  positionalBackward(dout: T, B: number, T: number, C: number): T;
  crossEntropy(logits: T, targets: Tokens<T>, rows: number, V: number): { loss: T; dlogits: T };
  gradNorm(grads: readonly T[]): T;
  adamw(param: T, grad: T, m: T, v: T, o: ops.AdamWSettings, norm?: T): void;
}

// ---------------------------------------------------------------- GPU

export class GpuBackend implements Backend<Tensor> {
  readonly name = 'webgpu';
  /** Per-table GPU copies of pixels() lookup tables (kept for the engine's life). */
  private tables = new WeakMap<Float32Array, Tensor>();
  constructor(readonly engine: Engine) {}
  tensor(data: ArrayLike<number>, shape: readonly number[]): Tensor {
    return this.engine.tensor(data, shape);
  }
  pixels(data: Uint8Array, shape: readonly number[], table: Float32Array): Tensor {
    const [, C = 1, H = 1, W = 1] = shape;
    if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`pixels: ${data.length} bytes do not fill shape ${JSON.stringify(shape)}`);
    if (table.length !== 256 * C) throw new Error(`pixels: a table of ${table.length} values for ${C} channels`);
    let t = this.tables.get(table);
    if (!t) {
      t = this.engine.detach(this.engine.tensor(table, [table.length]));
      this.tables.set(table, t);
    }
    const bytes = this.engine.empty([Math.ceil(data.length / 4)], 'u32');
    this.engine.writeBytes(bytes, data);
    return ops.normalizePixels(this.engine, bytes, t, shape, H * W, C);
  }
  settled(): Promise<void> {
    return this.engine.settled();
  }
  zeros(shape: readonly number[]): Tensor {
    return this.engine.zeros(shape);
  }
  empty(shape: readonly number[]): Tensor {
    return this.engine.empty(shape);
  }
  copy(t: Tensor): Tensor {
    const out = this.engine.empty(t.shape);
    this.engine.copy(t, out);
    return out;
  }
  read(t: Tensor): Promise<Float32Array> {
    return this.engine.readF32(t);
  }
  tokens(ids: ArrayLike<number>, shape: readonly number[]): Tokens<Tensor> & { index: ops.TokenIndex } {
    const index = ops.tokenIndex(this.engine, ids, shape);
    return { ids, tensor: index.tokens, index, dispose: () => index.dispose() };
  }
  beginScope(): void {
    this.engine.beginScope();
  }
  endScope(keep: readonly Tensor[] = []): void {
    this.engine.endScope(keep);
  }
  matmul(a: Tensor, b: Tensor, M: number, N: number, K: number, o: MatmulArgs<Tensor> = {}): Tensor {
    const batch = o.batch ?? 1;
    return matmul(this.engine, a, b, M, N, K, { ...o, batch });
  }
  add(a: Tensor, b: Tensor): Tensor {
    return ops.add(this.engine, a, b);
  }
  addInto(acc: Tensor, x: Tensor): void {
    ops.addInto(this.engine, acc, x);
  }
  gelu(x: Tensor): Tensor {
    return ops.gelu(this.engine, x);
  }
  geluBackward(x: Tensor, dy: Tensor): Tensor {
    return ops.geluBackward(this.engine, x, dy);
  }
  sumRows(x: Tensor, rows: number, N: number, out?: Tensor, accumulate?: boolean): Tensor {
    return ops.sumRows(this.engine, x, rows, N, out, accumulate);
  }
  layernorm(x: Tensor, g: Tensor, b: Tensor, rows: number, C: number) {
    return ops.layernorm(this.engine, x, g, b, rows, C);
  }
  layernormBackward(dy: Tensor, x: Tensor, g: Tensor, stats: Tensor, rows: number, C: number, dxInto?: Tensor) {
    return ops.layernormBackward(this.engine, dy, x, g, stats, rows, C, { dx: dxInto });
  }
  attention(qkv: Tensor, s: ops.AttentionShape) {
    return ops.attention(this.engine, qkv, s);
  }
  attentionBackward(dout: Tensor, qkv: Tensor, probs: Tensor, s: ops.AttentionShape): Tensor {
    return ops.attentionBackward(this.engine, dout, qkv, probs, s);
  }
  embedding(tokens: Tokens<Tensor>, table: Tensor, C: number, pos?: { table: Tensor; T: number }): Tensor {
    return ops.embedding(this.engine, tokens.tensor, table, C, pos);
  }
  embeddingBackward(dout: Tensor, tokens: Tokens<Tensor>, V: number, C: number): Tensor {
    return ops.embeddingBackward(this.engine, dout, (tokens as Tokens<Tensor> & { index: ops.TokenIndex }).index, V, C);
  }
  positionalBackward(dout: Tensor, B: number, T: number, C: number): Tensor {
    return ops.positionalBackward(this.engine, dout, B, T, C);
  }
  crossEntropy(logits: Tensor, targets: Tokens<Tensor>, rows: number, V: number) {
    return ops.crossEntropy(this.engine, logits, targets.tensor, rows, V);
  }
  gradNorm(grads: readonly Tensor[]): Tensor {
    return ops.gradNorm(this.engine, grads);
  }
  adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: ops.AdamWSettings, norm?: Tensor): void {
    ops.adamw(this.engine, param, grad, m, v, o, norm);
  }
}

// ---------------------------------------------------------------- float64 reference

export class RefTensor implements BackendTensor {
  readonly size: number;
  constructor(public data: Float64Array, readonly shape: readonly number[]) {
    this.size = data.length;
  }
  dispose(): void {}
}

const t64 = (data: Float64Array, shape: readonly number[]) => new RefTensor(data, shape);

export class RefBackend implements Backend<RefTensor> {
  readonly name = 'float64 reference';
  tensor(data: ArrayLike<number>, shape: readonly number[]): RefTensor {
    return t64(Float64Array.from(data), shape);
  }
  pixels(data: Uint8Array, shape: readonly number[], table: Float32Array): RefTensor {
    const [, C = 1, H = 1, W = 1] = shape;
    const plane = H * W;
    if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`pixels: ${data.length} bytes do not fill shape ${JSON.stringify(shape)}`);
    return t64(Float64Array.from(data, (v, e) => table[(Math.floor(e / plane) % C) * 256 + v]!), shape);
  }
  async settled(): Promise<void> {}
  zeros(shape: readonly number[]): RefTensor {
    return t64(new Float64Array(shape.reduce((a, b) => a * b, 1)), shape);
  }
  empty(shape: readonly number[]): RefTensor {
    return this.zeros(shape);
  }
  copy(t: RefTensor): RefTensor {
    return t64(t.data.slice(), t.shape);
  }
  async read(t: RefTensor): Promise<Float64Array> {
    return t.data.slice();
  }
  tokens(ids: ArrayLike<number>, shape: readonly number[]): Tokens<RefTensor> {
    return { ids, tensor: this.tensor(ids, shape), dispose() {} };
  }
  beginScope(): void {}
  endScope(): void {}
  matmul(a: RefTensor, b: RefTensor, M: number, N: number, K: number, o: MatmulArgs<RefTensor> = {}): RefTensor {
    const r = ref.matmulRef(a.data, b.data, M, N, K, { transA: o.transA, transB: o.transB, batch: o.batch, bias: o.bias?.data });
    if (o.geluGrad) {
      if (o.accumulate) throw new Error('matmul: geluGrad with accumulate');
      r.set(ref.geluBackwardRef(o.geluGrad.data, r));
    }
    if (o.out) {
      if (o.accumulate) for (let i = 0; i < r.length; i++) o.out.data[i] += r[i]!;
      else o.out.data.set(r);
      if (o.geluOut) o.geluOut.data.set(ref.geluRef(o.out.data));
      return o.out;
    }
    if (o.geluOut) o.geluOut.data.set(ref.geluRef(r));
    return t64(r, [M, N]);
  }
  add(a: RefTensor, b: RefTensor): RefTensor {
    return t64(ref.addRef(a.data, b.data), a.shape);
  }
  addInto(acc: RefTensor, x: RefTensor): void {
    for (let i = 0; i < acc.data.length; i++) acc.data[i] += x.data[i]!;
  }
  gelu(x: RefTensor): RefTensor {
    return t64(ref.geluRef(x.data), x.shape);
  }
  geluBackward(x: RefTensor, dy: RefTensor): RefTensor {
    return t64(ref.geluBackwardRef(x.data, dy.data), x.shape);
  }
  sumRows(x: RefTensor, rows: number, N: number, out?: RefTensor, accumulate?: boolean): RefTensor {
    const r = ref.sumRowsRef(x.data, rows, N);
    if (out) {
      for (let i = 0; i < N; i++) out.data[i] = (accumulate ? out.data[i]! : 0) + r[i]!;
      return out;
    }
    return t64(r, [N]);
  }
  layernorm(x: RefTensor, g: RefTensor, b: RefTensor, rows: number, C: number) {
    const r = ref.layernormRef(x.data, g.data, b.data, rows, C);
    return { y: t64(r.y, x.shape), stats: t64(r.stats, [rows, 2]) };
  }
  layernormBackward(dy: RefTensor, x: RefTensor, g: RefTensor, stats: RefTensor, rows: number, C: number, dxInto?: RefTensor) {
    const r = ref.layernormBackwardRef(dy.data, x.data, g.data, stats.data, rows, C);
    if (dxInto) for (let i = 0; i < r.dx.length; i++) dxInto.data[i] += r.dx[i]!;
    return { dx: dxInto ?? t64(r.dx, x.shape), dgamma: t64(r.dgamma, [C]), dbeta: t64(r.dbeta, [C]) };
  }
  attention(qkv: RefTensor, s: ops.AttentionShape) {
    const r = ref.attentionRef(qkv.data, s);
    return { out: t64(r.out, [s.B, s.T, s.H * s.D]), probs: t64(r.probs, [s.B, s.H, s.T, s.T]) };
  }
  attentionBackward(dout: RefTensor, qkv: RefTensor, probs: RefTensor, s: ops.AttentionShape): RefTensor {
    return t64(ref.attentionBackwardRef(dout.data, qkv.data, probs.data, s), qkv.shape);
  }
  embedding(tokens: Tokens<RefTensor>, table: RefTensor, C: number, pos?: { table: RefTensor; T: number }): RefTensor {
    return t64(ref.embeddingRef(tokens.ids, table.data, C, pos ? { table: pos.table.data, T: pos.T } : undefined), [tokens.ids.length, C]);
  }
  embeddingBackward(dout: RefTensor, tokens: Tokens<RefTensor>, V: number, C: number): RefTensor {
    return t64(ref.embeddingBackwardRef(dout.data, tokens.ids, V, C), [V, C]);
  }
  positionalBackward(dout: RefTensor, B: number, T: number, C: number): RefTensor {
    return t64(ref.positionalBackwardRef(dout.data, B, T, C), [T, C]);
  }
  crossEntropy(logits: RefTensor, targets: Tokens<RefTensor>, rows: number, V: number) {
    const r = ref.crossEntropyRef(logits.data, targets.ids, rows, V);
    return { loss: t64(Float64Array.of(r.loss), [1]), dlogits: t64(r.dlogits, [rows, V]) };
  }
  gradNorm(grads: readonly RefTensor[]): RefTensor {
    return t64(Float64Array.of(ref.gradNormRef(grads.map((g) => g.data))), [1]);
  }
  adamw(param: RefTensor, grad: RefTensor, m: RefTensor, v: RefTensor, o: ops.AdamWSettings, norm?: RefTensor): void {
    ref.adamwRef(param.data, grad.data, m.data, v.data, o, norm?.data[0]);
  }
}
