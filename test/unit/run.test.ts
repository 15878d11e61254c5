// `dcw run --scale cpu-tiny` end to end on a small embedded pool (534 samples, 5 held-out tasks): filter,
// reshard, 40 training steps on Dawn's compat adapter (llvmpipe), evaluation, results beside earlier runs; then
// `dcw evaluate` skipping finished tasks as evaluate.py does, and the flags' refusals. This file takes ~2 minutes
// on 2 cores: the whole cpu-tiny recipe is what it checks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseResults } from '../../src/core/eval/results.ts';
import { encodeNpyHeader } from '../../src/core/formats/npy.ts';
import { decodeSubset, encodeSubset, uidsToWords } from '../../src/core/formats/uid.ts';
import { parseTasklist } from '../../src/core/eval/tasklist.ts';
import { formatRunsTable, formatSeedSummary, parseRunsIndex, seedGroups, withRun, type RunRecord } from '../../src/core/pipeline/runs.ts';
import { parseTrainState } from '../../src/core/train/checkpoint.ts';
import { runPlan, SCALES } from '../../src/core/train/scales.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';

const ROOT = join(import.meta.dirname, '../..');
let dir: string;

function cli(entry: string, args: string[], timeout = 400_000) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, entry), ...args], { cwd: ROOT, encoding: 'utf8', timeout, env: { ...process.env, CI: 'true' } });
  if (run.error) throw run.error;
  return run;
}
// the real dcw, on the fast compatibility adapter
const dcwTrain = (args: string[]) => cli('bin/dcw.js', [...args, '--bpe', BPE_PATH, '--gpu', 'opengles']);

before(() => {
  if (BPE_SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'dcw-run-'));
  const build = cli('bin/dcw.js', ['pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.01', '--workers', '1']);
  assert.equal(build.status, 0, build.stderr);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('dcw run: filter → reshard → train → evaluate → results table, for cpu-tiny', { skip: BPE_SKIP }, () => {
  const out = join(dir, 'runs');
  const run = dcwTrain(['run', '--scale', 'cpu-tiny', '--filter', 'no_filter', '--seed', '0', '--pool', join(dir, 'pool'), '--eval', join(dir, 'eval'), '--output_dir', out]);
  assert.equal(run.status, 0, run.stderr);
  const runDir = join(out, 'cpu-tiny-no_filter-seed0');
  const trainDir = join(runDir, 'cpu-tiny_scale');
  // open_clip's layout: epoch_1 … epoch_5 and epoch_latest, train.py's info file
  const ckpts = readdirSync(join(trainDir, 'checkpoints')).filter((n) => n.endsWith('.safetensors') && !n.includes('optimizer')).sort();
  assert.deepEqual(ckpts, ['epoch_1.safetensors', 'epoch_2.safetensors', 'epoch_3.safetensors', 'epoch_4.safetensors', 'epoch_5.safetensors', 'epoch_latest.safetensors']);
  const info = JSON.parse(readFileSync(join(trainDir, 'info.json'), 'utf8'));
  assert.equal(info.scale, 'cpu-tiny');
  assert.equal(info.checkpoint, join(trainDir, 'checkpoints/epoch_latest.safetensors'));
  assert.deepEqual(info.scale_config, JSON.parse(JSON.stringify(SCALES['cpu-tiny'])));
  // the recipe's 40 steps, every loss finite, the last logged loss below the first
  const state = parseTrainState(readFileSync(join(trainDir, 'checkpoints/epoch_latest.json'), 'utf8'), 'epoch_latest.json');
  assert.equal(state.step, runPlan(SCALES['cpu-tiny']).totalSteps);
  assert.equal(state.samplesSeen, SCALES['cpu-tiny'].trainNumSamples);
  assert.ok(state.losses.every((l) => Number.isFinite(l.loss)));
  assert.ok(state.losses.at(-1)!.loss < state.losses[0]!.loss - 0.3, `losses ${state.losses.map((l) => l.loss.toFixed(3)).join(' ')}`);
  // one eval_results.jsonl line per task of the suite, main_metric last
  const tasks = parseTasklist(readFileSync(join(dir, 'eval/tasklist.yml'), 'utf8'), 'tasklist.yml');
  const resultsPath = join(trainDir, 'eval_results.jsonl');
  const resultsText = readFileSync(resultsPath, 'utf8');
  const results = parseResults(resultsText, resultsPath);
  assert.deepEqual(results.map((r) => r.dataset), tasks.map((t) => t.name));
  for (const r of results) {
    assert.equal([...r.metrics.keys()].at(-1), 'main_metric');
    const m = r.metrics.get('main_metric');
    assert.ok(typeof m === 'number' && m >= 0 && m <= 1, `${r.dataset}: ${m}`);
  }
  // the runs index and the table, printed and saved
  const index = parseRunsIndex(readFileSync(join(out, 'runs.json'), 'utf8'), 'runs.json');
  assert.equal(index.runs.length, 1);
  assert.equal(index.runs[0]!.subsetSize, 534);
  assert.equal(index.runs[0]!.trainSamples, 534);
  assert.match(run.stdout, /▶ \| cpu-tiny \| no_filter \| 0 /);
  assert.ok(readFileSync(join(out, 'results.md'), 'utf8').includes(formatRunsTable(index, { tasks, highlight: index.runs[0]!.id })));
  assert.ok(existsSync(join(runDir, 'subset.npy')) && existsSync(join(runDir, 'shards/meta.json')) && existsSync(join(runDir, 'run.json')));

  // evaluate again: every task is already there, nothing is appended
  const again = dcwTrain(['evaluate', '--train_output_dir', trainDir, '--data_dir', join(dir, 'eval')]);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /0 task\(s\) evaluated/);
  assert.equal(readFileSync(resultsPath, 'utf8'), resultsText);
  // into a fresh folder: the same model gives the same bytes; that folder now belongs to this training run
  const other = join(dir, 'eval-again');
  const fresh = dcwTrain(['evaluate', '--train_output_dir', trainDir, '--output_dir', other, '--data_dir', join(dir, 'eval')]);
  assert.equal(fresh.status, 0, fresh.stderr);
  assert.equal(readFileSync(join(other, 'eval_results.jsonl'), 'utf8'), resultsText);
  assert.match(fresh.stdout, /\| Average +\| mean +\| +[\d.]+ \|/);
  // resuming a finished run is a no-op that keeps its results
  const resumed = dcwTrain(['train', '--scale', 'cpu-tiny', '--data_dir', join(runDir, 'shards'), '--output_dir', runDir]);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming from .*epoch_latest.safetensors \(step 40 of 40\)/);
});

test('dcw run --filter FILE.npy trains on a subset made elsewhere; an unsorted one is refused before anything runs', { skip: BPE_SKIP }, () => {
  const out = join(dir, 'runs');
  const all = decodeSubset(new Uint8Array(readFileSync(join(out, 'cpu-tiny-no_filter-seed0/subset.npy'))), 'subset.npy');
  const mine = all.filter((_, i) => i % 5 === 0);
  writeFileSync(join(dir, 'my-subset.npy'), encodeSubset(mine));
  // np.save of the same uids, reversed (not sorted): the header, then the records as they are
  const reversed = uidsToWords([...mine].reverse());
  writeFileSync(join(dir, 'unsorted.npy'), Buffer.concat([encodeNpyHeader('u8,u8', [mine.length]), new Uint8Array(reversed.buffer, reversed.byteOffset, reversed.byteLength)]));
  const bad = dcwTrain(['run', '--scale', 'cpu-tiny', '--filter', join(dir, 'unsorted.npy'), '--pool', join(dir, 'pool'), '--eval', join(dir, 'eval'), '--output_dir', out]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^dcw: .*unsorted\.npy: the uids are not sorted/m);
  const run = dcwTrain(['run', '--scale', 'cpu-tiny', '--filter', join(dir, 'my-subset.npy'), '--pool', join(dir, 'pool'), '--eval', join(dir, 'eval'), '--output_dir', out]);
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(readFileSync(join(out, 'cpu-tiny-my-subset-seed0/subset.npy')), readFileSync(join(dir, 'my-subset.npy')));
  const index = parseRunsIndex(readFileSync(join(out, 'runs.json'), 'utf8'), 'runs.json');
  const record = index.runs.find((r) => r.filter === 'my-subset')!;
  assert.equal(record.subsetSize, mine.length);
  assert.equal(record.trainSamples, mine.length);
  assert.match(run.stdout, /▶ \| cpu-tiny \| my-subset \| 0 /);
});

test('dcw train / run refuse bad flags with one line', { skip: BPE_SKIP }, () => {
  const amp = dcwTrain(['train', '--scale', 'cpu-tiny', '--data_dir', join(dir, 'pool/shards'), '--output_dir', join(dir, 'x'), '--precision', 'amp']);
  assert.equal(amp.status, 1);
  assert.match(amp.stderr, /^dcw: train: --precision amp: the workbench trains in fp32 only/m);
  const scale = dcwTrain(['train', '--scale', 'huge', '--data_dir', join(dir, 'pool/shards'), '--output_dir', join(dir, 'x')]);
  assert.match(scale.stderr, /^dcw: --scale: unknown scale 'huge'/m);
  const filter = dcwTrain(['run', '--scale', 'cpu-tiny', '--filter', 'no_such_baseline', '--pool', join(dir, 'pool'), '--eval', join(dir, 'eval'), '--output_dir', join(dir, 'x')]);
  assert.match(filter.stderr, /^dcw: --filter no_such_baseline: neither a baseline/m);
  assert.ok(!existsSync(join(dir, 'x')));
});

test('runs index: a rerun replaces its record; the table lists every run', () => {
  const record = (id: string, scale: string, finished: string, avg: number): RunRecord => ({
    id, scale, filter: id.split('-').slice(2, -1).join('-'), seed: 0, subsetSize: 10, trainSamples: 10, samplesSeen: 5120,
    scores: { A: avg, B: null }, aggregates: { Average: avg }, finished, wallSeconds: 1,
  });
  let index = parseRunsIndex(undefined, 'runs.json');
  index = withRun(index, record('cpu-tiny-no_filter-seed0', 'cpu-tiny', '2026-01-02', 0.1));
  index = withRun(index, record('cpu-tiny-basic_filter-seed0', 'cpu-tiny', '2026-01-03', 0.2));
  index = withRun(index, record('cpu-tiny-no_filter-seed0', 'cpu-tiny', '2026-01-04', 0.3));
  assert.deepEqual(index.runs.map((r) => [r.id, r.aggregates.Average]), [['cpu-tiny-basic_filter-seed0', 0.2], ['cpu-tiny-no_filter-seed0', 0.3]]);
  const table = formatRunsTable(index, { highlight: 'cpu-tiny-no_filter-seed0' }).split('\n');
  assert.match(table[0]!, /\| scale +\| filter +\| seed \| subset \| seen \| A +\| B +\| Average \|/);
  assert.match(table[3]!, /^\| ▶ \| cpu-tiny \| no_filter +\| 0 +\| 10 +\| 5120 \| 30.0 \| — +\| 30.0 +\|$/);
  assert.throws(() => parseRunsIndex('{"format": "other"}', 'runs.json'), /runs.json: not a runs index/);
});

test('seed summary: mean ± std (n − 1) per (scale, filter) as numpy computes them, and the distance from no_filter in seed-σ', () => {
  // three seeds of two filters, one of one filter; task B missing in one run
  const avgs: Record<string, number[]> = { no_filter: [0.042, 0.037, 0.033], basic_filter: [0.041, 0.050, 0.043], laion2b: [0.039] };
  let index = parseRunsIndex(undefined, 'runs.json');
  let day = 1;
  for (const [filter, values] of Object.entries(avgs)) {
    values.forEach((avg, seed) => {
      index = withRun(index, {
        id: `cpu-tiny-${filter}-seed${seed}`, scale: 'cpu-tiny', filter, seed, subsetSize: filter.length * 100, trainSamples: 1, samplesSeen: 5120,
        scores: { A: avg * 2, ...(seed === 1 ? {} : { B: avg / 2 }) }, aggregates: { Average: avg }, finished: `2026-01-${String(day++).padStart(2, '0')}`, wallSeconds: 1,
      });
    });
  }
  const numpy = spawnSync('python3', ['-c', `
import json, sys, numpy as np
a = json.loads(sys.argv[1])
out = {k: [float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None] for k, v in a.items()}
print(json.dumps(out))`, JSON.stringify(avgs)], { encoding: 'utf8' });
  if (numpy.status !== 0) throw new Error(`numpy reference failed: ${numpy.stderr}`);
  const ref = JSON.parse(numpy.stdout) as Record<string, [number, number | null]>;
  const groups = seedGroups(index);
  for (const g of groups) {
    const [mean, std] = ref[g.filter]!;
    assert.ok(Math.abs(g.average.mean - mean) < 1e-12, `${g.filter} mean`);
    if (std === null) assert.ok(Number.isNaN(g.average.std));
    else assert.ok(Math.abs(g.average.std - std) < 1e-12, `${g.filter} std ${g.average.std} vs ${std}`);
  }
  assert.equal(groups.find((g) => g.filter === 'basic_filter')!.tasks.B!.n, 2, 'a task a run lacks counts only where it is there');
  const table = formatSeedSummary(index).split('\n');
  const row = (filter: string) => table.find((l) => l.includes(`| ${filter} `))!;
  const [m0, s0] = ref.no_filter!;
  const [m1, s1] = ref.basic_filter!;
  const sigmas = (m1 - m0) / Math.sqrt((s0! ** 2 + s1! ** 2) / 2);
  assert.match(row('basic_filter'), new RegExp(`\\| ${(100 * m1).toFixed(1)} ± ${(100 * s1!).toFixed(1)} \\| \\+${(100 * (m1 - m0)).toFixed(1)} \\(\\+${sigmas.toFixed(1)} σ\\) \\|$`));
  assert.match(row('no_filter'), /\| 3 +\| 900 +\|.*\| {2,}\|$/, 'no distance from itself');
  // one seed has no std: the distance is given without σ
  assert.match(row('laion2b'), new RegExp(`\\| 1 +\\| 700 +\\|.*\\| 3\\.9 +\\| \\+${(100 * (0.039 - m0)).toFixed(1)} +\\|$`));
});
