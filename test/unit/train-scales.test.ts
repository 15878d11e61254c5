// Scales as scale_configs.py + open_clip defaults, open_clip's cosine_lr, and the weight-decay mask rule.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clipConfig } from '../../src/core/model/configs.ts';
import { OFFICIAL_SCALES, runPlan, scaleConfig, SCALES, weightDecayApplies, weightDecayGroups } from '../../src/core/train/scales.ts';
import { cosineLr, cosineSchedule } from '../../src/core/train/schedule.ts';

describe('scales', () => {
  test('official scales are scale_configs.py with open_clip 2.16.1 defaults', () => {
    const expected = {
      debug: ['ViT-B-32', 1024, 1e-4, 128_000, 500, 0.98],
      small: ['ViT-B-32', 4096, 5e-4, 12_800_000, 500, 0.98],
      medium: ['ViT-B-32', 4096, 5e-4, 128_000_000, 500, 0.98],
      large: ['ViT-B-16', 8192, 5e-4, 1_280_000_000, 500, 0.98],
      xlarge: ['ViT-L-14', 90112, 1e-3, 12_800_000_000, 10000, 0.95],
    } as const;
    assert.deepEqual(OFFICIAL_SCALES, Object.keys(expected));
    for (const [name, [model, batch, lr, seen, warmup, beta2]] of Object.entries(expected)) {
      const s = scaleConfig(name);
      assert.deepEqual([s.model, s.batchSize, s.learningRate, s.trainNumSamples, s.warmup, s.beta2], [model, batch, lr, seen, warmup, beta2], name);
      assert.deepEqual([s.beta1, s.eps, s.weightDecay, s.numCheckpoints, s.imageSize, s.kind], [0.9, 1e-6, 0.2, 5, 224, 'official']);
      assert.deepEqual(s.sampleShuffle, { size: 5000, initial: 1000 });
    }
    assert.equal(SCALES.xlarge.referencePrecision, 'amp_bfloat16');
    assert.equal(SCALES.small.referencePrecision, 'amp');
    assert.throws(() => scaleConfig('huge'), /unknown scale 'huge'/);
    assert.ok(Object.isFrozen(SCALES.small) && Object.isFrozen(SCALES));
  });

  test('workbench scales are fixed, marked, and sized as documented', () => {
    const tiny = scaleConfig('cpu-tiny');
    const small = scaleConfig('gpu-small');
    for (const s of [tiny, small]) {
      assert.equal(s.kind, 'workbench');
      assert.match(s.note, /not comparable with the leaderboard/);
      assert.equal(s.referencePrecision, 'fp32');
    }
    assert.equal(tiny.imageSize, 32);
    assert.ok(tiny.trainNumSamples >= 2000 && tiny.trainNumSamples <= 10_000);
    assert.equal(small.imageSize, 64);
    assert.ok(small.trainNumSamples >= 1_000_000);
    assert.deepEqual([tiny.model, small.model], ['wb-tiny', 'wb-small']);
    // each workbench scale's model exists and sees the scale's image size
    for (const s of [tiny, small]) assert.equal(clipConfig(s.model).vision.imageSize, s.imageSize);
  });

  test('run plan: epochs = checkpoints of floor(seen / checkpoints) samples, ceil(samples / batch) steps each', () => {
    assert.deepEqual(runPlan(SCALES.small), { samplesPerEpoch: 2_560_000, stepsPerEpoch: 625, epochs: 5, totalSteps: 3125, samplesSeen: 12_800_000 });
    // debug: 25,600 per epoch / 1024 = 25 steps
    assert.equal(runPlan(SCALES.debug).totalSteps, 125);
    // rounding up: 1,000 samples per epoch at batch 128 → 8 steps
    assert.deepEqual(runPlan({ trainNumSamples: 5000, batchSize: 128, numCheckpoints: 5 }).stepsPerEpoch, 8);
    assert.throws(() => runPlan(SCALES.small, 0), RangeError);
  });
});

describe('cosine_lr', () => {
  test('warmup lr·(s+1)/W, then 0.5·(1+cos(π·e/es))·lr to 0', () => {
    const lr = cosineSchedule(5e-4, 500, 3125);
    assert.equal(lr(0), 5e-4 / 500);
    assert.equal(lr(249), (5e-4 * 250) / 500);
    assert.equal(lr(499), 5e-4);
    assert.equal(lr(500), 5e-4); // e = 0: cos 0 = 1
    assert.ok(Math.abs(lr(500 + 2625 / 2) - 2.5e-4) < 1e-18);
    assert.ok(Math.abs(lr(3125)) < 1e-20);
    // strictly decreasing after warmup
    for (let s = 501; s < 3125; s += 97) assert.ok(lr(s) < lr(s - 1));
    // the same numbers as numpy would give for a few steps (open_clip's expression, evaluated in Python)
    assert.equal(cosineLr(1e-3, 10, 100, 55), 0.5 * (1 + Math.cos((Math.PI * 45) / 90)) * 1e-3);
    assert.throws(() => cosineSchedule(1e-3, 10, 0), RangeError);
  });
});

describe('weight decay mask (open_clip main.py)', () => {
  test('no decay for ndim < 2 or names with bn, ln, bias, logit_scale', () => {
    const cases: [string, number[], boolean][] = [
      ['visual.conv1.weight', [768, 3, 32, 32], true],
      ['visual.class_embedding', [768], false],
      ['visual.positional_embedding', [50, 768], true],
      ['visual.ln_pre.weight', [768], false],
      ['visual.transformer.resblocks.0.ln_1.weight', [768], false],
      ['visual.transformer.resblocks.0.attn.in_proj_weight', [2304, 768], true],
      ['visual.transformer.resblocks.0.attn.in_proj_bias', [2304], false],
      ['visual.transformer.resblocks.0.mlp.c_fc.weight', [3072, 768], true],
      ['visual.proj', [768, 512], true],
      ['token_embedding.weight', [49408, 512], true],
      ['text_projection', [512, 512], true],
      ['ln_final.weight', [512], false],
      ['logit_scale', [], false],
      // the rule is a substring test: a 2-D name containing "ln" or "bn" is excluded too
      ['encoder.kiln_table', [4, 4], false],
      ['some.bias_matrix', [4, 4], false],
    ];
    for (const [name, shape, decays] of cases) assert.equal(weightDecayApplies(name, shape), decays, name);
    const groups = weightDecayGroups(cases.map(([name, shape]) => ({ name, shape })), 0.2);
    assert.equal(groups[0]!.weightDecay, 0);
    assert.equal(groups[1]!.weightDecay, 0.2);
    assert.equal(groups[0]!.params.length + groups[1]!.params.length, cases.length);
    assert.equal(groups[1]!.params.length, cases.filter((c) => c[2]).length);
  });
});
