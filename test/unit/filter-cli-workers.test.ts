// `dcw filter --num_workers N` (baselines.py's flag) splits the model-free passes over worker threads: the
// subset bytes are the numpy reference's whatever N is, and a bad N is refused before anything is written.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { dcw } from '../helpers/cli.ts';

const FIX = join(import.meta.dirname, '../fixtures/filters');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-filter-workers-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

for (const [label, args, expected] of [
  ['no_filter', ['--name', 'no_filter'], 'no_filter.npy'],
  ['clip_score --fraction', ['--name', 'clip_score', '--arch', 'l14', '--fraction', '0.3'], 'clip_l14_f0.3.npy'],
] as const) {
  test(`${label}: --num_workers 1 and 2 give the numpy reference's bytes`, () => {
    for (const n of ['1', '2']) {
      const out = join(tmp, `${expected}.${n}`);
      const run = dcw(['filter', ...args, '--metadata_dir', join(FIX, 'metadata'), '--save_path', out, '--num_workers', n]);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(readFileSync(out), readFileSync(join(FIX, 'expected', expected)), `--num_workers ${n}`);
    }
  });
}

test('--num_workers 0 or a word: one-line error, nothing written', () => {
  for (const n of ['0', 'many']) {
    const out = join(tmp, `bad-${n}.npy`);
    const run = dcw(['filter', '--name', 'no_filter', '--metadata_dir', join(FIX, 'metadata'), '--save_path', out, '--num_workers', n]);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /^dcw: filter: --num_workers must be a whole number ≥ 1, got (0|NaN)\n$/);
    assert.equal(existsSync(out), false);
  }
});
