/**
 * CLIP as open_clip (2.16.1) builds it, written once against the engine's Backend so the same model runs on
 * WebGPU and on the float64 reference:
 *
 *   image: conv1 (patch embedding, no bias) → [class token; patches] + positional embedding → ln_pre →
 *          pre-norm residual blocks (nn.GELU) → ln_post on the class token → @ proj
 *   text:  token + positional embedding → causal blocks → ln_final at the EOT token (argmax of the ids) → @ text_projection
 *   loss:  logits = exp(logit_scale)·normalize(img)·normalize(txt)ᵀ, (CE(rows) + CE(columns))/2;
 *          logit_scale starts at ln(1/0.07) and is clamped to [0, ln 100] after every step.
 *
 * LayerNorm is per token, so pooling before ln_post / ln_final gives the same features with less work.
 * Parameters carry open_clip's state-dict names, shapes and initialisation (checkpoint.ts maps them one-to-one);
 * the one layout change is conv1.weight, held as [width, 3·P·P] for the patch matmul: the same row-major bytes
 * as PyTorch's [width, 3, P, P].
 */
import type { Backend, BackendTensor, Tokens } from '../gpu/backend.ts';
import { adamwStep, Param, Tape, type AdamWConfig, type Var } from '../gpu/nn.ts';
import { transformerBlock, type BlockParams } from '../gpu/transformer.ts';
import { eotPositions } from '../text/tokenizer.ts';
import { PIXEL_TABLE } from '../train/augment.ts';
import { Rng } from '../util/random.ts';
import { clipOps, type ClipOps } from './clip-ops.ts';
import { gridTokens, type ClipConfig } from './configs.ts';
import * as layers from './layers.ts';

export const INIT_LOGIT_SCALE = Math.log(1 / 0.07);
export const MAX_LOGIT_SCALE = Math.log(100);

/** Name → float32 values (row-major) and open_clip's shape. */
export type StateDict = Map<string, { data: Float32Array; shape: number[] }>;

interface ParamSpec {
  name: string;
  /** Shape in open_clip's state dict. */
  shape: number[];
  /** Shape held on the backend (differs only for conv1.weight). */
  engineShape?: number[];
  init: (rng: Rng, n: number) => Float32Array;
  /** open_clip's weight-decay rule: ndim ≥ 2 and not a gain, bias or logit_scale. */
  decay: boolean;
}

const normal = (std: number) => (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng.normal() * std);
const uniform = (bound: number) => (rng: Rng, n: number) => Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound);
const constant = (v: number) => (_: Rng, n: number) => new Float32Array(n).fill(v);

/**
 * One residual block's parameters with open_clip's initialisation. The text tower re-initialises the weights
 * (TextTransformer.init_parameters); the vision tower keeps PyTorch's defaults (xavier-uniform in_proj,
 * kaiming-uniform Linear weights and biases, zero attention biases).
 */
function blockSpecs(prefix: string, C: number, tower: 'vision' | 'text', layers: number): ParamSpec[] {
  const text = tower === 'text';
  const attnStd = C ** -0.5;
  const projStd = C ** -0.5 * (2 * layers) ** -0.5;
  const fcStd = (2 * C) ** -0.5;
  const p = (name: string, shape: number[], init: ParamSpec['init'], decay: boolean): ParamSpec => ({ name: `${prefix}.${name}`, shape, init, decay });
  return [
    p('ln_1.weight', [C], constant(1), false),
    p('ln_1.bias', [C], constant(0), false),
    p('attn.in_proj_weight', [3 * C, C], text ? normal(attnStd) : uniform(Math.sqrt(6 / (C + 3 * C))), true),
    p('attn.in_proj_bias', [3 * C], constant(0), false),
    p('attn.out_proj.weight', [C, C], text ? normal(projStd) : uniform(1 / Math.sqrt(C)), true),
    p('attn.out_proj.bias', [C], constant(0), false),
    p('ln_2.weight', [C], constant(1), false),
    p('ln_2.bias', [C], constant(0), false),
    p('mlp.c_fc.weight', [4 * C, C], text ? normal(fcStd) : uniform(1 / Math.sqrt(C)), true),
    p('mlp.c_fc.bias', [4 * C], uniform(1 / Math.sqrt(C)), false),
    p('mlp.c_proj.weight', [C, 4 * C], text ? normal(projStd) : uniform(1 / Math.sqrt(4 * C)), true),
    p('mlp.c_proj.bias', [C], uniform(1 / Math.sqrt(4 * C)), false),
  ];
}

/** Every parameter of a config, in open_clip's state-dict naming. */
export function clipParamSpecs(cfg: ClipConfig): ParamSpec[] {
  const v = cfg.vision;
  const t = cfg.text;
  const K = 3 * v.patchSize * v.patchSize;
  const vScale = v.width ** -0.5;
  const specs: ParamSpec[] = [
    { name: 'visual.class_embedding', shape: [v.width], init: normal(vScale), decay: false },
    { name: 'visual.positional_embedding', shape: [gridTokens(v) + 1, v.width], init: normal(vScale), decay: true },
    { name: 'visual.proj', shape: [v.width, cfg.embedDim], init: normal(vScale), decay: true },
    { name: 'visual.conv1.weight', shape: [v.width, 3, v.patchSize, v.patchSize], engineShape: [v.width, K], init: uniform(1 / Math.sqrt(K)), decay: true },
    { name: 'visual.ln_pre.weight', shape: [v.width], init: constant(1), decay: false },
    { name: 'visual.ln_pre.bias', shape: [v.width], init: constant(0), decay: false },
  ];
  for (let i = 0; i < v.layers; i++) specs.push(...blockSpecs(`visual.transformer.resblocks.${i}`, v.width, 'vision', v.layers));
  specs.push(
    { name: 'visual.ln_post.weight', shape: [v.width], init: constant(1), decay: false },
    { name: 'visual.ln_post.bias', shape: [v.width], init: constant(0), decay: false },
    { name: 'positional_embedding', shape: [t.contextLength, t.width], init: normal(0.01), decay: true },
    { name: 'text_projection', shape: [t.width, cfg.embedDim], init: normal(t.width ** -0.5), decay: true },
    { name: 'logit_scale', shape: [], init: constant(INIT_LOGIT_SCALE), decay: false },
    { name: 'token_embedding.weight', shape: [t.vocabSize, t.width], init: normal(0.02), decay: true },
  );
  for (let i = 0; i < t.layers; i++) specs.push(...blockSpecs(`transformer.resblocks.${i}`, t.width, 'text', t.layers));
  specs.push(
    { name: 'ln_final.weight', shape: [t.width], init: constant(1), decay: false },
    { name: 'ln_final.bias', shape: [t.width], init: constant(0), decay: false },
  );
  return specs;
}

const BLOCK_KEYS: [keyof BlockParams<BackendTensor>, string][] = [
  ['ln1g', 'ln_1.weight'], ['ln1b', 'ln_1.bias'], ['qkvW', 'attn.in_proj_weight'], ['qkvB', 'attn.in_proj_bias'],
  ['projW', 'attn.out_proj.weight'], ['projB', 'attn.out_proj.bias'], ['ln2g', 'ln_2.weight'], ['ln2b', 'ln_2.bias'],
  ['fc1W', 'mlp.c_fc.weight'], ['fc1B', 'mlp.c_fc.bias'], ['fc2W', 'mlp.c_proj.weight'], ['fc2B', 'mlp.c_proj.bias'],
];

export interface ClipBatch<T extends BackendTensor> {
  /** Normalised images [B, 3, S, S] (S = vision.imageSize). */
  images: T;
  /** Token ids [B, contextLength]. */
  tokens: Tokens<T>;
  /** EOT positions [B] (argmax of each row's ids), as ClipOps.indices. */
  eot: T;
  size: number;
}

export interface ClipOutputs<T extends BackendTensor> {
  loss: Var<T>;
  logits: Var<T>;
  imageFeatures: Var<T>;
  textFeatures: Var<T>;
}

export class ClipModel<T extends BackendTensor> {
  readonly ops: ClipOps<T>;
  readonly params: Param<T>[] = [];
  readonly byName = new Map<string, Param<T>>();
  readonly specs: ParamSpec[];
  private readonly visionBlocks: BlockParams<T>[];
  private readonly textBlocks: BlockParams<T>[];
  /** Records the fused ops (Tape.fuse); false: the unfused ones (before/after comparisons). */
  fuse = true;

  /** Initialised as open_clip does from `seed`, or from a state dict (every name and shape must match). */
  constructor(readonly be: Backend<T>, readonly cfg: ClipConfig, init: { seed: number } | { state: StateDict }) {
    this.ops = clipOps(be);
    this.specs = clipParamSpecs(cfg);
    const rng = 'seed' in init ? new Rng(init.seed) : undefined;
    for (const spec of this.specs) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      let values: Float32Array;
      if (rng) values = spec.init(rng, n);
      else {
        const entry = (init as { state: StateDict }).state.get(spec.name);
        if (!entry) throw new Error(`state dict has no ${spec.name}`);
        if (entry.shape.join() !== spec.shape.join()) throw new Error(`${spec.name}: shape ${JSON.stringify(entry.shape)}, expected ${JSON.stringify(spec.shape)}`);
        values = entry.data;
      }
      const p = new Param(spec.name, be.tensor(values, spec.engineShape ?? spec.shape), be, spec.decay);
      this.params.push(p);
      this.byName.set(spec.name, p);
    }
    const blocks = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => Object.fromEntries(BLOCK_KEYS.map(([k, name]) => [k, this.param(`${prefix}.${i}.${name}`)])) as unknown as BlockParams<T>);
    this.visionBlocks = blocks('visual.transformer.resblocks', cfg.vision.layers);
    this.textBlocks = blocks('transformer.resblocks', cfg.text.layers);
  }

  param(name: string): Param<T> {
    const p = this.byName.get(name);
    if (!p) throw new Error(`no parameter ${name}`);
    return p;
  }

  /** Image features before normalisation [B, embedDim]. */
  encodeImage(tape: Tape<T>, images: T, B: number): Var<T> {
    const v = this.cfg.vision;
    const L = gridTokens(v);
    const T = L + 1;
    const p = (n: string) => this.param(`visual.${n}`);
    const patches = layers.patchEmbed(tape, this.ops, images, p('conv1.weight'), B, 3, v.imageSize, v.patchSize);
    let x = layers.assembleTokens(tape, this.ops, patches, p('class_embedding'), p('positional_embedding'), B, L);
    x = tape.layernorm(x, p('ln_pre.weight'), p('ln_pre.bias'), B * T);
    const shape = { batch: B, seq: T, width: v.width, heads: v.heads, causal: false };
    for (const block of this.visionBlocks) x = transformerBlock(tape, x, block, shape);
    const cls = layers.gatherRows(tape, this.ops, x, this.ops.indices(new Uint32Array(B)), B, T, v.width);
    const pooled = tape.layernorm(cls, p('ln_post.weight'), p('ln_post.bias'), B);
    return layers.project(tape, pooled, p('proj'), B);
  }

  /** Text features before normalisation [B, embedDim]. */
  encodeText(tape: Tape<T>, tokens: Tokens<T>, eot: T, B: number): Var<T> {
    const t = this.cfg.text;
    const T = t.contextLength;
    let x = tape.embedding(tokens, this.param('token_embedding.weight'), this.param('positional_embedding'), B, T);
    const shape = { batch: B, seq: T, width: t.width, heads: t.heads, causal: true };
    for (const block of this.textBlocks) x = transformerBlock(tape, x, block, shape);
    const pooled = tape.layernorm(layers.gatherRows(tape, this.ops, x, eot, B, T, t.width), this.param('ln_final.weight'), this.param('ln_final.bias'), B);
    return layers.project(tape, pooled, this.param('text_projection'), B);
  }

  /** Features, logits_per_image and the contrastive loss of one batch, recorded on `tape`. */
  forward(tape: Tape<T>, batch: ClipBatch<T>): ClipOutputs<T> {
    const B = batch.size;
    const E = this.cfg.embedDim;
    const imageFeatures = layers.l2normalize(tape, this.ops, this.encodeImage(tape, batch.images, B), B, E);
    const textFeatures = layers.l2normalize(tape, this.ops, this.encodeText(tape, batch.tokens, batch.eot, B), B, E);
    const logits = layers.scaledLogits(tape, this.ops, imageFeatures, textFeatures, this.param('logit_scale'), B, E);
    return { loss: layers.clipLoss(tape, this.ops, logits, B), logits, imageFeatures, textFeatures };
  }

  /** Forward and backward: gradients land in each Param's `grad`. Returns the outputs (loss [1]). */
  lossAndGradients(batch: ClipBatch<T>): ClipOutputs<T> {
    const tape = new Tape(this.be, { fuse: this.fuse });
    const out = this.forward(tape, batch);
    tape.backward();
    return out;
  }

  /** One training step: forward, backward, AdamW, then open_clip's clamp of logit_scale to [0, ln 100]. */
  step(batch: ClipBatch<T>, optimizer: AdamWConfig, step: number): T {
    const out = this.lossAndGradients(batch);
    adamwStep(this.be, this.params, optimizer, step);
    this.ops.clampInPlace(this.param('logit_scale').value, 0, MAX_LOGIT_SCALE);
    return out.loss.value;
  }

  /** The weights as float32 under open_clip's names and shapes. */
  async stateDict(): Promise<StateDict> {
    const out: StateDict = new Map();
    for (const spec of this.specs) out.set(spec.name, { data: Float32Array.from(await this.be.read(this.param(spec.name).value)), shape: spec.shape });
    return out;
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = undefined;
    }
  }
}

/**
 * A batch on the backend from host arrays: images [B, 3, S, S] and token ids [B, ctx] (EOT = argmax per row).
 * Images are either normalised values, or a Uint8Array of raw CHW pixels (the loader's TrainBatch.pixels),
 * uploaded as bytes and normalised on the backend with the same float32 values (augment.ts PIXEL_TABLE).
 */
export function clipBatch<T extends BackendTensor>(be: Backend<T>, cfg: ClipConfig, images: ArrayLike<number> | Uint8Array, ids: ArrayLike<number>): ClipBatch<T> {
  const S = cfg.vision.imageSize;
  const ctx = cfg.text.contextLength;
  const B = ids.length / ctx;
  if (!Number.isInteger(B) || images.length !== B * 3 * S * S) throw new Error(`batch: ${ids.length} ids and ${images.length} pixels do not make whole samples of ${ctx} tokens and 3×${S}×${S} pixels`);
  const eot = eotPositions(ids, B, ctx);
  const shape = [B, 3, S, S];
  const pixels = images instanceof Uint8Array ? be.pixels(images, shape, PIXEL_TABLE) : be.tensor(images, shape);
  return { images: pixels, tokens: be.tokens(ids, [B, ctx]), eot: clipOps(be).indices(eot), size: B };
}
