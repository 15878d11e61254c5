/**
 * Differentiable CLIP pieces on the engine's Tape (same pattern as Tape's own ops: forward now, a closure that
 * runs the backward kernels and accumulates into the inputs' gradients).
 */
import type { BackendTensor } from '../gpu/backend.ts';
import { Var, type Param, type Tape } from '../gpu/nn.ts';
import type { ClipOps } from './clip-ops.ts';

/** Adds g into p's gradient (p.grad takes g when it has none). */
function accumulateParam<T extends BackendTensor>(tape: Tape<T>, p: Param<T>, g: T): void {
  tape.accumulate(p, g);
}

/**
 * Patch embedding: the conv with kernel = stride = P and no bias, as im2col + matmul with the conv weight
 * [width, Ch·P·P] (PyTorch's [width, Ch, P, P] flattened). Images get no gradient.
 */
export function patchEmbed<T extends BackendTensor>(tape: Tape<T>, o: ClipOps<T>, images: T, W: Param<T>, B: number, Ch: number, H: number, P: number): Var<T> {
  const be = tape.be;
  const [width, K] = W.value.shape as [number, number];
  const patches = o.im2col(images, B, Ch, H, H, P);
  const rows = patches.size / K;
  const y = new Var(be.matmul(patches, W.value, rows, width, K, { transB: true }));
  tape.record(() => {
    if (W.grad) be.matmul(y.grad!, patches, width, K, rows, { transA: true, out: W.grad, accumulate: true });
    else W.grad = be.matmul(y.grad!, patches, width, K, rows, { transA: true });
  });
  return y;
}

/** [class token; patch tokens] + positional embedding. */
export function assembleTokens<T extends BackendTensor>(tape: Tape<T>, o: ClipOps<T>, patches: Var<T>, cls: Param<T>, pos: Param<T>, B: number, L: number): Var<T> {
  const C = cls.value.size;
  const y = new Var(o.assembleTokens(patches.value, cls.value, pos.value, B, L, C));
  tape.record(() => {
    const g = o.assembleTokensBackward(y.grad!, B, L, C);
    tape.accumulate(patches, g.dpatches);
    accumulateParam(tape, cls, g.dcls);
    accumulateParam(tape, pos, g.dpos);
  });
  return y;
}

/** y = x·P with P [in, out] (open_clip's `x @ self.proj` / `x @ self.text_projection`, not a Linear). */
export function project<T extends BackendTensor>(tape: Tape<T>, x: Var<T>, P: Param<T>, rows: number): Var<T> {
  const be = tape.be;
  const [inp, out] = P.value.shape as [number, number];
  const y = new Var(be.matmul(x.value, P.value, rows, out, inp));
  tape.record(() => {
    const dy = y.grad!;
    tape.accumulate(x, be.matmul(dy, P.value, rows, inp, out, { transB: true }));
    if (P.grad) be.matmul(x.value, dy, inp, out, rows, { transA: true, out: P.grad, accumulate: true });
    else P.grad = be.matmul(x.value, dy, inp, out, rows, { transA: true });
  });
  return y;
}

/** Rows x[b, idx[b], :] of x [B, T, C] (class-token and EOT pooling). */
export function gatherRows<T extends BackendTensor>(tape: Tape<T>, o: ClipOps<T>, x: Var<T>, idx: T, B: number, T: number, C: number): Var<T> {
  const y = new Var(o.gatherRows(x.value, idx, B, T, C));
  tape.record(() => tape.accumulate(x, o.gatherRowsBackward(y.grad!, idx, B, T, C)));
  return y;
}

export function l2normalize<T extends BackendTensor>(tape: Tape<T>, o: ClipOps<T>, x: Var<T>, rows: number, C: number): Var<T> {
  const { y: yv, norms } = o.l2normalize(x.value, rows, C);
  const y = new Var(yv);
  tape.record(() => tape.accumulate(x, o.l2normalizeBackward(y.grad!, yv, norms, rows, C)));
  return y;
}

/** logits[i, j] = exp(s)·⟨img_i, txt_j⟩ for normalised features [N, E]: logits_per_image. */
export function scaledLogits<T extends BackendTensor>(tape: Tape<T>, o: ClipOps<T>, img: Var<T>, txt: Var<T>, logitScale: Param<T>, N: number, E: number): Var<T> {
  const be = tape.be;
  const sim = new Var(be.matmul(img.value, txt.value, N, N, E, { transB: true }));
  const logits = new Var(o.scaleByExp(sim.value, logitScale.value));
  // Recorded in forward order (the tape replays backwards): the matmul's backward runs after the scale's.
  tape.record(() => {
    const dsim = sim.grad!;
    tape.accumulate(img, be.matmul(dsim, txt.value, N, E, N));
    tape.accumulate(txt, be.matmul(dsim, img.value, N, E, N, { transA: true }));
  });
  tape.record(() => {
    const { dx, ds } = o.scaleByExpBackward(logits.grad!, logits.value, logitScale.value);
    accumulateParam(tape, logitScale, ds);
    tape.accumulate(sim, dx);
  });
  return logits;
}

/** open_clip's ClipLoss: (CE(logits, arange) + CE(logitsᵀ, arange)) / 2; the loss [1] is where backward starts. */
export function clipLoss<T extends BackendTensor>(tape: Tape<T>, o: ClipOps<T>, logits: Var<T>, N: number): Var<T> {
  const { loss, dlogits } = o.clipLoss(logits.value, N);
  tape.record(() => tape.accumulate(logits, dlogits));
  return new Var(loss);
}
