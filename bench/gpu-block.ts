/**
 * One transformer-block training step (CLIP's residual attention block: LN → qkv → attention → proj, LN → MLP 4×
 * GELU; loss ⟨y, R⟩ for a fixed random R; backward; optimizer), on the engine and on tfjs-webgpu.
 * The engine records the whole step into one submission (forward, backward, fused AdamW with weight-decay mask
 * and gradient clipping). tfjs runs the same math with its own ops, tf.variableGrads and tf.train.adam (tfjs has
 * no AdamW; the decay term is one extra elementwise op per weight, small beside the step).
 */
import { GpuBackend } from '../src/core/gpu/backend.ts';
import type { Engine } from '../src/core/gpu/engine.ts';
import { adamwStep, Tape, Var } from '../src/core/gpu/nn.ts';
import { blockParamList, blockParams, transformerBlock, type BlockShape as ModelBlockShape } from '../src/core/gpu/transformer.ts';
import { Rng } from '../src/core/util/random.ts';

export interface BlockShape extends ModelBlockShape {
  /** Run on CPU adapters / on GPUs. */
  cpu: boolean;
  gpu: boolean;
}

export const BLOCK_SHAPES: BlockShape[] = [
  // Small enough that the host's recording cost (~90 dispatches per step) dominates: the engine's overhead per op.
  { batch: 2, seq: 16, width: 64, heads: 2, causal: true, cpu: true, gpu: true },
  { batch: 4, seq: 77, width: 128, heads: 4, causal: true, cpu: true, gpu: false },
  { batch: 8, seq: 77, width: 256, heads: 4, causal: true, cpu: true, gpu: false },
  // ViT-B/32's text block (width 512, 8 heads, causal, 77 tokens) and vision block (768, 12 heads, 50 tokens).
  { batch: 64, seq: 77, width: 512, heads: 8, causal: true, cpu: false, gpu: true },
  { batch: 128, seq: 50, width: 768, heads: 12, causal: false, cpu: false, gpu: true },
];

const OPTIMIZER = { lr: 1e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, maxNorm: 1 };

function randoms(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

export function blockStepEngine(engine: Engine, s: BlockShape): { run: () => void; dispose: () => void } {
  const be = new GpuBackend(engine);
  const rng = new Rng(7);
  const rows = s.batch * s.seq;
  const params = blockParams(be, rng, s.width, 'block');
  const list = blockParamList(params);
  const x = engine.tensor(randoms(rng, rows * s.width), [rows, s.width]);
  const seed = engine.tensor(randoms(rng, rows * s.width, 1 / rows), [rows, s.width]);
  let step = 0;
  return {
    run: () => {
      be.beginScope();
      const tape = new Tape(be);
      const y = transformerBlock(tape, new Var(x), params, s);
      tape.backward(y, be.copy(seed));
      adamwStep(be, list, OPTIMIZER, ++step);
      be.endScope();
    },
    dispose: () => {
      for (const p of list) {
        p.value.dispose();
        p.m.dispose();
        p.v.dispose();
      }
      x.dispose();
      seed.dispose();
    },
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function blockStepTfjs(tf: any, s: BlockShape): { run: () => void; dispose: () => void } {
  const rng = new Rng(7);
  const C = s.width;
  const H = s.heads;
  const D = C / H;
  const rows = s.batch * s.seq;
  const v = (shape: number[], std: number, fill?: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return tf.variable(tf.tensor(fill === undefined ? randoms(rng, n, std) : new Float32Array(n).fill(fill), shape));
  };
  const p = {
    ln1g: v([C], 0, 1), ln1b: v([C], 0, 0), qkvW: v([3 * C, C], 0.02), qkvB: v([3 * C], 0, 0),
    projW: v([C, C], 0.02), projB: v([C], 0, 0), ln2g: v([C], 0, 1), ln2b: v([C], 0, 0),
    fc1W: v([4 * C, C], 0.02), fc1B: v([4 * C], 0, 0), fc2W: v([C, 4 * C], 0.02), fc2B: v([C], 0, 0),
  };
  const x = tf.tensor(randoms(rng, rows * C), [rows, C]);
  const seed = tf.tensor(randoms(rng, rows * C, 1 / rows), [rows, C]);
  const mask = tf.tensor(Float32Array.from({ length: s.seq * s.seq }, (_, i) => (s.causal && i % s.seq > Math.floor(i / s.seq) ? -1e9 : 0)), [s.seq, s.seq]);
  const optimizer = tf.train.adam(OPTIMIZER.lr, OPTIMIZER.beta1, OPTIMIZER.beta2, OPTIMIZER.eps);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  // Functional tfjs API throughout: the ESM build registers no chained tensor methods.
  const { add, mul, sub, matMul } = tf;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const ln = (h: any, g: any, b: any) => {
    const { mean, variance } = tf.moments(h, -1, true);
    return add(mul(mul(sub(h, mean), tf.rsqrt(add(variance, 1e-5))), g), b);
  };
  const loss = () => {
    const qkv = add(matMul(ln(x, p.ln1g, p.ln1b), p.qkvW, false, true), p.qkvB);
    const heads = tf.transpose(tf.reshape(qkv, [s.batch, s.seq, 3, H, D]), [2, 0, 3, 1, 4]);
    const [q, k, vv] = tf.unstack(heads);
    const probs = tf.softmax(add(mul(matMul(q, k, false, true), 1 / Math.sqrt(D)), mask));
    const att = tf.reshape(tf.transpose(matMul(probs, vv), [0, 2, 1, 3]), [rows, C]);
    const x1 = add(x, add(matMul(att, p.projW, false, true), p.projB));
    const f1 = add(matMul(ln(x1, p.ln2g, p.ln2b), p.fc1W, false, true), p.fc1B);
    const g = mul(mul(f1, 0.5), add(tf.erf(mul(f1, Math.SQRT1_2)), 1));
    const y = add(x1, add(matMul(g, p.fc2W, false, true), p.fc2B));
    return tf.sum(mul(y, seed));
  };
  return {
    run: () => optimizer.minimize(loss),
    dispose: () => {
      for (const t of [...Object.values(p), x, seed, mask]) t.dispose();
      optimizer.dispose();
    },
  };
}
