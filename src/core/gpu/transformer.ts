/**
 * A small pre-LayerNorm transformer (CLIP's text-tower block: LN → fused qkv → attention → proj, LN → MLP 4×
 * with GELU), written once against the Backend so the same model runs on WebGPU and on the float64 reference.
 * Used by the toy training test (tests) and the block-step benchmark (bench/gpu.ts).
 */
import type { Backend, BackendTensor, Tokens } from './backend.ts';
import { adamwStep, Param, Tape, Var, type AdamWConfig } from './nn.ts';
import { Rng } from '../util/random.ts';

export interface BlockParams<T extends BackendTensor> {
  ln1g: Param<T>;
  ln1b: Param<T>;
  qkvW: Param<T>;
  qkvB: Param<T>;
  projW: Param<T>;
  projB: Param<T>;
  ln2g: Param<T>;
  ln2b: Param<T>;
  fc1W: Param<T>;
  fc1B: Param<T>;
  fc2W: Param<T>;
  fc2B: Param<T>;
}

export interface BlockShape {
  batch: number;
  seq: number;
  width: number;
  heads: number;
  causal: boolean;
}

/** Deterministic float32 initial values (identical on every backend): N(0, std²), gains 1, biases 0. */
export function initValues(rng: Rng, n: number, std: number, fill?: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = fill ?? rng.normal() * std;
  return out;
}

export function blockParams<T extends BackendTensor>(be: Backend<T>, rng: Rng, C: number, prefix: string): BlockParams<T> {
  const p = (name: string, shape: number[], std: number, decay: boolean, fill?: number) =>
    new Param(`${prefix}.${name}`, be.tensor(initValues(rng, shape.reduce((a, b) => a * b, 1), std, fill), shape), be, decay);
  const std = 0.02;
  return {
    ln1g: p('ln_1.weight', [C], 0, false, 1),
    ln1b: p('ln_1.bias', [C], 0, false, 0),
    qkvW: p('attn.in_proj_weight', [3 * C, C], std, true),
    qkvB: p('attn.in_proj_bias', [3 * C], 0, false, 0),
    projW: p('attn.out_proj.weight', [C, C], std, true),
    projB: p('attn.out_proj.bias', [C], 0, false, 0),
    ln2g: p('ln_2.weight', [C], 0, false, 1),
    ln2b: p('ln_2.bias', [C], 0, false, 0),
    fc1W: p('mlp.c_fc.weight', [4 * C, C], std, true),
    fc1B: p('mlp.c_fc.bias', [4 * C], 0, false, 0),
    fc2W: p('mlp.c_proj.weight', [C, 4 * C], std, true),
    fc2B: p('mlp.c_proj.bias', [C], 0, false, 0),
  };
}

export function blockParamList<T extends BackendTensor>(b: BlockParams<T>): Param<T>[] {
  return Object.values(b);
}

/** x [B·T, C] → x + attn(ln1(x)) → + mlp(ln2(·)); fused ops unless the tape says otherwise (Tape.fuse). */
export function transformerBlock<T extends BackendTensor>(tape: Tape<T>, x: Var<T>, p: BlockParams<T>, s: BlockShape): Var<T> {
  const rows = s.batch * s.seq;
  const h1 = tape.layernorm(x, p.ln1g, p.ln1b, rows);
  const qkv = tape.linear(h1, p.qkvW, p.qkvB, rows);
  const att = tape.attention(qkv, { B: s.batch, T: s.seq, H: s.heads, D: s.width / s.heads, causal: s.causal });
  const x1 = tape.linearResidual(att, p.projW, p.projB, x, rows);
  const h2 = tape.layernorm(x1, p.ln2g, p.ln2b, rows);
  return tape.mlp(h2, p.fc1W, p.fc1B, p.fc2W, p.fc2B, x1, rows);
}

export interface TinyLmConfig {
  vocab: number;
  seq: number;
  width: number;
  heads: number;
  layers: number;
  batch: number;
  seed: number;
}

/** A causal language model: token + position embeddings, `layers` blocks, final LN, untied output head. */
export class TinyLm<T extends BackendTensor> {
  readonly tokenEmbedding: Param<T>;
  readonly positionEmbedding: Param<T>;
  readonly blocks: BlockParams<T>[];
  readonly lnfG: Param<T>;
  readonly lnfB: Param<T>;
  readonly head: Param<T>;
  readonly params: Param<T>[];

  constructor(readonly be: Backend<T>, readonly cfg: TinyLmConfig) {
    const rng = new Rng(cfg.seed);
    const C = cfg.width;
    this.tokenEmbedding = new Param('token_embedding.weight', be.tensor(initValues(rng, cfg.vocab * C, 0.02), [cfg.vocab, C]), be, false);
    this.positionEmbedding = new Param('positional_embedding', be.tensor(initValues(rng, cfg.seq * C, 0.01), [cfg.seq, C]), be, false);
    this.blocks = Array.from({ length: cfg.layers }, (_, i) => blockParams(be, rng, C, `transformer.resblocks.${i}`));
    this.lnfG = new Param('ln_final.weight', be.tensor(initValues(rng, C, 0, 1), [C]), be, false);
    this.lnfB = new Param('ln_final.bias', be.tensor(initValues(rng, C, 0, 0), [C]), be, false);
    this.head = new Param('head.weight', be.tensor(initValues(rng, cfg.vocab * C, 0.02), [cfg.vocab, C]), be, true);
    this.params = [this.tokenEmbedding, this.positionEmbedding, ...this.blocks.flatMap(blockParamList), this.lnfG, this.lnfB, this.head];
  }

  /** One training step (forward, backward, AdamW) recorded without readback; returns the loss tensor [1]. */
  step(tokens: Tokens<T>, targets: Tokens<T>, optimizer: AdamWConfig, step: number): T {
    const { be, cfg } = this;
    const rows = cfg.batch * cfg.seq;
    const tape = new Tape(be);
    let x = tape.embedding(tokens, this.tokenEmbedding, this.positionEmbedding, cfg.batch, cfg.seq);
    const shape: BlockShape = { batch: cfg.batch, seq: cfg.seq, width: cfg.width, heads: cfg.heads, causal: true };
    for (const b of this.blocks) x = transformerBlock(tape, x, b, shape);
    const logits = tape.linear(tape.layernorm(x, this.lnfG, this.lnfB, rows), this.head, undefined, rows);
    const loss = tape.crossEntropy(logits, targets, rows);
    tape.backward();
    adamwStep(be, this.params, optimizer, step);
    return loss.value;
  }
}

/**
 * The toy task: each sequence is a random first half followed by its copy, so the second half is predictable
 * only by attending back T/2 positions. Targets are the next token (the last position predicts token 0).
 */
export function copyTaskBatch(rng: Rng, batch: number, seq: number, vocab: number): { tokens: number[]; targets: number[] } {
  const tokens: number[] = [];
  const targets: number[] = [];
  const half = Math.floor(seq / 2);
  for (let b = 0; b < batch; b++) {
    const first = Array.from({ length: half }, () => 1 + rng.int(vocab - 1));
    const row = [...first, ...first, ...Array(seq - 2 * half).fill(0)].slice(0, seq);
    tokens.push(...row);
    targets.push(...row.slice(1), 0);
  }
  return { tokens, targets };
}

/** Trains a TinyLm for `steps` steps on the copy task and returns the loss after every step. */
export async function trainTinyLm<T extends BackendTensor>(be: Backend<T>, cfg: TinyLmConfig, steps: number, optimizer: AdamWConfig): Promise<number[]> {
  const model = new TinyLm(be, cfg);
  const data = new Rng(cfg.seed + 1);
  const losses: number[] = [];
  for (let s = 1; s <= steps; s++) {
    const { tokens, targets } = copyTaskBatch(data, cfg.batch, cfg.seq, cfg.vocab);
    be.beginScope();
    const tok = be.tokens(tokens, [cfg.batch, cfg.seq]);
    const tgt = be.tokens(targets, [cfg.batch * cfg.seq]);
    const loss = model.step(tok, tgt, optimizer, s);
    losses.push((await be.read(loss))[0]!);
    tok.dispose();
    tgt.dispose();
    be.endScope();
  }
  return losses;
}
