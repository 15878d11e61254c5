// CLIP on the engine: the float64 reference's gradients against finite differences, then the same model on
// WebGPU (Dawn, GL ES compat adapter on llvmpipe) against the reference, forward and backward; checkpoints with
// open_clip's names and shapes; training steps with the logit-scale clamp.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { loadCheckpoint, saveCheckpoint } from '../../server/model/checkpoint.ts';
import { GpuBackend, RefBackend, type RefTensor } from '../../src/core/gpu/backend.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { ClipModel, clipBatch, INIT_LOGIT_SCALE, MAX_LOGIT_SCALE } from '../../src/core/model/clip.ts';
import { clipConfig, type ClipConfig } from '../../src/core/model/configs.ts';
import { Rng } from '../../src/core/util/random.ts';

/** Small enough for finite differences in float64 on a CPU. */
const MICRO: ClipConfig = {
  name: 'micro',
  embedDim: 16,
  vision: { imageSize: 16, patchSize: 8, width: 16, layers: 2, heads: 2 },
  text: { contextLength: 12, vocabSize: 50, width: 16, heads: 2, layers: 2 },
};

/** Random images and captions of different lengths, framed like the tokenizer's output (sot … eot, zeros). */
function sampleBatch(cfg: ClipConfig, B: number, seed: number): { images: Float32Array; ids: number[] } {
  const rng = new Rng(seed);
  const S = cfg.vision.imageSize;
  const V = cfg.text.vocabSize;
  const ctx = cfg.text.contextLength;
  const images = Float32Array.from({ length: B * 3 * S * S }, () => rng.normal());
  const ids: number[] = [];
  for (let b = 0; b < B; b++) {
    const len = 2 + ((b * 3) % (ctx - 2));
    for (let t = 0; t < ctx; t++) ids.push(t === 0 ? V - 2 : t < len ? 1 + rng.int(V - 3) : t === len ? V - 1 : 0);
  }
  return { images, ids };
}

test('CLIP on the float64 reference: gradients match central finite differences', () => {
  const be = new RefBackend();
  const { images, ids } = sampleBatch(MICRO, 4, 2);
  const model = new ClipModel(be, MICRO, { seed: 7 });
  const batch = clipBatch(be, MICRO, images, ids);
  const out = model.lossAndGradients(batch);
  const L0 = (out.loss.value as RefTensor).data[0]!;
  assert.ok(L0 > 0.5 && L0 < 3, `loss ${L0}`);
  const grads = new Map(model.params.map((p) => [p.name, (p.grad as RefTensor).data.slice()]));
  const evalLoss = () => {
    model.zeroGrad();
    const l = (model.lossAndGradients(batch).loss.value as RefTensor).data[0]!;
    model.zeroGrad();
    return l;
  };
  const rng = new Rng(3);
  const probes: [string, number?][] = [
    ['visual.conv1.weight'], ['visual.class_embedding'], ['visual.positional_embedding'], ['visual.ln_pre.weight'],
    ['visual.transformer.resblocks.0.attn.in_proj_weight'], ['visual.transformer.resblocks.1.mlp.c_proj.bias'],
    ['visual.ln_post.bias'], ['visual.proj'], ['token_embedding.weight', ids[1]! * MICRO.text.width + 3],
    ['positional_embedding', 2 * MICRO.text.width + 5], ['transformer.resblocks.0.mlp.c_fc.weight'],
    ['transformer.resblocks.1.attn.out_proj.weight'], ['ln_final.weight'], ['text_projection'], ['logit_scale', 0],
  ];
  const h = 1e-5;
  for (const [name, fixed] of probes) {
    const p = model.param(name);
    const data = (p.value as RefTensor).data;
    const i = fixed ?? rng.int(data.length);
    const keep = data[i]!;
    data[i] = keep + h;
    const up = evalLoss();
    data[i] = keep - h;
    const down = evalLoss();
    data[i] = keep;
    const fd = (up - down) / (2 * h);
    const an = grads.get(name)![i]!;
    assert.ok(Math.abs(fd - an) <= 1e-7 + 1e-5 * Math.abs(an), `${name}[${i}]: analytic ${an}, finite difference ${fd}`);
    assert.ok(name === 'logit_scale' || Math.abs(an) > 1e-9 || name.includes('bias'), `${name}[${i}] has a zero gradient: probe another element`);
  }
});

test('CLIP wb-tiny on WebGPU matches the float64 reference, forward and backward', async () => {
  const cfg = clipConfig('wb-tiny');
  const { images, ids } = sampleBatch(cfg, 4, 5);
  const ref = new RefBackend();
  const mr = new ClipModel(ref, cfg, { seed: 1 });
  const outR = mr.lossAndGradients(clipBatch(ref, cfg, images, ids));
  const engine = new Engine(await openDawn({ backend: 'opengles' }));
  try {
    const gpu = new GpuBackend(engine);
    const mg = new ClipModel(gpu, cfg, { seed: 1 });
    const outG = mg.lossAndGradients(clipBatch(gpu, cfg, images, ids));
    const lossR = (await ref.read(outR.loss.value))[0]!;
    const lossG = (await gpu.read(outG.loss.value))[0]!;
    assert.ok(Math.abs(lossR - lossG) < 1e-5, `loss ${lossG} vs ${lossR}`);
    const logitsR = await ref.read(outR.logits.value);
    const logitsG = await gpu.read(outG.logits.value);
    logitsR.forEach((v, i) => assert.ok(Math.abs(v - logitsG[i]!) < 1e-4 * 14.3, `logit ${i}: ${logitsG[i]} vs ${v}`));
    // Every parameter's gradient, relative to the largest entry of that gradient (f32 accumulation).
    for (const p of mr.params) {
      const a = await ref.read(p.grad!);
      const b = await gpu.read(mg.param(p.name).grad!);
      assert.equal(b.length, a.length, p.name);
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < a.length; i++) {
        scale = Math.max(scale, Math.abs(a[i]!));
        diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
      }
      assert.ok(diff <= 1e-4 * scale + 1e-9, `${p.name}: gradients differ by ${diff} (largest ${scale})`);
    }

    // Training steps on both backends follow each other; the logit scale is clamped to ln 100 after each step.
    const opt = { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2 };
    const steps = async <T extends RefTensor | import('../../src/core/gpu/engine.ts').Tensor>(be: RefBackend | GpuBackend, model: ClipModel<T>) => {
      const losses: number[] = [];
      for (let s = 1; s <= 3; s++) {
        be.beginScope();
        const b = sampleBatch(cfg, 4, 10 + s);
        const batch = clipBatch(be as never, cfg, b.images, b.ids);
        losses.push((await be.read(model.step(batch as never, opt, s) as never))[0]!);
        be.endScope();
      }
      return losses;
    };
    mr.zeroGrad();
    mg.zeroGrad();
    const curveR = await steps(ref, mr);
    const curveG = await steps(gpu, mg);
    curveR.forEach((l, i) => assert.ok(Math.abs(l - curveG[i]!) < 1e-4, `step ${i + 1}: ${curveG[i]} vs ${l}`));
    const scaleAfter = (await gpu.read(mg.param('logit_scale').value))[0]!;
    assert.ok(scaleAfter !== Math.fround(INIT_LOGIT_SCALE) && scaleAfter <= MAX_LOGIT_SCALE, `logit scale ${scaleAfter}`);
  } finally {
    engine.destroy();
  }
});

test('logit_scale is clamped to [0, ln 100] after a step', () => {
  const be = new RefBackend();
  const model = new ClipModel(be, MICRO, { seed: 1 });
  (model.param('logit_scale').value as RefTensor).data[0] = 4.7;
  const { images, ids } = sampleBatch(MICRO, 4, 9);
  // Adam's first step moves every parameter by lr·sign(grad): with lr 10 the scale leaves [0, ln 100] whichever
  // way its gradient points, and the clamp must bring it back to the bound.
  model.step(clipBatch(be, MICRO, images, ids), { lr: 10, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0 }, 1);
  const s = (model.param('logit_scale').value as RefTensor).data[0]!;
  assert.ok(s >= 0 && s <= MAX_LOGIT_SCALE, `logit scale ${s}`);
  assert.ok(s === 0 || s === MAX_LOGIT_SCALE, `an lr-10 step lands on a bound, got ${s}`);
});

test('checkpoints: open_clip state-dict names and shapes, atomic save, exact reload', async () => {
  const cfg = clipConfig('wb-tiny');
  const be = new RefBackend();
  const model = new ClipModel(be, cfg, { seed: 4 });
  const dir = await mkdtemp(join(tmpdir(), 'dcw-ckpt-'));
  try {
    const path = join(dir, 'epoch_1.safetensors');
    await saveCheckpoint(path, model, { epoch: '1' });
    const { state, metadata } = await loadCheckpoint(path, cfg);
    assert.equal(metadata.model, 'wb-tiny');
    assert.equal(metadata.epoch, '1');
    // Names and shapes as open_clip's CLIP(embed_dim=64, vision_cfg(image 32, patch 8, width 64, layers 2),
    // text_cfg(ctx 32, vocab 49408, width 64, heads 4, layers 2)).state_dict() has them.
    const expected: [string, number[]][] = [
      ['visual.conv1.weight', [64, 3, 8, 8]], ['visual.class_embedding', [64]], ['visual.positional_embedding', [17, 64]],
      ['visual.ln_pre.weight', [64]], ['visual.ln_pre.bias', [64]],
      ['visual.transformer.resblocks.0.attn.in_proj_weight', [192, 64]], ['visual.transformer.resblocks.0.attn.in_proj_bias', [192]],
      ['visual.transformer.resblocks.0.attn.out_proj.weight', [64, 64]], ['visual.transformer.resblocks.1.ln_1.weight', [64]],
      ['visual.transformer.resblocks.1.mlp.c_fc.weight', [256, 64]], ['visual.transformer.resblocks.1.mlp.c_proj.weight', [64, 256]],
      ['visual.ln_post.weight', [64]], ['visual.proj', [64, 64]], ['token_embedding.weight', [49408, 64]],
      ['positional_embedding', [32, 64]], ['transformer.resblocks.1.ln_2.bias', [64]], ['transformer.resblocks.0.mlp.c_fc.bias', [256]],
      ['ln_final.weight', [64]], ['ln_final.bias', [64]], ['text_projection', [64, 64]], ['logit_scale', []],
    ];
    for (const [name, shape] of expected) assert.deepEqual(state.get(name)?.shape, shape, name);
    // Vision: 6 stem tensors + 12 per block + ln_post (2); text: 4 + 12 per block + ln_final (2), logit_scale included.
    assert.equal(state.size, 6 + 12 * 2 + 2 + 4 + 12 * 2 + 2);
    assert.ok(Math.abs(state.get('logit_scale')!.data[0]! - Math.log(1 / 0.07)) < 1e-6);
    const reloaded = new ClipModel(be, cfg, { state });
    const { images, ids } = sampleBatch(cfg, 2, 3);
    const a = model.lossAndGradients(clipBatch(be, cfg, images, ids)).loss.value as RefTensor;
    const b = reloaded.lossAndGradients(clipBatch(be, cfg, images, ids)).loss.value as RefTensor;
    // Saved as float32: the reloaded model is the original rounded to float32, the same as the f32 init values.
    assert.equal(b.data[0], a.data[0]);
    await assert.rejects(loadCheckpoint(path, clipConfig('wb-small')), /epoch_1.safetensors: visual.class_embedding has shape \[64\], wb-small expects \[192\]/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
