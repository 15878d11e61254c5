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

export class Tape<T extends BackendTensor> {
  private steps: (() => void)[] = [];
  constructor(readonly be: Backend<T>) {}

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
      if (W.grad) this.be.matmul(dy, x.value, out, inp, rows, { transA: true, out: W.grad, accumulate: true });
      else W.grad = this.be.matmul(dy, x.value, out, inp, rows, { transA: true });
      if (b) {
        if (b.grad) this.be.sumRows(dy, rows, out, b.grad, true);
        else b.grad = this.be.sumRows(dy, rows, out);
      }
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
      const r = this.be.layernormBackward(y.grad!, x.value, g.value, stats, rows, C);
      this.accumulate(x, r.dx);
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
