// The tiled attention kernels (kernels/attention.ts): when they are chosen, tile plans under core WebGPU's 16 KiB
// of workgroup memory, bit-identical reruns, and agreement with the per-row kernels on CLIP's shapes; the engine's
// per-dispatch GPU profile; and the stored matmul tuning that training picks up. (The float64 reference checks of
// the tiled kernels run in every row-kernel form in gpu-rows.test.ts, via checks.ts.)
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { loadStoredTuning, saveTuning, tuningDirs } from '../../server/gpu/tuning.ts';
import { Engine, type Tensor } from '../../src/core/gpu/engine.ts';
import { setTiledAttentionMemory, tiledAttentionPlan } from '../../src/core/gpu/kernels/attention.ts';
import { getMatmulTuning, setMatmulTuning } from '../../src/core/gpu/kernels/matmul.ts';
import * as ops from '../../src/core/gpu/kernels/ops.ts';
import { DEFAULT_GPU_TUNING } from '../../src/core/gpu/tuning.ts';
import { Rng } from '../../src/core/util/random.ts';

let gl: Engine;
let swiftshader: Engine;
before(async () => {
  gl = new Engine(await openDawn({ backend: 'opengles' }));
  swiftshader = new Engine(await openDawn({ backend: 'swiftshader' }));
});
after(() => {
  gl.destroy();
  swiftshader.destroy();
});

const IMAGE = { B: 2, T: 50, H: 2, D: 64, causal: false };
const TEXT = { B: 1, T: 77, H: 2, D: 64, causal: true };

test('tiled kernels: GPU row forms only, T ≤ 128 and heads a multiple of 4 wide', () => {
  assert.equal(ops.attentionKernels(gl, IMAGE), 'thread', 'CPU adapters keep one thread per query');
  ops.setRowKernelMode(gl, 'workgroup');
  try {
    assert.equal(ops.attentionKernels(gl, IMAGE), 'tiled');
    assert.equal(ops.attentionKernels(gl, TEXT), 'tiled');
    assert.equal(ops.attentionKernels(gl, { ...IMAGE, T: 129 }), 'rows');
    assert.equal(ops.attentionKernels(gl, { ...IMAGE, D: 66 }), 'rows');
    ops.setAttentionKernels(gl, 'rows');
    assert.equal(ops.attentionKernels(gl, TEXT), 'rows');
  } finally {
    ops.setAttentionKernels(gl, undefined);
    ops.setRowKernelMode(gl, undefined);
  }
});

test('tile plans fit the workgroup memory they are given, down to 16 KiB', () => {
  for (const memory of [16384, undefined]) {
    setTiledAttentionMemory(gl, memory);
    try {
      for (const [T, D] of [[50, 64], [77, 64], [128, 128], [1, 4], [13, 8]] as const) {
        const plan = tiledAttentionPlan(gl, T, D);
        assert.ok(plan, `${T}×${D}`);
        const limit = Math.min(memory ?? 32768, gl.info.limits.maxComputeWorkgroupStorageSize ?? 16384);
        assert.ok(plan.sharedBytes <= limit && plan.sharedBytesKV <= limit, `${T}×${D}: ${plan.sharedBytes}, ${plan.sharedBytesKV} > ${limit}`);
        assert.ok(plan.W <= 128 && plan.BQ * plan.NB >= T && plan.KC >= 1 && plan.QC >= 1);
      }
      // 16 KiB cannot hold all 77 keys of 64 channels: they are staged in chunks.
      if (memory) assert.ok(tiledAttentionPlan(gl, 77, 64)!.KC < 77);
    } finally {
      setTiledAttentionMemory(gl, undefined);
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

test('tiled attention is bit-identical from run to run and agrees with the per-row kernels (CLIP shapes)', async () => {
  for (const [engine, mode] of [[gl, 'workgroup'], [swiftshader, 'subgroup']] as const) {
    ops.setRowKernelMode(engine, mode);
    try {
      for (const s of [IMAGE, TEXT]) {
        const first = await attentionBits(engine, s, 4);
        const second = await attentionBits(engine, s, 4);
        assert.deepEqual(second.map((a) => [...new Uint32Array(a.buffer)]), first.map((a) => [...new Uint32Array(a.buffer)]), `${mode} T${s.T}`);
        ops.setAttentionKernels(engine, 'rows');
        const rows = await attentionBits(engine, s, 4);
        ops.setAttentionKernels(engine, undefined);
        for (let k = 0; k < 3; k++) {
          const worst = Math.max(...first[k]!.map((v, i) => Math.abs(v - rows[k]![i]!) / (1e-5 + 1e-5 * Math.abs(rows[k]![i]!))));
          assert.ok(worst <= 1, `${mode} T${s.T} output ${k}: differs from the per-row kernels by ${worst}× 1e-5`);
        }
      }
    } finally {
      ops.setAttentionKernels(engine, undefined);
      ops.setRowKernelMode(engine, undefined);
    }
  }
});

test('profile: one GPU time per dispatch, by kernel, where the adapter has timestamp queries', async () => {
  assert.equal(gl.startProfile(), false, 'the GL compatibility adapter has no timestamp queries');
  assert.equal(await gl.stopProfile(), undefined);
  const e = swiftshader;
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

test('training picks up the stored matmul tuning of its adapter: first directory with an entry wins', () => {
  const root = mkdtempSync(join(tmpdir(), 'dcw-tuning-'));
  try {
    const [empty, stored, other] = ['empty', 'stored', 'other'].map((d) => join(root, d));
    const tuning = { ...DEFAULT_GPU_TUNING, targetWorkgroups: 77 };
    saveTuning(gl, stored!, tuning);
    saveTuning(gl, other!, { ...DEFAULT_GPU_TUNING, targetWorkgroups: 99 });
    assert.equal(loadStoredTuning(gl, [empty!]), undefined);
    assert.equal(getMatmulTuning(gl), undefined);
    assert.equal(loadStoredTuning(gl, [empty!, stored!, other!]), join(stored!, 'gpu-tuning.json'));
    assert.deepEqual(getMatmulTuning(gl), tuning);
    assert.deepEqual(tuningDirs({ DCW_GPU_TUNING_DIR: stored, XDG_CACHE_HOME: '/cache' }).slice(0, 2), [stored, '/cache/dcw']);
  } finally {
    setMatmulTuning(gl, undefined);
    rmSync(root, { recursive: true, force: true });
  }
});
