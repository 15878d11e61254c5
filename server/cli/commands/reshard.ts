/**
 * `dcw reshard`: the flags of resharder.py; see server/reshard/resharder.ts for the algorithm and the
 * few documented differences.
 */
import type { Command } from 'commander';
import { reshard } from '../../reshard/resharder.ts';

interface ReshardFlags {
  inputDir: string; outputDir: string; subsetFile: string; numShards?: number; firstShard: number; numWorkers?: number;
  shardSize: number; shardFormat: string; outputShardFormat: string; shardStatsFormat: string; outputShardStatsFormat: string;
  shardTable: string; writeShardTable?: boolean; shuffleBufsize: number; blurMetadataMap?: string; applyBlur?: boolean;
  injectBlurMetadata?: boolean; reencodeWebpQuality: string; dryRun?: boolean; overwrite?: boolean; verbose?: boolean; quiet?: boolean;
}

export function registerReshard(program: Command): Command {
  return program
    .command('reshard')
    .description('write the samples of a subset into new shards (flags as resharder.py); a uid listed k times is written k times as {uid}-0 … {uid}-(k-1)')
    .requiredOption('-i, --input-dir <dir>', 'input shard directory')
    .requiredOption('-o, --output-dir <dir>', 'output shard directory')
    .requiredOption('-s, --subset-file <file>', 'subset .npy of sorted uids (duplicates mean repeats)')
    .option('-n, --num-shards <n>', 'number of input shards (found by search if absent)', (v) => parseInt(v, 10))
    .option('--first-shard <n>', 'first input shard number', (v) => parseInt(v, 10), 0)
    .option('-j, --num-workers <n>', 'parallel workers (default: one per core; output shards are numbered in worker order)', (v) => parseInt(v, 10))
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
    .action(async (f: ReshardFlags) => {
      const { availableParallelism } = await import('node:os');
      await reshard({
        ...f,
        numWorkers: f.numWorkers ?? availableParallelism(),
        verbose: f.verbose ? 1 : 0,
        quiet: f.quiet ? 1 : 0,
      });
    });
}
