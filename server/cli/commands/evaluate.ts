/**
 * `dcw evaluate`: evaluate.py's flags on a `dcw train` output folder and an evaluation folder with a
 * tasklist.yml (default: the embedded suite, data/eval). Prints the per-task table and the average on stdout.
 */
import type { Command } from 'commander';
import type { DawnBackend } from '../../gpu/dawn.ts';
import { runEvaluation } from '../../train/evaluate.ts';
import { createProgress } from '../progress.ts';
import { bpeHelp, gpuOption } from './train.ts';
import { loadTokenizer } from './tokenize.ts';

interface EvaluateFlags {
  train_output_dir?: string; output_dir?: string; data_dir: string; batch_size: number; use_model?: string; bpe?: string; gpu: DawnBackend;
}

export function registerEvaluate(program: Command): Command {
  return program
    .command('evaluate')
    .description('evaluate a trained model on the fixed task suite (flags as evaluate.py)')
    .requiredOption('--train_output_dir <dir>', 'output directory of dcw train')
    .option('--output_dir <dir>', 'where eval_results.jsonl goes (default: the training output dir)')
    .option('--data_dir <dir>', 'directory of the evaluation sets (clip_benchmark layout)', 'data/eval')
    .option('--batch_size <n>', 'batch size', (v) => parseInt(v, 10), 64)
    .option('--use_model <spec>', 'debug: "ARCH CHECKPOINT" instead of a training run')
    .option('--bpe <file>', bpeHelp)
    .addOption(gpuOption())
    .action(async (f: EvaluateFlags) => {
      const tokenizer = await loadTokenizer(f.bpe);
      let progress: ReturnType<typeof createProgress> | undefined;
      let current = '';
      const out = await runEvaluation({
        trainOutputDir: f.use_model ? undefined : f.train_output_dir, outputDir: f.output_dir ?? (f.use_model ? f.train_output_dir : undefined),
        dataDir: f.data_dir, batchSize: f.batch_size, useModel: f.use_model, tokenizer, gpu: f.gpu,
        log: (line) => {
          progress?.done();
          progress = undefined;
          process.stderr.write(`${line}\n`);
        },
        onTaskProgress: (task, done) => {
          if (current !== task.name || !progress) {
            progress?.done();
            current = task.name;
            progress = createProgress({ label: task.name, total: task.size, unit: ' img' });
          }
          progress.update(done);
        },
      });
      progress?.done();
      process.stderr.write(`${out.evaluated} task(s) evaluated, results in ${out.file}\n`);
      process.stdout.write(out.table);
    });
}
