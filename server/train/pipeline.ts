/**
 * `dcw run`: the whole DataComp loop on a pool, each step as the official scripts (and the matching dcw
 * command) do it, into one folder per (scale, filter, seed):
 *
 *   {output_dir}/{scale}-{filter}-seed{seed}/
 *     subset.npy (+ subset.npy.recipe.json)   1. dcw filter (a baseline by name, or a recipe file)
 *     shards/                                 2. dcw reshard of the pool's shards to the subset
 *     {scale}_scale/                          3. dcw train (checkpoints/, info.json, out.log)
 *     {scale}_scale/eval_results.jsonl        4. dcw evaluate on the suite
 *     run.json                                5. this run's record
 *   {output_dir}/runs.json, results.md        the runs index and the table of every run so far
 *
 * A step whose output is complete is not redone, so an interrupted run continues where it stopped (training
 * resumes from epoch_latest, evaluation skips finished tasks). Pass a different --output_dir to start afresh.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Command } from 'commander';
import { ALL_BASELINES } from '../../src/core/filters/baselines.ts';
import { decodeSubsetWords, isSortedWords, uidCount } from '../../src/core/formats/uid.ts';
import { formatResultsMarkdown, formatRunsTable, parseRunsIndex, runId, scoresOf, withRun, type RunRecord, type RunsIndex } from '../../src/core/pipeline/runs.ts';
import type { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import type { TrainProgress } from '../../src/core/train/loop.ts';
import { registerFilter } from '../cli/commands/filter.ts';
import { UserError } from '../cli/errors.ts';
import type { DawnBackend } from '../gpu/dawn.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { reshard } from '../reshard/resharder.ts';
import { runEvaluation, type NodeEvalResult } from './evaluate.ts';
import { checkScale, runTraining } from './train.ts';

export interface RunOptions {
  scale: string;
  /** A baseline name (no_filter, basic_filter, …), a recipe file (.json), or a subset made elsewhere (.npy). */
  filter: string;
  seed: number;
  outputDir: string;
  /** Pool folder (CommonPool layout: metadata/, shards/). */
  pool: string;
  /** Evaluation suite folder (tasklist.yml + clip_benchmark sets). */
  evalDir: string;
  tokenizer: ClipTokenizer;
  gpu?: DawnBackend;
  log?: (line: string) => void;
  onTrainProgress?: (p: TrainProgress) => void;
}

export interface RunOutcome {
  dir: string;
  record: RunRecord;
  index: RunsIndex;
  table: string;
  evaluation: NodeEvalResult;
  seconds: { filter: number; reshard: number; train: number; evaluate: number; total: number };
}

const encode = (s: string) => new TextEncoder().encode(s);

/** Runs `dcw filter` in this process with the given flags (the very command, so the same checks and output). */
async function dcwFilter(args: string[]): Promise<void> {
  const program = new Command('dcw').exitOverride();
  registerFilter(program);
  await program.parseAsync(['filter', ...args], { from: 'user' });
}

export async function runPipeline(o: RunOptions): Promise<RunOutcome> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const scale = checkScale(o.scale);
  const isBaseline = (ALL_BASELINES as readonly string[]).includes(o.filter);
  if (!isBaseline && !existsSync(o.filter)) {
    throw new UserError(`--filter ${o.filter}: neither a baseline (${ALL_BASELINES.join(', ')}) nor a recipe (.json) or subset (.npy) file`);
  }
  // a subset from `dcw filter` with flags dcw run does not take (assets, thresholds), or from any other tool
  const isSubsetFile = !isBaseline && o.filter.endsWith('.npy');
  for (const [flag, dir, need] of [['--pool', o.pool, 'metadata'], ['--pool', o.pool, 'shards'], ['--eval', o.evalDir, 'tasklist.yml']] as const) {
    if (!existsSync(join(dir, need))) throw new UserError(`${flag} ${dir}: no ${need} (build the embedded default with 'dcw pool build')`);
  }
  const filterName = isBaseline ? o.filter : isSubsetFile ? basename(o.filter, '.npy') : basename(o.filter);
  const id = runId(scale.name, filterName, o.seed);
  const outputDir = resolve(o.outputDir);
  const dir = join(outputDir, id);
  await mkdir(dir, { recursive: true });
  const seconds = { filter: 0, reshard: 0, train: 0, evaluate: 0, total: 0 };

  // 1. filter → subset.npy
  let t = performance.now();
  const subset = join(dir, 'subset.npy');
  if (!existsSync(subset) && isSubsetFile) {
    log(`[1/4] subset ${o.filter} → ${subset}`);
    const bytes = new Uint8Array(await readFile(o.filter));
    if (!isSortedWords(decodeSubsetWords(bytes, o.filter))) throw new UserError(`${o.filter}: the uids are not sorted (np.sort them, or write the file with dcw filter)`);
    await writeFileAtomic(subset, bytes);
  } else if (!existsSync(subset)) {
    log(`[1/4] filter ${filterName} → ${subset}`);
    const flags = isBaseline ? ['--name', o.filter] : ['--recipe', o.filter];
    await dcwFilter([...flags, '--metadata_dir', join(o.pool, 'metadata'), '--save_path', subset]);
  } else log(`[1/4] filter: ${subset} exists, kept`);
  const subsetSize = uidCount(decodeSubsetWords(new Uint8Array(await readFile(subset)), subset));
  if (subsetSize === 0) throw new UserError(`${subset}: the filter kept no sample; nothing to train on`);
  seconds.filter = (performance.now() - t) / 1000;

  // 2. reshard → shards/ (meta.json, written last, marks a finished reshard)
  t = performance.now();
  const shards = join(dir, 'shards');
  let trainSamples: number;
  if (!existsSync(join(shards, 'meta.json'))) {
    log(`[2/4] reshard ${o.pool}/shards → ${shards}`);
    await rm(shards, { recursive: true, force: true });
    const report = await reshard({
      inputDir: join(o.pool, 'shards'), outputDir: shards, subsetFile: subset, numWorkers: 1, quiet: 1,
      log: (level, message) => { if (level !== 'debug') log(`reshard: ${message}`); },
    });
    trainSamples = report.output_count;
  } else {
    log(`[2/4] reshard: ${shards} exists, kept`);
    trainSamples = (JSON.parse(await readFile(join(shards, 'meta.json'), 'utf8')) as { output_count: number }).output_count;
  }
  if (!trainSamples) throw new UserError(`${shards}: the subset matched no sample of the pool's shards`);
  seconds.reshard = (performance.now() - t) / 1000;

  // 3. train (resumes from epoch_latest when a previous attempt stopped)
  t = performance.now();
  log(`[3/4] train ${scale.name} on ${trainSamples} samples`);
  const trained = await runTraining({
    scale: scale.name, dataDir: shards, outputDir: dir, seed: o.seed, resume: 'latest', tokenizer: o.tokenizer, gpu: o.gpu,
    log, onProgress: o.onTrainProgress,
  });
  seconds.train = (performance.now() - t) / 1000;

  // 4. evaluate
  t = performance.now();
  log(`[4/4] evaluate on ${o.evalDir}`);
  const evaluation = await runEvaluation({ trainOutputDir: trained.dir, dataDir: o.evalDir, tokenizer: o.tokenizer, gpu: o.gpu, log });
  seconds.evaluate = (performance.now() - t) / 1000;
  seconds.total = (performance.now() - t0) / 1000;

  // 5. results beside the earlier runs
  const record: RunRecord = {
    id, scale: scale.name, filter: filterName, seed: o.seed, subsetSize, trainSamples, samplesSeen: trained.state.samplesSeen,
    scores: scoresOf(evaluation.results), aggregates: Object.fromEntries(evaluation.aggregates),
    finished: new Date().toISOString(), wallSeconds: Math.round(seconds.total * 10) / 10,
  };
  await writeFileAtomic(join(dir, 'run.json'), encode(`${JSON.stringify({ ...record, seconds }, null, 2)}\n`));
  const indexPath = join(outputDir, 'runs.json');
  const before = existsSync(indexPath) ? await readFile(indexPath, 'utf8') : undefined;
  const index = withRun(parseRunsIndex(before, indexPath), record);
  await writeFileAtomic(indexPath, encode(`${JSON.stringify(index, null, 2)}\n`));
  const table = formatRunsTable(index, { tasks: evaluation.tasks, highlight: id });
  await writeFileAtomic(join(outputDir, 'results.md'), encode(formatResultsMarkdown(index, { tasks: evaluation.tasks, highlight: id })));
  return { dir, record, index, table, evaluation, seconds };
}
