// The dcw command line as a user meets it: help, one-line errors, exit statuses.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { dcw, REPO } from '../helpers/cli.ts';
import { BPE_PATH } from '../helpers/shared-data.ts';

test('dcw --help lists every subcommand', () => {
  const run = dcw(['--help']);
  assert.equal(run.status, 0);
  for (const command of ['serve', 'pool', 'contamination', 'tokenize', 'filter', 'reshard', 'train', 'evaluate', 'run', 'results', 'uids', 'inspect']) {
    assert.match(run.stdout, new RegExp(`^  ${command}\\b`, 'm'), `${command} missing from help`);
  }
});

test('subcommands carry the official scripts\' flag names', () => {
  assert.match(dcw(['filter', '--help']).stdout, /--metadata_dir <dir>[\s\S]*--save_path <file>[\s\S]*--image_based_scale/);
  assert.match(dcw(['reshard', '--help']).stdout, /-i, --input-dir[\s\S]*-s, --subset-file[\s\S]*--shard-size/);
  assert.match(dcw(['train', '--help']).stdout, /--scale[\s\S]*--data_dir[\s\S]*--output_dir/);
  assert.match(dcw(['evaluate', '--help']).stdout, /--train_output_dir/);
});

test('train on a missing shard directory fails in one line, with a non-zero status', () => {
  const run = dcw(['train', '--scale', 'cpu-tiny', '--data_dir', '/nonexistent/shards', '--output_dir', '/tmp/dcw-never', '--bpe', BPE_PATH]);
  assert.notEqual(run.status, 0);
  assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
  assert.match(run.stderr, /^dcw: .*\/nonexistent\/shards/);
});

test('unknown commands and bad choices fail with a non-zero status', () => {
  assert.notEqual(dcw(['bogus']).status, 0);
  const bad = dcw(['filter', '--name', 'not_a_baseline']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /not_a_baseline/);
});

test('filter creates the missing folder of --save_path, as baselines.py does, and writes the reference bytes there', () => {
  const root = mkdtempSync(join(tmpdir(), 'dcw-cli-save-'));
  try {
    const out = join(root, 'subsets', 'no_filter.npy');
    const run = dcw(['filter', '--name', 'no_filter', '--metadata_dir', join(REPO, 'test/fixtures/filters/metadata'), '--save_path', out]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`creating: ${join(root, 'subsets')}`));
    assert.deepEqual(readFileSync(out), readFileSync(join(REPO, 'test/fixtures/filters/expected/no_filter.npy')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
