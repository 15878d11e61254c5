// The training loop on the cpu-tiny recipe (wb-tiny, its shuffle buffer and optimizer; batch and samples cut so
// that an epoch is 2 steps) on a small embedded pool, on WebGPU through Dawn's GL ES compat adapter (llvmpipe):
// exact resume (every logged loss and every final weight bit-for-bit equal to an uninterrupted run), checkpoints
// in open_clip's names, the schedule, and refusals of checkpoints that do not belong to the run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import { FileCheckpointStore, findResume, loadResume } from '../../server/train/checkpoints.ts';
import { FileShardStore } from '../../server/train/shard-store.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { GpuBackend } from '../../src/core/gpu/backend.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { readCheckpoint } from '../../src/core/model/checkpoint.ts';
import { clipConfig } from '../../src/core/model/configs.ts';
import { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import { MemoryCheckpointStore, parseTrainState, stateBytes } from '../../src/core/train/checkpoint.ts';
import { ResumeError, trainClip, type ResumeFrom } from '../../src/core/train/loop.ts';
import { runPlan, SCALES, type ScaleConfig } from '../../src/core/train/scales.ts';
import { cosineLr } from '../../src/core/train/schedule.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';

const ROOT = join(import.meta.dirname, '../..');
// cpu-tiny with batch 64 and 256 samples over 2 checkpoints: 2 steps per epoch, 4 in all
const SCALE: ScaleConfig = { ...SCALES['cpu-tiny'], batchSize: 64, trainNumSamples: 256, numCheckpoints: 2 };
let dir: string;
let engine: Engine;
let tokenizer: ClipTokenizer;

before(async () => {
  if (BPE_SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'dcw-loop-'));
  const build = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  assert.equal(build.status, 0, build.stderr);
  engine = new Engine(await openDawn({ backend: 'opengles' }));
  tokenizer = ClipTokenizer.fromBytes(new Uint8Array(readFileSync(BPE_PATH)), BPE_PATH);
});

after(() => {
  engine?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const common = () => ({
  backend: new GpuBackend(engine), scale: SCALE, seed: 5, store: new FileShardStore(join(dir, 'pool/shards')), codec: new SharpImageCodec(), tokenizer, logEvery: 1,
});

function resumeFrom(store: MemoryCheckpointStore, name: string): ResumeFrom {
  const saved = store.saved.get(name);
  assert.ok(saved, `no checkpoint ${name}`);
  return { state: saved.state, weights: readCheckpoint(saved.weights, clipConfig(SCALE.model), name).state, optimizer: saved.optimizer, file: name };
}

test('stop and resume give the uninterrupted run bit for bit: losses, weights, optimizer', { skip: BPE_SKIP }, async () => {
  const plan = runPlan(SCALE);
  assert.equal(plan.totalSteps, 4);
  const full = new MemoryCheckpointStore();
  const a = await trainClip({ ...common(), checkpoints: full });
  assert.equal(a.stopped, false);
  assert.equal(a.state.losses.length, 4);
  for (const l of a.state.losses) {
    assert.ok(Number.isFinite(l.loss) && l.loss > 0, `loss ${l.loss}`);
    // open_clip's cosine_lr at the 0-based global step
    assert.equal(l.lr, cosineLr(SCALE.learningRate, SCALE.warmup, plan.totalSteps, l.step));
  }
  assert.deepEqual([...full.saved.keys()].sort(), ['epoch_1', 'epoch_2', 'epoch_latest']);
  assert.deepEqual(full.saved.get('epoch_1')!.state.loader, { epoch: 1, step: 0, emitted: 0 });

  // stop mid-epoch 1 (after 3 steps): epoch_latest holds the loader's mid-epoch position
  const part = new MemoryCheckpointStore();
  const b = await trainClip({ ...common(), checkpoints: part, stopAfterSteps: 3 });
  assert.equal(b.stopped, true);
  const latest = part.saved.get('epoch_latest')!.state;
  assert.equal(latest.step, 3);
  assert.equal(latest.loader.epoch, 1);
  assert.equal(latest.loader.step, 1);
  assert.ok(latest.loader.emitted >= SCALE.batchSize);
  const c = await trainClip({ ...common(), checkpoints: part, resume: resumeFrom(part, 'epoch_latest') });
  assert.equal(c.stopped, false);
  assert.deepEqual(c.state.losses, a.state.losses);
  // the final weights and AdamW moments are the same bits too
  assert.deepEqual(part.saved.get('epoch_latest')!.weights, full.saved.get('epoch_latest')!.weights);
  assert.deepEqual(part.saved.get('epoch_latest')!.optimizer, full.saved.get('epoch_latest')!.optimizer);

  // resuming from an epoch boundary (epoch_1) gives the third loss again
  const d = await trainClip({ ...common(), resume: resumeFrom(full, 'epoch_1'), stopAfterSteps: 3 });
  assert.deepEqual(d.state.losses, a.state.losses.slice(0, 3));

  // the files on disk: weights with open_clip's names, optimizer and state; a torn save is refused
  const ckdir = join(dir, 'ckpt');
  const files = new FileCheckpointStore(ckdir);
  const saved = full.saved.get('epoch_latest')!;
  await files.save('epoch_latest', saved);
  assert.equal(await findResume(ckdir, 'latest'), join(ckdir, 'epoch_latest.safetensors'));
  const loaded = await loadResume(join(ckdir, 'epoch_latest.safetensors'), clipConfig(SCALE.model));
  assert.deepEqual(loaded.state, saved.state);
  assert.ok(loaded.weights.has('visual.conv1.weight') && loaded.weights.has('text_projection'));
  writeFileSync(join(ckdir, 'epoch_latest.json'), stateBytes({ ...saved.state, step: 2 }));
  await assert.rejects(loadResume(join(ckdir, 'epoch_latest.safetensors'), clipConfig(SCALE.model)), (err: Error) => err instanceof FormatError && /says step 2, but the weights are from step 4/.test(err.message));
  assert.equal(await findResume(join(dir, 'nothing-here'), 'latest'), undefined);
});

test('a checkpoint of another run is refused', { skip: BPE_SKIP }, async () => {
  const fake = new MemoryCheckpointStore();
  const state = parseTrainState(new TextDecoder().decode(stateBytes({
    format: 'dcw-train-state-v1', scale: 'cpu-tiny', model: 'wb-tiny', seed: 6, numCheckpoints: 2, step: 1, totalSteps: 4, stepsPerEpoch: 2,
    completedEpochs: 0, loader: { epoch: 0, step: 1, emitted: 64 }, samplesSeen: 64, losses: [], rng: '',
  })), 'state.json');
  await assert.rejects(
    trainClip({ ...common(), checkpoints: fake, resume: { state, weights: new Map(), optimizer: new Uint8Array(), file: 'other/epoch_latest.safetensors' } }),
    (err: Error) => err instanceof ResumeError && /other\/epoch_latest.safetensors: cannot resume .* seed 6, not 5/.test(err.message),
  );
  assert.equal(fake.saved.size, 0);
  assert.throws(() => parseTrainState('{"format": "dcw-train-state-v1", "seed": -1}', 'x.json'), /x.json: "seed" is not a non-negative integer/);
});
