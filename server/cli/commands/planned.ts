/**
 * Subcommands whose work lands with later issues. Their flags are already the official scripts' flags
 * (baselines.py, resharder.py, train.py, evaluate.py), so `--help` shows DataComp users what they know,
 * and a run says clearly which issue brings the feature.
 */
import { Option, type Command } from 'commander';
import { notYet } from '../errors.ts';

const SCALES = ['small', 'medium', 'large', 'xlarge'];
const BASELINES = ['no_filter', 'basic_filter', 'text_based', 'image_based', 'image_based_intersect_clip_score', 'clip_score', 'laion2b'];

export function registerPlannedCommands(program: Command): void {
  program
    .command('filter')
    .description('apply an official baseline (flags as baselines.py) or a filter recipe, writing a subset .npy')
    .addOption(new Option('--name <baseline>', 'baseline to apply').choices(BASELINES))
    .option('--metadata_dir <dir>', 'directory of the pool metadata parquet (and npz) files')
    .option('--save_path <file>', 'where to write the subset (.npy of sorted uids)')
    .option('--threshold <x>', 'score threshold for clip_score', parseFloat)
    .option('--fraction <f>', 'keep the top fraction by score for clip_score', parseFloat)
    .addOption(new Option('--arch <arch>', 'CLIP score column').choices(['b32', 'l14']))
    .option('--num_workers <n>', 'parallel workers (one parquet each)', (v) => parseInt(v, 10))
    .option('--num_gpus <n>', 'GPUs for image_based', (v) => parseInt(v, 10))
    .option('--batch_size <n>', 'batch size for image_based', (v) => parseInt(v, 10), 1024)
    .addOption(new Option('--image_based_scale <scale>', 'scale of the centroids for image_based').choices(SCALES))
    .option('--recipe <file>', 'a filter recipe (JSON): baselines, expressions and set algebra')
    .action(() => notYet('filter', 6, 'filtering'));

  program
    .command('reshard')
    .description('write the samples of a subset into new shards (flags as resharder.py)')
    .requiredOption('-i, --input-dir <dir>', 'input shard directory')
    .requiredOption('-o, --output-dir <dir>', 'output shard directory')
    .requiredOption('-s, --subset-file <file>', 'subset .npy of sorted uids (duplicates mean repeats)')
    .option('-n, --num-shards <n>', 'number of input shards (found by search if absent)', (v) => parseInt(v, 10))
    .option('--first-shard <n>', 'first input shard number', (v) => parseInt(v, 10), 0)
    .option('-j, --num-workers <n>', 'parallel workers', (v) => parseInt(v, 10))
    .option('--shard-size <n>', 'samples per output shard', (v) => parseInt(v, 10), 10000)
    .option('--shard-format <fmt>', 'input shard name format', '{:08d}.tar')
    .option('--output-shard-format <fmt>', 'output shard name format', '{:08d}.tar')
    .option('--shard-stats-format <fmt>', 'input stats name format', '{:08d}_stats.json')
    .option('--output-shard-stats-format <fmt>', 'output stats name format', '{:08d}_stats.json')
    .option('--shard-table <file>', 'cache of input shard sizes', 'sizes.json')
    .option('--write-shard-table', 'write the shard size table')
    .option('--shuffle-bufsize <n>', 'shuffle buffer size', (v) => parseInt(v, 10), 0)
    .option('--blur-metadata-map <file>', 'JSON map from shards to parquet files with face_bboxes')
    .option('--apply-blur', 're-blur faces from face_bboxes (re-encodes as webp)')
    .option('--inject-blur-metadata', 'add face_bboxes to each sample json')
    .option('--reencode-webp-quality <q>', 'webp quality when re-blurring', '100')
    .option('--dry-run', 'count, do not write')
    .option('--overwrite', 'delete what is in the output directory first')
    .option('-v, --verbose', 'more output')
    .option('-q, --quiet', 'less output')
    .action(() => notYet('reshard', 6, 'resharding'));

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
