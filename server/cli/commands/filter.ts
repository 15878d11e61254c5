/**
 * `dcw filter`: an official baseline with the flags of baselines.py, or a filter recipe (--recipe).
 * Writes the sorted subset .npy (np.save of u8,u8 records, duplicates kept), atomically: on any error
 * nothing is written.
 */
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Option, type Command } from 'commander';
import {
  ALL_BASELINES, BaselineOptionError, checkBaselineSpec, runBaseline, subsetBytes, type Arch, type BaselineName, type BaselineSpec,
} from '../../../src/core/filters/baselines.ts';
import { encodeSubsetWords, uidCount } from '../../../src/core/formats/uid.ts';
import { runRecipe, parseRecipe, RecipeError } from '../../../src/core/filters/recipe.ts';
import { loadFastTextDetector } from '../../filters/langid-fasttext.ts';
import { parallelRunner } from '../../filters/parallel.ts';
import { listMetadataFiles, poolIdentity } from '../../filters/metadata-dir.ts';
import { writeFileAtomic } from '../../io/streams.ts';
import { createProgress } from '../progress.ts';
import { UserError } from '../errors.ts';

const SCALES = ['small', 'medium', 'large', 'xlarge'];

interface FilterFlags {
  name?: BaselineName; metadata_dir?: string; save_path?: string; threshold?: number; fraction?: number; arch?: Arch;
  num_workers?: number; num_gpus?: number; batch_size: number; image_based_scale?: string; recipe?: string;
}

export function registerFilter(program: Command): Command {
  return program
    .command('filter')
    .description('apply an official baseline (flags as baselines.py) or a filter recipe, writing a subset .npy')
    .addOption(new Option('--name <baseline>', 'baseline to apply').choices(ALL_BASELINES as unknown as string[]))
    .option('--metadata_dir <dir>', 'directory of the pool metadata parquet (and npz) files')
    .option('--save_path <file>', 'where to write the subset (.npy of sorted uids)')
    .option('--threshold <x>', 'score threshold for clip_score', parseFloat)
    .option('--fraction <f>', 'keep the top fraction by score for clip_score', parseFloat)
    .addOption(new Option('--arch <arch>', 'CLIP score column').choices(['b32', 'l14']))
    .option('--num_workers <n>', 'worker threads for the passes that need no language model (at most one per parquet; default one per CPU, one for pools under 64 MiB of metadata)', (v) => parseInt(v, 10))
    .option('--num_gpus <n>', 'GPUs for image_based', (v) => parseInt(v, 10))
    .option('--batch_size <n>', 'batch size for image_based', (v) => parseInt(v, 10), 1024)
    .addOption(new Option('--image_based_scale <scale>', 'scale of the centroids for image_based').choices(SCALES))
    .option('--recipe <file>', 'a filter recipe (JSON): baselines, expressions and set algebra')
    .addHelpText('after', `
Language id: fastText lid.176 (npm fasttext.wasm.js, the lid.176.ftz release) for basic_filter, and also
for laion2b, where the official script uses gcld3 (no JavaScript build exists): laion2b here is
"B/32 score >= 0.28 and fastText says en", and recipes record the detector as a stand-in for gcld3.`)
    .action(async (f: FilterFlags) => {
      if (!f.metadata_dir) throw new UserError('filter: --metadata_dir is required');
      if (!f.save_path) throw new UserError('filter: --save_path is required');
      if (Boolean(f.name) === Boolean(f.recipe)) throw new UserError('filter: give exactly one of --name (a baseline) and --recipe (a recipe file)');
      const listing = await listMetadataFiles(f.metadata_dir);
      let parallel: Awaited<ReturnType<typeof parallelRunner>> | undefined;
      try {
        const workers = await filterWorkers(f.num_workers, listing.files.map((m) => m.name));
        if (workers > 1) parallel = await parallelRunner(listing.files.map((m) => m.name), workers);
        const runner = parallel?.run;
        const progress = createProgress({ label: f.name ?? 'recipe', unit: ' rows' });
        const onProgress = (rows: number) => progress.update(rows);
        if (f.name) {
          const spec: BaselineSpec = { name: f.name, arch: f.arch, threshold: f.threshold, fraction: f.fraction };
          if (spec.arch === undefined) delete spec.arch;
          if (spec.threshold === undefined) delete spec.threshold;
          if (spec.fraction === undefined) delete spec.fraction;
          try {
            checkBaselineSpec(spec);
          } catch (err) {
            if (err instanceof BaselineOptionError) throw new UserError(`filter: ${err.message}`);
            throw err;
          }
          const needsLid = spec.name === 'basic_filter' || spec.name === 'laion2b';
          const detector = needsLid ? await loadFastTextDetector().catch((err: Error) => { throw new UserError(`filter: ${err.message}`); }) : undefined;
          let result;
          try {
            result = await runBaseline(listing.files, spec, { detector, onProgress, runner });
          } catch (err) {
            if (err instanceof RangeError) throw new UserError(`filter: ${err.message}`);
            throw err;
          }
          await writeFileAtomic(f.save_path, subsetBytes(result));
          progress.done(`${spec.name}: kept ${uidCount(result.words)} of ${result.rows} rows` +
            (result.threshold !== undefined ? ` (threshold ${result.threshold})` : '') + ` → ${f.save_path}`);
        } else {
          let recipe;
          try {
            recipe = parseRecipe(await readFile(f.recipe!, 'utf8'), f.recipe!);
          } catch (err) {
            if (err instanceof RecipeError) throw new UserError(err.message);
            throw err;
          }
          const needsLid = JSON.stringify(recipe).match(/basic_filter|laion2b|lang\s*\(/) !== null;
          const detector = needsLid ? await loadFastTextDetector().catch((err: Error) => { throw new UserError(`filter: ${err.message}`); }) : undefined;
          const pool = await poolIdentity(listing.files);
          let run;
          try {
            run = await runRecipe(listing.files, recipe, { detector, onProgress, pool, runner });
          } catch (err) {
            if (err instanceof RecipeError || err instanceof RangeError) throw new UserError(err.message);
            throw err;
          }
          await writeFileAtomic(`${f.save_path}.recipe.json`, new TextEncoder().encode(`${JSON.stringify(run.record, null, 2)}\n`));
          await writeFileAtomic(f.save_path, encodeSubsetWords(run.words, { sorted: true }));
          progress.done(`recipe ${f.recipe}: kept ${uidCount(run.words)} uids → ${f.save_path} (record: ${f.save_path}.recipe.json)`);
        }
      } finally {
        await parallel?.close();
        await listing.close();
      }
    });
}

/** Below this much metadata a second thread costs more to start (tsx in each worker) than it saves. */
const PARALLEL_MIN_BYTES = 64 << 20;

/**
 * Worker threads for the model-free passes: `--num_workers` when given (baselines.py's flag; at most one per
 * metadata file, as there), else baselines.py's default of one per CPU — but one for small pools.
 */
async function filterWorkers(flag: number | undefined, paths: readonly string[]): Promise<number> {
  if (flag !== undefined) {
    if (!Number.isInteger(flag) || flag < 1) throw new UserError(`filter: --num_workers must be a whole number ≥ 1, got ${flag}`);
    return Math.min(flag, paths.length);
  }
  const bytes = (await Promise.all(paths.map(async (p) => (await stat(p)).size))).reduce((a, b) => a + b, 0);
  return bytes < PARALLEL_MIN_BYTES ? 1 : Math.min(availableParallelism(), paths.length);
}
