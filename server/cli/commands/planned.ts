/**
 * Subcommands whose work lands with later issues. Their flags are already the official scripts' flags
 * (baselines.py, resharder.py, train.py, evaluate.py), so `--help` shows DataComp users what they know,
 * and a run says clearly which issue brings the feature.
 */
import type { Command } from 'commander';
import { notYet } from '../errors.ts';


export function registerPlannedCommands(program: Command): void {
  program
    .command('train')
    .description('train the fixed CLIP recipe of a scale on shards (flags as train.py)')
    .requiredOption('--scale <scale>', 'competition scale (official or workbench)')
    .requiredOption('--data_dir <dir>', 'shard directory (several joined by ::)')
    .requiredOption('--output_dir <dir>', 'where checkpoints and logs go')
    .option('--data_weights <w>', 'sampling weights per data dir, joined by ::')
    .option('--exp_name <name>', 'experiment name (default: {scale}_scale)')
    .option('--num_checkpoints <n>', 'checkpoints saved during training', (v) => parseInt(v, 10), 5)
    .option('--seed <n>', 'random seed', (v) => parseInt(v, 10), 0)
    .option('--resume <ckpt>', 'checkpoint to resume from', 'latest')
    .option('--precision <p>', 'floating point precision (WebGPU trains in fp32; see README)', 'fp32')
    .action(() => notYet('train', 5, 'training'));

  program
    .command('evaluate')
    .description('evaluate a trained model on the fixed task suite (flags as evaluate.py)')
    .requiredOption('--train_output_dir <dir>', 'output directory of dcw train')
    .option('--output_dir <dir>', 'where eval_results.jsonl goes (default: the training output dir)')
    .option('--data_dir <dir>', 'directory of the evaluation sets (clip_benchmark layout)')
    .option('--batch_size <n>', 'batch size', (v) => parseInt(v, 10), 64)
    .option('--use_model <spec>', 'debug: "ARCH CHECKPOINT" instead of a training run')
    .action(() => notYet('evaluate', 5, 'evaluation'));

  program
    .command('run')
    .description('the whole loop on a pool: filter → subset → reshard → train → evaluate → results table')
    .requiredOption('--scale <scale>', 'competition scale')
    .option('--filter <baseline>', 'baseline or recipe file', 'no_filter')
    .option('--seed <n>', 'random seed', (v) => parseInt(v, 10), 0)
    .option('--output_dir <dir>', 'where the run is saved', 'out/runs')
    .action(() => notYet('run', 5, 'the whole loop'));
}
