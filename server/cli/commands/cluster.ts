/**
 * `dcw cluster`: the pool centroids of the image_based baselines, as baselines/image_based_clustering.py
 * computes them (faiss k-means: niter 20, seed 0, max_points_per_centroid 10^7) — from the npz `l14_img`
 * of a metadata folder after caption_filter — on the WebGPU engine. Writes the centroids as .npy (float32
 * [K, d]). Also the server-side pieces `dcw filter` needs for image_based: the GPU, the npz embeddings and
 * the official asset files.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { ASSETS_RELEASE, centroidAssetNames, clusteringInput, concatRows, npzPathFor, readFeatureMatrix, TARGET_ASSET_NAMES, type ImageBasedScale } from '../../../src/core/filters/image-based.ts';
import { DATACOMP_KMEANS, kmeans, Mt19937, type Embeddings } from '../../../src/core/filters/kmeans.ts';
import type { MetadataFile } from '../../../src/core/filters/scan.ts';
import { FormatError } from '../../../src/core/formats/errors.ts';
import { encodeNpy } from '../../../src/core/formats/npy.ts';
import { readNpz } from '../../../src/core/formats/npz.ts';
import { Engine } from '../../../src/core/gpu/engine.ts';
import { openDawn, type DawnBackend } from '../../gpu/dawn.ts';
import { loadFastTextDetector } from '../../filters/langid-fasttext.ts';
import { listMetadataFiles } from '../../filters/metadata-dir.ts';
import { writeFileAtomic } from '../../io/streams.ts';
import { createProgress } from '../progress.ts';
import { UserError } from '../errors.ts';


/** The WebGPU engine on this machine's best adapter ($DCW_GPU_BACKEND picks one: vulkan, opengles, swiftshader). */
export async function openEngine(command: string): Promise<Engine> {
  try {
    return new Engine(await openDawn({ backend: (process.env.DCW_GPU_BACKEND as DawnBackend | undefined) ?? 'auto' }));
  } catch (err) {
    throw new UserError(`${command}: no WebGPU device (${(err as Error).message})`);
  }
}

/** An npz member of the file paired with a metadata parquet (`{stem}.npz`), e.g. its `l14_img` rows. */
export function npzEmbeddings(key = 'l14_img'): (file: MetadataFile) => Promise<Embeddings> {
  return async (file) => {
    const path = npzPathFor(file.name);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FormatError(path, `missing: the image-based filters read ${key} from the npz beside each parquet (download_upstream.py --download_npz)`);
      throw err;
    }
    const a = readNpz(bytes, path, { only: [key] })[key]!;
    if (a.shape.length !== 2 || !(a.dtype === '<f2' || a.dtype === '<f4')) throw new FormatError(path, `${key} is ${a.dtype} (${a.shape.join(', ')}), not a float16/float32 matrix`);
    return { rows: a.shape[0]!, dim: a.shape[1]!, data: a.data as Float32Array | Uint16Array };
  };
}

/** Where official assets are looked for: $DCW_ASSETS, then baselines/utils.py's cache ~/.cache/datacomp. */
function assetDirs(): string[] {
  return [process.env.DCW_ASSETS, join(homedir(), '.cache', 'datacomp')].filter((d): d is string => Boolean(d));
}

function findAsset(names: readonly string[], flag: string, command: string): string {
  for (const dir of assetDirs()) for (const name of names) if (existsSync(join(dir, name))) return join(dir, name);
  throw new UserError(`${command}: ${names[0]} not found in ${assetDirs().join(' or ')}: give ${flag} or set DCW_ASSETS to a folder holding it (official file: ${ASSETS_RELEASE}${names[0]})`);
}

export async function readMatrix(path: string, command: string, key?: string): Promise<Embeddings> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (err) {
    throw new UserError(`${command}: ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  return readFeatureMatrix(bytes, path, key);
}

/** The centroids and targets of image_based, from flags or the official files in the asset folders. */
export async function loadImageBasedAssets(flags: { centroids?: string; image_targets?: string[]; image_based_scale?: string }, command: string): Promise<{ centroids: Embeddings; targets: Embeddings }> {
  if (!flags.centroids && !flags.image_based_scale) throw new UserError(`${command}: image_based needs --image_based_scale (small, medium, large, xlarge) or --centroids FILE`);
  const centroidPath = flags.centroids ?? findAsset(centroidAssetNames(flags.image_based_scale as ImageBasedScale), '--centroids FILE', command);
  const targetPaths = flags.image_targets?.length ? flags.image_targets : TARGET_ASSET_NAMES.map((names) => findAsset(names, '--image_targets FILE...', command));
  const centroids = await readMatrix(centroidPath, command);
  const targets = concatRows(await Promise.all(targetPaths.map((p) => readMatrix(p, command))), 'image targets');
  return { centroids, targets };
}

interface ClusterFlags {
  metadata_dir?: string; save_path?: string; num_clusters: number; embedding_key: string; sample_ratio: number;
  num_gpus?: number; num_workers?: number; disable_caption_filtering?: boolean; seed: number; niter: number; max_points_per_centroid: number;
}

export function registerCluster(program: Command): Command {
  const int = (v: string) => parseInt(v, 10);
  return program
    .command('cluster')
    .description('k-means centroids of a pool\'s image embeddings for image_based (flags as image_based_clustering.py), written as .npy')
    .option('--metadata_dir <dir>', 'directory of the pool metadata parquet and npz files')
    .option('--save_path <file>', 'where to write the centroids (.npy, float32 [num_clusters, d])')
    .option('--num_clusters <k>', 'number of clusters', int, 100000)
    .addOption(new Option('--embedding_key <key>', 'npz embeddings to cluster').choices(['l14_img', 'b32_img']).default('l14_img'))
    .option('--sample_ratio <r>', 'fraction of each file\'s rows to draw, with replacement (-1: all)', parseFloat, -1)
    .option('--num_gpus <n>', 'accepted for compatibility; the one WebGPU device is used', int)
    .option('--num_workers <n>', 'accepted for compatibility', int)
    .option('--disable_caption_filtering', 'cluster every row, not only those caption_filter keeps')
    .option('--seed <n>', 'k-means seed (faiss Clustering.seed)', int, DATACOMP_KMEANS.seed)
    .option('--niter <n>', 'k-means iterations', int, DATACOMP_KMEANS.niter)
    .option('--max_points_per_centroid <n>', 'faiss subsamples beyond this many points per centroid', int, DATACOMP_KMEANS.maxPointsPerCentroid)
    .addHelpText('after', `
The same algorithm as faiss's Clustering with DataComp's settings, including faiss's random permutations
(mt19937; faiss <= 1.8) for the sample, the starting centroids and empty-cluster splits; points are assigned on
the WebGPU engine in float32, so near-ties can go another way than on faiss's GPU and the centroids drift apart
from faiss's over the iterations. --sample_ratio draws from seed --seed (the official workers' draws are
unseeded). \`dcw filter --name image_based --centroids FILE\` reads these .npy files as well as the official
{scale}_centroids_l14.pt (torch.save) files.`)
    .action(async (f: ClusterFlags) => {
      if (!f.metadata_dir) throw new UserError('cluster: --metadata_dir is required');
      if (!f.save_path) throw new UserError('cluster: --save_path is required');
      for (const [name, v] of [['--num_clusters', f.num_clusters], ['--niter', f.niter], ['--max_points_per_centroid', f.max_points_per_centroid], ['--seed', f.seed]] as const) {
        if (!Number.isSafeInteger(v) || v < (name === '--niter' || name === '--seed' ? 0 : 1)) throw new UserError(`cluster: ${name} must be a ${name === '--niter' || name === '--seed' ? 'non-negative' : 'positive'} integer`);
      }
      const listing = await listMetadataFiles(f.metadata_dir);
      try {
        const detector = f.disable_caption_filtering ? undefined : await loadFastTextDetector().catch((err: Error) => { throw new UserError(`cluster: ${err.message}`); });
        const progress = createProgress({ label: 'loading embeddings', unit: ' rows' });
        const x = await clusteringInput(listing.files, npzEmbeddings(f.embedding_key), {
          detector, sampleRatio: f.sample_ratio, random: new Mt19937(f.seed), onProgress: (rows) => progress.update(rows),
        }).catch((err: unknown) => { throw err instanceof RangeError ? new UserError(`cluster: ${err.message}`) : err; });
        progress.done(`${x.rows} embeddings of ${x.dim} dimensions to cluster`);
        const engine = await openEngine('cluster');
        try {
          const iter = createProgress({ label: `k-means (${f.num_clusters} clusters)`, unit: ' iterations', total: f.niter });
          const r = await kmeans(engine, x, f.num_clusters, {
            niter: f.niter, seed: f.seed, maxPointsPerCentroid: f.max_points_per_centroid,
            onIteration: (s) => iter.update(s.iteration + 1),
          }).catch((err: unknown) => { throw err instanceof RangeError ? new UserError(`cluster: ${err.message}`) : err; });
          for (const w of r.warnings) console.error(`dcw cluster: warning: ${w}`);
          await writeFileAtomic(f.save_path, encodeNpy({ dtype: '<f4', shape: [r.k, r.dim], data: r.centroids }));
          const last = r.iterations.at(-1);
          iter.done(`${r.k} centroids from ${r.trainingRows} points${last ? `, objective ${last.objective.toPrecision(6)}` : ''} → ${f.save_path}`);
        } finally {
          engine.destroy();
        }
      } finally {
        await listing.close();
      }
    });
}
