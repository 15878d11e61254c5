/**
 * Composing ops into a model and getting gradients: a small tape. Each differentiable op computes its output
 * with the backend's forward kernel and records a closure that, given the output's gradient, runs the
 * backward kernels and accumulates into its inputs' gradients (summing when an input feeds several ops,
 * e.g. the residual stream). `backward()` replays the closures in reverse. Intermediates live until the step's
 * scope ends (Backend.beginScope/endScope), so a whole training step — forward, backward, AdamW — is recorded
 * into one GPU submission with no readback.
 *
 * Weights use PyTorch's layouts (Linear: [out, in], y = x·Wᵀ + b), so checkpoints map one-to-one onto open_clip.
 */
import type { Backend, BackendTensor, Tokens } from './backend.ts';
import type { AdamWSettings, AttentionShape } from './kernels/ops.ts';

export class Var<T extends BackendTensor> {
  grad: T | undefined;
  constructor(readonly value: T) {}
}

export class Param<T extends BackendTensor> extends Var<T> {
  m: T;
  v: T;
  constructor(readonly name: string, value: T, backend: Backend<T>, readonly decay: boolean) {
    super(value);
    this.m = backend.zeros(value.shape);
    this.v = backend.zeros(value.shape);
  }
}

export interface TapeOptions {
  /**
   * Fused ops (default true): LayerNorm's backward adds straight into its input's gradient, and the residual
   * block's ops that take fused forms (linearResidual, mlp) use them. False records the unfused ops
   * (before/after comparisons; both compute the same values up to f32 rounding).
   */
  fuse?: boolean;
}

export class Tape<T extends BackendTensor> {
  private steps: (() => void)[] = [];
  readonly fuse: boolean;
  constructor(readonly be: Backend<T>, options: TapeOptions = {}) {
    this.fuse = options.fuse ?? true;
  }

  record(step: () => void): void {
    this.steps.push(step);
  }

  /** Adds g to v's gradient (takes ownership of g). */
  accumulate(v: Var<T>, g: T): void {
    if (!v.grad) v.grad = g;
    else {
      this.be.addInto(v.grad, g);
      g.dispose();
    }
  }

  /** Seeds `from` with `grad` (omit for a loss whose gradient its op already holds) and runs the tape backwards. */
  backward(from?: Var<T>, grad?: T): void {
    if (from && grad) from.grad = grad;
    for (let i = this.steps.length - 1; i >= 0; i--) this.steps[i]!();
    this.steps = [];
  }

  // ------------------------------------------------------------ differentiable ops

  /** y = x·Wᵀ + b with W [out, in]; x is [rows, in]. */
  linear(x: Var<T>, W: Param<T>, b: Param<T> | undefined, rows: number): Var<T> {
    const [out, inp] = W.value.shape as [number, number];
    const y = new Var(this.be.matmul(x.value, W.value, rows, out, inp, { transB: true, bias: b?.value }));
    this.record(() => {
      const dy = y.grad!;
      this.accumulate(x, this.be.matmul(dy, W.value, rows, inp, out));
      this.weightGrads(W, b, dy, x.value, rows);
    });
    return y;
  }

  /** W.grad += dyᵀ·x, b.grad += column sums of dy. */
  private weightGrads(W: Param<T>, b: Param<T> | undefined, dy: T, x: T, rows: number): void {
    const [out, inp] = W.value.shape as [number, number];
    if (W.grad) this.be.matmul(dy, x, out, inp, rows, { transA: true, out: W.grad, accumulate: true });
    else W.grad = this.be.matmul(dy, x, out, inp, rows, { transA: true });
    if (b) {
      if (b.grad) this.be.sumRows(dy, rows, out, b.grad, true);
      else b.grad = this.be.sumRows(dy, rows, out);
    }
  }

  /**
   * y = residual + x·Wᵀ + b (the residual stream's update): the matmul accumulates onto a copy of the residual
   * instead of a separate add, and the residual takes y's gradient itself in the backward (no copy).
   */
  linearResidual(x: Var<T>, W: Param<T>, b: Param<T> | undefined, residual: Var<T>, rows: number): Var<T> {
    if (!this.fuse) return this.add(residual, this.linear(x, W, b, rows));
    const [out, inp] = W.value.shape as [number, number];
    const yv = this.be.copy(residual.value);
    this.be.matmul(x.value, W.value, rows, out, inp, { transB: true, bias: b?.value, out: yv, accumulate: true });
    const y = new Var(yv);
    this.record(() => {
      const dy = y.grad!;
      this.accumulate(x, this.be.matmul(dy, W.value, rows, inp, out));
      this.weightGrads(W, b, dy, x.value, rows);
      this.accumulate(residual, dy); // after dy's last use above: the residual's gradient may be added into later
    });
    return y;
  }

  /**
   * A residual block's MLP: residual + GELU(x·W1ᵀ + b1)·W2ᵀ + b2. Fused, GELU rides in the first matmul's
   * epilogue (which writes the pre-activation for the backward and the activation), the residual add as in
   * linearResidual, and GELU's backward in the epilogue of the matmul that makes the hidden gradient.
   */
  mlp(x: Var<T>, W1: Param<T>, b1: Param<T>, W2: Param<T>, b2: Param<T>, residual: Var<T>, rows: number): Var<T> {
    if (!this.fuse) return this.add(residual, this.linear(this.gelu(this.linear(x, W1, b1, rows)), W2, b2, rows));
    const [hidden, inp] = W1.value.shape as [number, number];
    const [out] = W2.value.shape as [number, number];
    const act = this.be.empty([rows, hidden]);
    const pre = this.be.matmul(x.value, W1.value, rows, hidden, inp, { transB: true, bias: b1.value, geluOut: act });
    const yv = this.be.copy(residual.value);
    this.be.matmul(act, W2.value, rows, out, hidden, { transB: true, bias: b2.value, out: yv, accumulate: true });
    const y = new Var(yv);
    this.record(() => {
      const dy = y.grad!;
      const dpre = this.be.matmul(dy, W2.value, rows, hidden, out, { geluGrad: pre });
      this.weightGrads(W2, b2, dy, act, rows);
      this.accumulate(residual, dy);
      this.accumulate(x, this.be.matmul(dpre, W1.value, rows, inp, hidden));
      this.weightGrads(W1, b1, dpre, x.value, rows);
      dpre.dispose();
    });
    return y;
  }

  add(a: Var<T>, b: Var<T>): Var<T> {
    const y = new Var(this.be.add(a.value, b.value));
    this.record(() => {
      const dy = y.grad!;
      // The same gradient flows to both inputs: one may take dy itself, the other adds it or takes a copy.
      if (b.grad) this.be.addInto(b.grad, dy);
      else b.grad = this.be.copy(dy);
      this.accumulate(a, dy);
    });
    return y;
  }

  gelu(x: Var<T>): Var<T> {
    const y = new Var(this.be.gelu(x.value));
    this.record(() => this.accumulate(x, this.be.geluBackward(x.value, y.grad!)));
    return y;
  }

  layernorm(x: Var<T>, g: Param<T>, b: Param<T>, rows: number): Var<T> {
    const C = g.value.size;
    const { y: yv, stats } = this.be.layernorm(x.value, g.value, b.value, rows, C);
    const y = new Var(yv);
    this.record(() => {
      // Fused: dx is added into x's gradient so far by the kernel itself (x is usually the residual stream).
      const into = this.fuse ? x.grad : undefined;
      const r = this.be.layernormBackward(y.grad!, x.value, g.value, stats, rows, C, into);
      if (!into) this.accumulate(x, r.dx);
      this.accumulate(g, r.dgamma);
      this.accumulate(b, r.dbeta);
    });
    return y;
  }

  /** Multi-head self-attention core on the fused qkv projection [B, T, 3C]. */
  attention(qkv: Var<T>, s: AttentionShape): Var<T> {
    const { out, probs } = this.be.attention(qkv.value, s);
    const y = new Var(out);
    this.record(() => this.accumulate(qkv, this.be.attentionBackward(y.grad!, qkv.value, probs, s)));
    return y;
  }

  embedding(tokens: Tokens<T>, table: Param<T>, pos: Param<T> | undefined, B: number, T: number): Var<T> {
    const [V, C] = table.value.shape as [number, number];
    const y = new Var(this.be.embedding(tokens, table.value, C, pos ? { table: pos.value, T } : undefined));
    this.record(() => {
      this.accumulate(table, this.be.embeddingBackward(y.grad!, tokens, V, C));
      if (pos) this.accumulate(pos, this.be.positionalBackward(y.grad!, B, T, C));
    });
    return y;
  }

  /** Mean cross-entropy; the loss's gradient is computed with it and handed to `logits` on backward(). */
  crossEntropy(logits: Var<T>, targets: Tokens<T>, rows: number): Var<T> {
    const V = logits.value.size / rows;
    const { loss, dlogits } = this.be.crossEntropy(logits.value, targets, rows, V);
    this.record(() => this.accumulate(logits, dlogits));
    return new Var(loss);
  }
}

export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global gradient-norm clip; undefined for none. */
  maxNorm?: number;
}

/** One AdamW step over all parameters (decay only where param.decay), then drops the gradients. */
export function adamwStep<T extends BackendTensor>(be: Backend<T>, params: readonly Param<T>[], o: AdamWConfig, step: number): void {
  const withGrad = params.filter((p) => p.grad);
  const norm = o.maxNorm !== undefined ? be.gradNorm(withGrad.map((p) => p.grad!)) : undefined;
  for (const p of withGrad) {
    const settings: AdamWSettings = { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: p.decay ? o.weightDecay : 0, step, maxNorm: o.maxNorm };
    be.adamw(p.value, p.grad!, p.m, p.v, settings, norm);
    p.grad!.dispose();
    p.grad = undefined;
  }
  norm?.dispose();
}
