// The cost model behind the Train view's time estimates: forward FLOPs per pair from the model config, checked
// against open_clip's own profile (docs/model_profile.csv, fvcore), and the estimate's scaling.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clipConfig } from '../../src/core/model/configs.ts';
import { clipForwardFlops, estimateTrainSeconds, trainFlopsPerSample } from '../../src/core/train/cost.ts';
import { runPlan, SCALES } from '../../src/core/train/scales.ts';

test('forward FLOPs per image and caption agree with open_clip\'s model_profile.csv', () => {
  // open_clip docs/model_profile.csv (model, image_gflops, text_gflops), profiled with fvcore at batch 1
  const profile: [string, number, number][] = [
    ['ViT-B-32', 8.82, 5.96],
    ['ViT-B-16', 35.13, 5.96],
    ['ViT-L-14', 162.03, 13.3],
  ];
  for (const [model, image, text] of profile) {
    const f = clipForwardFlops(clipConfig(model));
    // the profile leaves out layer norms and softmax as we do; 1% covers its rounding and the projections
    assert.ok(Math.abs(f.vision / 1e9 - image) / image < 0.01, `${model} image ${f.vision / 1e9} GFLOPs, profile ${image}`);
    assert.ok(Math.abs(f.text / 1e9 - text) / text < 0.01, `${model} text ${f.text / 1e9} GFLOPs, profile ${text}`);
    assert.equal(f.total, f.vision + f.text);
  }
});

test('a training sample is 3 forward passes plus its share of the contrastive loss', () => {
  const s = SCALES.small;
  const f = clipForwardFlops(clipConfig(s.model)).total;
  assert.equal(trainFlopsPerSample(s), 3 * (f + 4 * s.batchSize * 512));
  // the workbench models are far cheaper than the official ones
  assert.ok(trainFlopsPerSample(SCALES['cpu-tiny']) < trainFlopsPerSample(SCALES['gpu-small']) / 10);
  assert.ok(trainFlopsPerSample(SCALES['gpu-small']) < trainFlopsPerSample(SCALES.small) / 10);
});

test('the time estimate: the measured scale gets its own measured time; others scale by FLOPs × samples seen', () => {
  const tiny = SCALES['cpu-tiny'];
  const measured = { scale: tiny, samplesPerSecond: 64 };
  const own = estimateTrainSeconds(tiny, measured)!;
  assert.ok(Math.abs(own - runPlan(tiny).samplesSeen / 64) < 1e-9, `${own}`);
  const small = estimateTrainSeconds(SCALES.small, measured)!;
  const ratio = (runPlan(SCALES.small).samplesSeen * trainFlopsPerSample(SCALES.small)) / (runPlan(tiny).samplesSeen * trainFlopsPerSample(tiny));
  assert.ok(Math.abs(small / own - ratio) / ratio < 1e-12);
  // larger scales never take less time; twice the rate halves every estimate
  const order = ['small', 'medium', 'large', 'xlarge'] as const;
  for (let i = 1; i < order.length; i++) assert.ok(estimateTrainSeconds(SCALES[order[i]!], measured)! > estimateTrainSeconds(SCALES[order[i - 1]!], measured)!);
  assert.ok(Math.abs(estimateTrainSeconds(SCALES.large, { scale: tiny, samplesPerSecond: 128 })! * 2 - estimateTrainSeconds(SCALES.large, measured)!) < 1e-6);
  for (const bad of [0, -1, NaN, Infinity]) assert.equal(estimateTrainSeconds(SCALES.small, { scale: tiny, samplesPerSecond: bad }), undefined);
});
