// The attention kernels per (batch, head) (kernels/attention-head.ts) and tiled (kernels/attention.ts): when
// each is chosen, plans within the workgroup memory they are given (down to core WebGPU's 16 KiB for the tiled
// ones), bit-identical reruns, and agreement with the per-row kernels on CLIP's shapes; the token index behind the
// embedding gradient; the engine's per-dispatch GPU profile; and the stored matmul tuning that training picks up.
// (The float64 reference checks of every attention and embedding-gradient form run in every row-kernel form in
// gpu-rows.test.ts, via checks.ts.)
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadStoredTuning, saveTuning, tuningDirs } from '../../server/gpu/tuning.ts';
import { Engine, type Tensor } from '../../src/core/gpu/engine.ts';
import { setTiledAttentionMemory, tiledAttentionPlan } from '../../src/core/gpu/kernels/attention.ts';
import { headAttentionPlan } from '../../src/core/gpu/kernels/attention-head.ts';
import { getMatmulTuning, setMatmulTuning } from '../../src/core/gpu/kernels/matmul.ts';
import * as ops from '../../src/core/gpu/kernels/ops.ts';
import { DEFAULT_GPU_TUNING } from '../../src/core/gpu/tuning.ts';
import { Rng } from '../../src/core/util/random.ts';
import { cpuEngines } from '../helpers/engines.ts';

const engines = cpuEngines();

const IMAGE = { B: 2, T: 50, H: 2, D: 64, causal: false };
const TEXT = { B: 1, T: 77, H: 2, D: 64, causal: true };

test('per-head and tiled kernels: GPU row forms only, T ≤ 128 and heads a multiple of 4 wide; forced down the list', () => {
  assert.equal(ops.attentionKernels(engines.gl, IMAGE), 'thread', 'CPU adapters keep one thread per query');
  ops.setRowKernelMode(engines.gl, 'workgroup');
  try {
    assert.equal(ops.attentionKernels(engines.gl, IMAGE), 'head');
    assert.equal(ops.attentionKernels(engines.gl, TEXT), 'head');
    // 128 keys of 128 channels: the score tile and a chunk of keys exceed 32 KiB; the tiled kernels take it.
    assert.equal(ops.attentionKernels(engines.gl, { ...IMAGE, T: 128, D: 128 }), 'tiled');
    assert.equal(ops.attentionKernels(engines.gl, { ...IMAGE, T: 129 }), 'rows');
    assert.equal(ops.attentionKernels(engines.gl, { ...IMAGE, D: 66 }), 'rows');
    // Per pass by default: the backward of a causal mask runs the tiled kernels, without one the per-head ones.
    assert.equal(ops.attentionKernels(engines.gl, IMAGE, 'backward'), 'head');
    assert.equal(ops.attentionKernels(engines.gl, TEXT, 'backward'), 'tiled');
    ops.setAttentionBackwardKernels(engines.gl, 'head');
    assert.equal(ops.attentionKernels(engines.gl, TEXT, 'backward'), 'head');
    ops.setAttentionBackwardKernels(engines.gl, undefined);
    ops.setAttentionKernels(engines.gl, 'head');
    assert.equal(ops.attentionKernels(engines.gl, TEXT, 'backward'), 'head', 'forcing the kernels forces both passes');
    ops.setAttentionKernels(engines.gl, 'tiled');
    assert.equal(ops.attentionKernels(engines.gl, TEXT), 'tiled');
    assert.equal(ops.attentionKernels(engines.gl, IMAGE, 'backward'), 'tiled');
    ops.setAttentionBackwardKernels(engines.gl, 'head');
    assert.equal(ops.attentionKernels(engines.gl, IMAGE), 'tiled');
    assert.equal(ops.attentionKernels(engines.gl, IMAGE, 'backward'), 'head');
    ops.setAttentionBackwardKernels(engines.gl, undefined);
    ops.setAttentionKernels(engines.gl, 'rows');
    assert.equal(ops.attentionKernels(engines.gl, TEXT), 'rows');
    assert.equal(ops.attentionKernels(engines.gl, TEXT, 'backward'), 'rows');
  } finally {
    ops.setAttentionKernels(engines.gl, undefined);
    ops.setAttentionBackwardKernels(engines.gl, undefined);
    ops.setRowKernelMode(engines.gl, undefined);
  }
});

test('per-head plans: one chunk of keys where the memory holds them, chunks under less, else the tiled kernels', () => {
  const limit = engines.gl.info.limits.maxComputeWorkgroupStorageSize!;
  for (const memory of [undefined, 49152, 20480, 16384]) {
    setTiledAttentionMemory(engines.gl, memory);
    try {
      const budget = Math.min(memory ?? Infinity, limit);
      for (const [T, D] of [[50, 64], [77, 64], [65, 64], [32, 64], [1, 4], [13, 8], [128, 128]] as const) {
        const plan = headAttentionPlan(engines.gl, T, D);
        // The score tile (odd stride) and at least 8 staged rows of keys must fit, and 8 rows of q and dO.
        const fits = 4 * T * (T | 1) + 4 * Math.min(T, 8) * D <= budget && 8 * Math.min(T, 8) * D <= budget;
        assert.equal(plan !== undefined, fits, `${T}×${D} under ${budget}`);
        if (!plan) continue;
        assert.ok(plan.sharedBytes <= budget && plan.sharedBytesKV <= budget, `${T}×${D}: ${plan.sharedBytes}, ${plan.sharedBytesKV} > ${budget}`);
        assert.ok(plan.NT >= T && plan.NT % 32 === 0 && plan.TP % 2 === 1 && plan.KC <= T && plan.QC <= T);
        // As many keys per chunk as fit: one more would not.
        if (plan.KC < T) assert.ok(plan.sharedBytes + 4 * D > budget);
      }
    } finally {
      setTiledAttentionMemory(engines.gl, undefined);
    }
  }
  // This machine's adapters offer 32 KiB: the text tower's 77 keys come in chunks; the image tower's 50 in one.
  assert.ok(headAttentionPlan(engines.gl, 77, 64)!.KC < 77);
  assert.equal(headAttentionPlan(engines.gl, 50, 64)!.KC, 50);
  // Under 16 KiB the text tower's 77×77 score tile does not fit (the tiled kernels take it); the image tower's
  // 50×51 does, with its keys in chunks.
  setTiledAttentionMemory(engines.gl, 16384);
  ops.setRowKernelMode(engines.gl, 'workgroup');
  try {
    assert.equal(ops.attentionKernels(engines.gl, TEXT), 'tiled');
    assert.equal(ops.attentionKernels(engines.gl, IMAGE), 'head');
    assert.ok(headAttentionPlan(engines.gl, 50, 64)!.KC < 50);
  } finally {
    ops.setRowKernelMode(engines.gl, undefined);
    setTiledAttentionMemory(engines.gl, undefined);
  }
});

test('token index: ids ascending, positions ascending within each, segments of at most 64 that never span two ids', async () => {
  const rng = new Rng(9);
  // A padded caption batch: most positions hold id 0 (many segments), a few repeated and single ids.
  const ids = Array.from({ length: 6 * 77 }, (_, i) => (i % 77 < 2 + (i % 7) ? 1 + rng.int(20) : 0));
  const index = ops.tokenIndex(engines.gl, ids, [6, 77]);
  try {
    const [unique, starts, positions, segments, first] = await Promise.all(
      [index.unique, index.starts, index.positions, index.segments, index.firstSegment].map((t) => engines.gl.read(t)));
    const want = [...new Set(ids)].sort((a, b) => a - b);
    assert.deepEqual([...unique!], want);
    assert.equal(index.uniqueCount, want.length);
    for (let u = 0; u < want.length; u++) {
      const at = [...positions!.slice(starts![u]!, starts![u + 1]!)];
      assert.deepEqual(at, ids.flatMap((id, i) => (id === want[u] ? [i] : [])), `positions of id ${want[u]}`);
      const segs = [...segments!.slice(first![u]!, first![u + 1]! + 1)];
      assert.equal(segs[0], starts![u]);
      assert.equal(segs.at(-1), starts![u + 1]);
      assert.equal(segs.length - 1, Math.ceil(at.length / ops.EMBEDDING_SEGMENT));
      for (let k = 1; k < segs.length; k++) assert.ok(segs[k]! - segs[k - 1]! <= ops.EMBEDDING_SEGMENT && segs[k]! > segs[k - 1]!);
    }
    assert.equal(index.segmentCount, first![want.length]);
    assert.ok(index.segmentCount > want.length, 'the padding id spans several segments');
  } finally {
    index.dispose();
  }
});

test('tile plans fit the workgroup memory they are given, down to 16 KiB', () => {
  for (const memory of [16384, undefined]) {
    setTiledAttentionMemory(engines.gl, memory);
    try {
      for (const [T, D] of [[50, 64], [77, 64], [128, 128], [1, 4], [13, 8]] as const) {
        const plan = tiledAttentionPlan(engines.gl, T, D);
        assert.ok(plan, `${T}×${D}`);
        const limit = Math.min(memory ?? 32768, engines.gl.info.limits.maxComputeWorkgroupStorageSize ?? 16384);
        assert.ok(plan.sharedBytes <= limit && plan.sharedBytesKV <= limit, `${T}×${D}: ${plan.sharedBytes}, ${plan.sharedBytesKV} > ${limit}`);
        assert.ok(plan.W <= 128 && plan.BQ * plan.NB >= T && plan.KC >= 1 && plan.QC >= 1);
      }
      // 16 KiB cannot hold all 77 keys of 64 channels: they are staged in chunks.
      if (memory) assert.ok(tiledAttentionPlan(engines.gl, 77, 64)!.KC < 77);
    } finally {
      setTiledAttentionMemory(engines.gl, undefined);
    }
  }
});

async function attentionBits(engine: Engine, s: ops.AttentionShape, seed: number): Promise<Float32Array[]> {
  const rng = new Rng(seed);
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  engine.beginScope();
  try {
    const qkv = engine.tensor(rand(s.B * s.T * 3 * s.H * s.D));
    const f = ops.attention(engine, qkv, s);
    const d = ops.attentionBackward(engine, engine.tensor(rand(s.B * s.T * s.H * s.D)), qkv, f.probs, s);
    return Promise.all([f.out, f.probs, d].map((t: Tensor) => engine.readF32(t)));
  } finally {
    engine.endScope();
  }
}

test('per-head and tiled attention are bit-identical from run to run and agree with the per-row kernels (CLIP shapes)', async () => {
  for (const [engine, mode] of [[engines.gl, 'workgroup'], [engines.swiftshader, 'subgroup']] as const) {
    ops.setRowKernelMode(engine, mode);
    try {
      for (const s of [IMAGE, TEXT]) {
        ops.setAttentionKernels(engine, 'rows');
        const rows = await attentionBits(engine, s, 4);
        for (const kernels of ['head', 'tiled'] as const) {
          ops.setAttentionKernels(engine, kernels);
          assert.equal(ops.attentionKernels(engine, s), kernels);
          const first = await attentionBits(engine, s, 4);
          const second = await attentionBits(engine, s, 4);
          assert.deepEqual(second.map((a) => [...new Uint32Array(a.buffer)]), first.map((a) => [...new Uint32Array(a.buffer)]), `${kernels} ${mode} T${s.T}`);
          for (let k = 0; k < 3; k++) {
            const worst = Math.max(...first[k]!.map((v, i) => Math.abs(v - rows[k]![i]!) / (1e-5 + 1e-5 * Math.abs(rows[k]![i]!))));
            assert.ok(worst <= 1, `${kernels} ${mode} T${s.T} output ${k}: differs from the per-row kernels by ${worst}× 1e-5`);
          }
        }
      }
    } finally {
      ops.setAttentionKernels(engine, undefined);
      ops.setRowKernelMode(engine, undefined);
    }
  }
});

test('profile: one GPU time per dispatch, by kernel, where the adapter has timestamp queries', async () => {
  assert.equal(engines.gl.startProfile(), false, 'the GL compatibility adapter has no timestamp queries');
  assert.equal(await engines.gl.stopProfile(), undefined);
  const e = engines.swiftshader;
  e.beginScope();
  try {
    const x = e.tensor(Float32Array.from({ length: 4096 }, (_, i) => i / 4096));
    assert.equal(e.startProfile(), true);
    const y = ops.gelu(e, x);
    ops.addInto(e, y, x);
    e.clear(x); // not a dispatch: not timed
    ops.add(e, y, x);
    const times = await e.stopProfile();
    assert.deepEqual(times!.map((t) => t.kernel), ['gelu', 'addInto', 'add']);
    assert.ok(times!.every((t) => t.ms > 0 && t.ms < 10_000), JSON.stringify(times));
    // Profiling off again: work still runs (and is not counted).
    ops.add(e, y, y);
    assert.equal(await e.stopProfile(), undefined);
  } finally {
    e.endScope();
  }
});

test('training picks up the stored matmul tuning of its adapter (and model, where fitted to one): first directory with an entry wins', () => {
  const root = mkdtempSync(join(tmpdir(), 'dcw-tuning-'));
  try {
    const [empty, stored, other] = ['empty', 'stored', 'other'].map((d) => join(root, d));
    const tuning = { ...DEFAULT_GPU_TUNING, targetWorkgroups: 77 };
    saveTuning(engines.gl, stored!, tuning);
    saveTuning(engines.gl, other!, { ...DEFAULT_GPU_TUNING, targetWorkgroups: 99 });
    assert.equal(loadStoredTuning(engines.gl, [empty!]), undefined);
    assert.equal(getMatmulTuning(engines.gl), undefined);
    assert.equal(loadStoredTuning(engines.gl, [empty!, stored!, other!]), join(stored!, 'gpu-tuning.json'));
    assert.deepEqual(getMatmulTuning(engines.gl), tuning);
    // a tuning fitted to ViT-B/32's shapes: that model gets it, another model the next general one
    const fitted = join(root, 'fitted');
    saveTuning(engines.gl, fitted, { ...DEFAULT_GPU_TUNING, targetWorkgroups: 55 }, 'ViT-B-32');
    setMatmulTuning(engines.gl, undefined);
    assert.equal(loadStoredTuning(engines.gl, [fitted, other!], 'wb-small'), join(other!, 'gpu-tuning.json'));
    assert.equal(getMatmulTuning(engines.gl)?.targetWorkgroups, 99);
    assert.equal(loadStoredTuning(engines.gl, [fitted, other!], 'ViT-B-32'), join(fitted, 'gpu-tuning.json'));
    assert.equal(getMatmulTuning(engines.gl)?.targetWorkgroups, 55);
    assert.deepEqual(tuningDirs({ DCW_GPU_TUNING_DIR: stored, XDG_CACHE_HOME: '/cache' }).slice(0, 2), [stored, '/cache/dcw']);
  } finally {
    setMatmulTuning(engines.gl, undefined);
    rmSync(root, { recursive: true, force: true });
  }
});
