/**
 * The whole DataComp loop without files, for a browser worker (workers/run.worker.ts) or any caller that
 * hands in stores: the same steps, in the same order and with the same core code, as `dcw run`
 * (server/train/pipeline.ts), each kept in memory instead of written:
 *
 *   1. filter    a model-free baseline (runBaseline) over the pool's metadata → the sorted subset (subset.npy bytes)
 *   2. reshard   the pool's shards read in order, every sample kept as often as its uid occurs in the subset,
 *                keyed `{uid}-{j}` and grouped into shards of `shardSize` samples: resharder.py's
 *                process_task with one worker and no shuffle buffer (dcw run's settings)
 *   3. train     trainClip on those shards, checkpoints in a MemoryCheckpointStore
 *   4. evaluate  epoch_latest's weights (read back from its safetensors bytes, as dcw evaluate loads the
 *                file) on every task of the suite's tasklist.yml → the eval_results.jsonl text
 */
import type { EvalStore } from '../eval/dataset.ts';
import type { EvalResult } from '../eval/results.ts';
import type { EvalTask } from '../eval/tasklist.ts';
import { FormatError } from '../formats/errors.ts';
import type { ImageCodec } from '../formats/image.ts';
import { uidCount } from '../formats/uid.ts';
import { readSamples, writeSamples, type WdsSample } from '../formats/webdataset.ts';
import { checkBaselineSpec, runBaseline, subsetBytes, type BaselineSpec } from '../filters/baselines.ts';
import type { MetadataFile } from '../filters/scan.ts';
import type { Backend, BackendTensor } from '../gpu/backend.ts';
import { clipConfig } from '../model/configs.ts';
import { SubsetIndex } from '../reshard/plan.ts';
import type { ClipTokenizer } from '../text/tokenizer.ts';
import { MemoryCheckpointStore, type TrainState } from '../train/checkpoint.ts';
import type { ShardInfo, ShardStore } from '../train/loader.ts';
import { trainClip, type TrainProgress } from '../train/loop.ts';
import type { ScaleConfig } from '../train/scales.ts';
import { evaluateCheckpoint } from './evaluate-checkpoint.ts';

/** resharder.py's --shard-size default (dcw run keeps it). */
export const RESHARD_SHARD_SIZE = 10_000;

/** Subset samples grouped into shards, served to the training loader as webdataset tars built on demand. */
export class MemoryShardStore implements ShardStore {
  constructor(readonly shards: readonly { name: string; samples: readonly WdsSample[] }[]) {}

  async listShards(): Promise<ShardInfo[]> {
    return this.shards.map((s) => ({ name: s.name, samples: s.samples.length }));
  }

  async openShard(name: string): Promise<ReadableStream<Uint8Array>> {
    const shard = this.shards.find((s) => s.name === name);
    if (!shard) throw new FormatError(name, 'no such shard in memory');
    // the bytes the resharder writes: wds.TarWriter's members (sampleEntries) with webdataset's headers
    return writeSamples(shard.samples);
  }
}

export interface MemoryReshard {
  store: MemoryShardStore;
  /** Input samples read. */
  processed: number;
  /** Samples written (duplicates counted). */
  outputCount: number;
  /** Samples skipped, as the resharder logs them (no json, bad uid, unreadable shard). */
  errors: string[];
}

/**
 * resharder.py's process_task with one worker, no shuffle buffer, into memory: the pool's shards in their
 * listed order (the pool's shard-number order), each sample emitted once per occurrence of its uid.
 */
export async function reshardInMemory(pool: ShardStore, subset: SubsetIndex, shardSize = RESHARD_SHARD_SIZE): Promise<MemoryReshard> {
  if (!(Number.isInteger(shardSize) && shardSize >= 1)) throw new RangeError(`shard size must be a positive integer, got ${shardSize}`);
  const out: { name: string; samples: WdsSample[] }[] = [];
  const errors: string[] = [];
  let processed = 0;
  let outputCount = 0;
  const decoder = new TextDecoder();
  for (const shard of await pool.listShards()) {
    try {
      for await (const sample of readSamples(await pool.openShard(shard.name), shard.name, { duplicates: 'new-sample' })) {
        const json = sample.files.get('json');
        if (!json) {
          errors.push(`missing json for ${shard.name}/${sample.__key__}, skipping`);
          continue;
        }
        let uid: unknown;
        try {
          uid = (JSON.parse(decoder.decode(json)) as { uid?: unknown }).uid;
        } catch (err) {
          errors.push(`${shard.name}/${sample.__key__}.json: ${(err as Error).message}`);
          continue;
        }
        const key = typeof uid === 'string' ? SubsetIndex.parseUid(uid) : undefined;
        if (!key) {
          errors.push(`${shard.name}/${sample.__key__}.json: uid ${JSON.stringify(uid)} is not a 128-bit hex number`);
          continue;
        }
        const n = subset.count(key);
        for (let j = 0; j < n; j++) {
          let current = out.at(-1);
          if (!current || current.samples.length >= shardSize) {
            current = { name: `${String(out.length).padStart(8, '0')}.tar`, samples: [] };
            out.push(current);
          }
          current.samples.push({ __key__: `${uid as string}-${j}`, files: sample.files });
          outputCount++;
        }
        processed++;
      }
    } catch (err) {
      // webdataset's handler logs and goes on with the next shard, as the resharder does
      errors.push(`webdataset error: ${shard.name}: ${(err as Error).message}`);
    }
  }
  return { store: new MemoryShardStore(out), processed, outputCount, errors };
}

export interface InMemoryRunOptions<T extends BackendTensor> {
  backend: Backend<T>;
  scale: ScaleConfig;
  /** A baseline that needs no language model (no_filter, clip_score with a threshold or fraction). */
  filter: BaselineSpec;
  seed: number;
  /** The pool's metadata parquet files. */
  metadata: readonly MetadataFile[];
  /** The pool's shards, in shard-number order. */
  poolShards: ShardStore;
  /** The evaluation suite (tasklist.yml + sets). */
  evalStore: EvalStore;
  codec: ImageCodec;
  tokenizer: ClipTokenizer;
  /** Train loss read every this many steps (and at each epoch's end); default open_clip's 100, as dcw run. */
  logEvery?: number;
  evalBatchSize?: number;
  log?: (line: string) => void;
  onTrainProgress?: (p: TrainProgress) => void;
  onEvalTask?: (task: EvalTask, index: number, of: number) => void;
}

export interface InMemoryRunResult {
  /** subset.npy's bytes (np.save of the sorted uids). */
  subset: Uint8Array;
  subsetSize: number;
  trainSamples: number;
  reshardErrors: string[];
  /** epoch_latest's train state (step, samples seen, logged losses). */
  state: TrainState;
  tasks: EvalTask[];
  results: EvalResult[];
  /** The eval_results.jsonl text, one line per task, as evaluate.py writes it. */
  resultsText: string;
  aggregates: Map<string, number>;
  seconds: { filter: number; reshard: number; train: number; evaluate: number; total: number };
}

export async function runInMemory<T extends BackendTensor>(o: InMemoryRunOptions<T>): Promise<InMemoryRunResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const seconds = { filter: 0, reshard: 0, train: 0, evaluate: 0, total: 0 };
  checkBaselineSpec(o.filter);

  let t = performance.now();
  log(`[1/4] filter ${o.filter.name} over ${o.metadata.length} metadata files`);
  const baseline = await runBaseline(o.metadata, o.filter);
  const subsetSize = uidCount(baseline.words);
  if (subsetSize === 0) throw new FormatError('subset', 'the filter kept no sample; nothing to train on');
  seconds.filter = (performance.now() - t) / 1000;

  t = performance.now();
  log(`[2/4] reshard the pool's shards to ${subsetSize} uids`);
  const reshard = await reshardInMemory(o.poolShards, new SubsetIndex(baseline.words));
  for (const e of reshard.errors) log(`reshard: ${e}`);
  if (!reshard.outputCount) throw new FormatError('subset', "the subset matched no sample of the pool's shards");
  seconds.reshard = (performance.now() - t) / 1000;

  t = performance.now();
  log(`[3/4] train ${o.scale.name} on ${reshard.outputCount} samples`);
  const checkpoints = new MemoryCheckpointStore();
  await trainClip({
    backend: o.backend, scale: o.scale, seed: o.seed, store: reshard.store, codec: o.codec, tokenizer: o.tokenizer, checkpoints,
    logEvery: o.logEvery, onProgress: o.onTrainProgress,
  });
  const latest = checkpoints.saved.get('epoch_latest');
  if (!latest) throw new Error('training saved no epoch_latest checkpoint');
  seconds.train = (performance.now() - t) / 1000;

  t = performance.now();
  let evaluated = false;
  const { tasks, results, resultsText, aggregates } = await evaluateCheckpoint({
    backend: o.backend, model: clipConfig(o.scale.model), weights: latest.weights, weightsFile: 'epoch_latest.safetensors', store: o.evalStore,
    codec: o.codec, tokenizer: o.tokenizer, batchSize: o.evalBatchSize ?? 64,
    onTaskStart: (task, i, of) => {
      if (!evaluated) log(`[4/4] evaluate on ${of} tasks`);
      evaluated = true;
      log(`evaluating ${task.name} (${i + 1}/${of})`);
      o.onEvalTask?.(task, i, of);
    },
  });
  seconds.evaluate = (performance.now() - t) / 1000;
  seconds.total = (performance.now() - t0) / 1000;
  return {
    subset: subsetBytes(baseline), subsetSize, trainSamples: reshard.outputCount, reshardErrors: reshard.errors, state: latest.state,
    tasks, results, resultsText, aggregates, seconds,
  };
}
