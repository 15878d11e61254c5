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
      '--steps', '1', '--profile', '--quick-init', '--row-kernels', 'workgroup', '--compare-attention', '--out', out], { encoding: 'utf8', env: { EGL_PLATFORM: 'surfaceless', ...process.env } });
    assert.equal(run.status, 0, run.stderr + run.stdout);
    const result = JSON.parse(readFileSync(join(out, 'train-opengles.json'), 'utf8'));
    const [row] = result.rows;
    assert.equal(row.scale, 'ViT-B-32');
    assert.match(row.attention, /vision T50: tiled, text T77: tiled/);
    assert.ok(Math.abs(row.msPerStep - (row.uploadMs + row.recordMs + row.waitMs)) < 1e-6);
    assert.ok(row.rowAttention.msPerStep > 0, 'the per-row attention kernels were timed beside');
    const p = row.profile;
    assert.equal(p.method, 'replay');
    assert.equal(p.dispatches, row.dispatchesPerStep, 'the profiled step records the same dispatches');
    assert.equal(p.kernels.reduce((a: number, k: { calls: number }) => a + k.calls, 0), p.dispatches);
    assert.equal(p.families.reduce((a: number, k: { calls: number }) => a + k.calls, 0), p.dispatches);
    const names = p.kernels.map((k: { kernel: string }) => k.kernel);
    for (const prefix of ['matmul-', 'attention-tiled-t50', 'attention-tiled-causal-t77', 'attentionBackwardKV-tiled', 'adamw', 'layernorm']) {
      assert.ok(names.some((n: string) => n.startsWith(prefix)), `no ${prefix} kernel in ${names.join(', ')}`);
    }
    assert.ok(p.kernelMs > 0 && p.kernels.every((k: { ms: number }) => k.ms >= 0));
    assert.match(run.stdout, /profile \(replay\): \d+ dispatches/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
