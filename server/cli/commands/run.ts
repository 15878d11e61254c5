/**
 * `dcw run`: the whole loop on a pool (filter → subset → reshard → train → evaluate) and the results table of
 * this run beside the earlier ones under --output_dir (server/train/pipeline.ts).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { formatResultsMarkdown, parseRunsIndex } from '../../../src/core/pipeline/runs.ts';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../../io/streams.ts';
import type { DawnBackend } from '../../gpu/dawn.ts';
import { runPipeline } from '../../train/pipeline.ts';
import { createProgress, formatCount, formatDuration } from '../progress.ts';
import { bpeHelp, gpuOption } from './train.ts';
import { loadTokenizer } from './tokenize.ts';

interface RunFlags { scale: string; filter: string; seed: number; output_dir: string; pool: string; eval: string; bpe?: string; gpu: DawnBackend }

export function registerRun(program: Command): Command {
  return program
    .command('run')
    .description('the whole loop on a pool: filter → subset → reshard → train → evaluate → results table')
    .requiredOption('--scale <scale>', 'competition scale')
    .option('--filter <baseline>', 'a baseline, a recipe file (.json) or a subset file (.npy, e.g. from dcw filter with flags)', 'no_filter')
    .option('--seed <n>', 'random seed', (v) => parseInt(v, 10), 0)
    .option('--output_dir <dir>', 'where the run is saved', 'out/runs')
    .option('--pool <dir>', 'the pool (CommonPool layout)', 'data/pool')
    .option('--eval <dir>', 'the evaluation suite (tasklist.yml + sets)', 'data/eval')
    .option('--bpe <file>', bpeHelp)
    .addOption(gpuOption())
    .action(async (f: RunFlags) => {
      const tokenizer = await loadTokenizer(f.bpe);
      let progress: ReturnType<typeof createProgress> | undefined;
      let lastLoss = '';
      const out = await runPipeline({
        scale: f.scale, filter: f.filter, seed: f.seed, outputDir: f.output_dir, pool: f.pool, evalDir: f.eval, tokenizer, gpu: f.gpu,
        // a line between bar redraws: clear the bar first on a terminal; the bar redraws on its next update
        log: (line) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[2K' : ''}${line}\n`),
        onTrainProgress: (p) => {
          progress ??= createProgress({ label: 'train', total: p.totalSteps, unit: ' steps' });
          if (p.loss !== undefined) lastLoss = `loss ${p.loss.toFixed(4)}`;
          progress.update(p.step, `${lastLoss}  ${formatCount(p.samplesPerSecond)} samples/s`);
        },
      });
      const s = out.seconds;
      process.stderr.write(`run ${out.record.id} in ${formatDuration(s.total)} (filter ${formatDuration(s.filter)}, reshard ${formatDuration(s.reshard)}, train ${formatDuration(s.train)}, evaluate ${formatDuration(s.evaluate)}); saved in ${out.dir}\n`);
      process.stdout.write(out.evaluation.table + '\n' + out.table);
    });
}

/** `dcw results`: the seed summary and every run of an output directory, from its runs.json (results.md rewritten). */
export function registerResults(program: Command): Command {
  return program
    .command('results')
    .description("the runs under an output directory: mean ± std over seeds per (scale, filter), the distance from no_filter in seed-σ, and every run (rewrites results.md)")
    .option('--output_dir <dir>', 'where dcw run saved the runs', 'out/runs')
    .action(async (f: { output_dir: string }) => {
      const indexPath = join(f.output_dir, 'runs.json');
      if (!existsSync(indexPath)) throw new UserError(`results: ${indexPath}: no such file (dcw run writes it)`);
      const index = parseRunsIndex(await readFile(indexPath, 'utf8'), indexPath);
      const markdown = formatResultsMarkdown(index);
      await writeFileAtomic(join(f.output_dir, 'results.md'), new TextEncoder().encode(markdown));
      process.stdout.write(markdown);
    });
}
