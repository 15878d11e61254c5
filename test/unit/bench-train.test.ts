// bench:train's per-kernel profile on this machine's CPU adapter (no timestamp queries: each kernel's dispatches of
// the step are replayed and timed on their own), at --tiny shapes: the same code the H100 device script runs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

test('bench:train --profile: phases per step and a per-kernel table that accounts for every dispatch', () => {
  const out = mkdtempSync(join(tmpdir(), 'dcw-bench-train-'));
  try {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/train.ts', '--gpu', 'opengles', '--tiny', '--only', 'ViT-B-32',
      '--steps', '1', '--profile', '--quick-init', '--row-kernels', 'workgroup', '--compare-attention', '--compare-kernels', '--compare-step', '--submit-every', '16', '--out', out], { encoding: 'utf8', env: { EGL_PLATFORM: 'surfaceless', ...process.env } });
    assert.equal(run.status, 0, run.stderr + run.stdout);
    const result = JSON.parse(readFileSync(join(out, 'train-opengles.json'), 'utf8'));
    const [row] = result.rows;
    assert.equal(row.scale, 'ViT-B-32');
    // per pass: the text tower's causal backward runs the tiled kernels, everything else the per-head ones
    assert.match(row.attention, /vision T50: head, text T77: head \(backward tiled\)/);
    // pipelined steps (as the training loop): ms/step is wall time, at most the sum of the phases plus the step's scope
    assert.match(row.mode, /u8 upload, fused, submit every \d+, pipelined/);
    assert.ok(row.msPerStep > 0 && row.msPerStep >= Math.max(row.recordMs, row.waitMs));
    // --compare-step: each option switched back, and the old path (serial: ms/step is the sum of its phases)
    const names = row.variants.map((v: { name: string }) => v.name);
    assert.deepEqual(names, ['f32 upload', 'unfused ops', 'one submit per step', 'serial (loss read every step)', 'all of these (the old path)']);
    const old = row.variants.at(-1);
    assert.ok(Math.abs(old.msPerStep - (old.uploadMs + old.recordMs + old.waitMs)) < 1e-6);
    assert.ok(old.submitsPerStep < row.submitsPerStep, `one submit per step: ${old.submitsPerStep} vs ${row.submitsPerStep}`);
    assert.ok(row.variants.find((v: { name: string }) => v.name === 'unfused ops').dispatchesPerStep > row.dispatchesPerStep, 'fusion saves dispatches');
    assert.ok(row.rowAttention.msPerStep > 0, 'the per-row attention kernels were timed beside');
    const p = row.profile;
    assert.equal(p.method, 'replay');
    assert.equal(p.dispatches, row.dispatchesPerStep, 'the profiled step records the same dispatches');
    assert.equal(p.kernels.reduce((a: number, k: { calls: number }) => a + k.calls, 0), p.dispatches);
    assert.equal(p.families.reduce((a: number, k: { calls: number }) => a + k.calls, 0), p.dispatches);
    const kernelNames = p.kernels.map((k: { kernel: string }) => k.kernel);
    for (const prefix of ['matmul-', 'attention-head-t50', 'attention-head-causal-t77', 'attentionBackwardKV-head-t50', 'attentionBackwardKV-tiled-causal-t77',
      'colsum4-sumRows', 'colsum4-layernormParams', 'colsum4Finish-2', 'embeddingBackward-seg', 'adamw', 'layernorm']) {
      assert.ok(kernelNames.some((n: string) => n.startsWith(prefix)), `no ${prefix} kernel in ${kernelNames.join(', ')}`);
    }
    assert.ok(!kernelNames.some((n: string) => /^colsum(Finish|-)|attentionBackward(Q|KV)-head-causal/.test(n)), `old kernels in ${kernelNames.join(', ')}`);
    assert.ok(p.kernelMs > 0 && p.kernels.every((k: { ms: number }) => k.ms >= 0));
    assert.match(run.stdout, /profile \(replay\): \d+ dispatches/);
    // --compare-kernels: the same steps and profile with the kernels before round 4 (head attention in both passes,
    // scalar column sums with one finishing pass per sum)
    const before = row.previousKernels;
    assert.ok(before.msPerStep > 0);
    const beforeNames = before.profile.kernels.map((k: { kernel: string }) => k.kernel);
    for (const name of ['attention-head-causal-t77', 'attentionBackwardQ-head-causal-t77', 'attentionBackwardKV-head-causal-t77', 'colsum-sumRows', 'colsumFinish']) {
      assert.ok(beforeNames.some((n: string) => n === name || n.startsWith(`${name}-`)), `no ${name} kernel in ${beforeNames.join(', ')}`);
    }
    assert.ok(!beforeNames.some((n: string) => /-tiled|colsum4/.test(n)));
    assert.ok(before.profile.dispatches > p.dispatches, 'one finishing pass per column-sum call saves dispatches');
    assert.match(run.stdout, /GPU ms per step, previous kernels → now[^\n]*\n\s+attention\s+[\d.]+ →\s+[\d.]+/);
    assert.match(run.stdout, /\n\s+bias gradients \(column sums\)\s+[\d.]+ →\s+[\d.]+/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
