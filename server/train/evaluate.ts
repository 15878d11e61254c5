/**
 * `dcw evaluate` in Node: evaluate.py's flow on a `dcw train` output folder. The task list is the data
 * folder's tasklist.yml (the embedded suite ships one); results go to `{output_dir}/eval_results.jsonl`, one
 * line appended (atomically) per task, and tasks already there are skipped. As evaluate.py checks its cached
 * info.pkl, an output folder that already holds another training run's info.json is refused.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { aggregateSuite, type EvalResult } from '../../src/core/eval/results.ts';
import { parseTasklist, type EvalTask } from '../../src/core/eval/tasklist.ts';
import { ClipModel } from '../../src/core/model/clip.ts';
import { clipConfig } from '../../src/core/model/configs.ts';
import { clipEncoders, evaluateSuite } from '../../src/core/pipeline/evaluate.ts';
import { formatResultsTable } from '../../src/core/pipeline/runs.ts';
import type { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import { FileEvalStore } from '../eval/file-store.ts';
import { UserError } from '../cli/errors.ts';
import type { DawnBackend } from '../gpu/dawn.ts';
import { SharpImageCodec } from '../io/image-codec.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { INFO_FILE, readInfo, writeInfo, type TrainInfo } from './checkpoints.ts';
import { openTrainingBackend } from './train.ts';

export const RESULTS_FILE = 'eval_results.jsonl';

export interface NodeEvalOptions {
  /** `{output_dir}/{exp_name}` of dcw train (ignored with useModel). */
  trainOutputDir?: string;
  /** Default: trainOutputDir. */
  outputDir?: string;
  dataDir: string;
  batchSize?: number;
  /** evaluate.py --use_model: "ARCH CHECKPOINT" instead of a training run. */
  useModel?: string;
  tokenizer: ClipTokenizer;
  gpu?: DawnBackend;
  log?: (line: string) => void;
  onTaskProgress?: (task: EvalTask, done: number) => void;
}

export interface NodeEvalResult {
  file: string;
  tasks: EvalTask[];
  results: EvalResult[];
  aggregates: Map<string, number>;
  table: string;
  evaluated: number;
}

async function loadTasks(dataDir: string): Promise<EvalTask[]> {
  const path = join(dataDir, 'tasklist.yml');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new UserError(`${path}: not found: --data_dir must hold the evaluation sets and their tasklist.yml (the embedded suite: data/eval)`);
  }
  return parseTasklist(text, path);
}

export async function runEvaluation(o: NodeEvalOptions): Promise<NodeEvalResult> {
  const log = o.log ?? (() => {});
  const batchSize = o.batchSize ?? 64;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new UserError(`--batch_size must be a positive integer, got ${o.batchSize}`);
  let arch: string;
  let checkpoint: string;
  let info: TrainInfo | undefined;
  if (o.useModel) {
    const parts = o.useModel.trim().split(/\s+/);
    if (parts.length !== 2) throw new UserError(`--use_model expects "ARCH CHECKPOINT", got ${JSON.stringify(o.useModel)}`);
    [arch, checkpoint] = parts as [string, string];
  } else {
    if (!o.trainOutputDir) throw new UserError('evaluate: --train_output_dir is required (or --use_model)');
    info = await readInfo(o.trainOutputDir);
    arch = info.model;
    checkpoint = isAbsolute(info.checkpoint) ? info.checkpoint : resolve(o.trainOutputDir, info.checkpoint);
  }
  const outputDir = o.outputDir ?? o.trainOutputDir;
  if (!outputDir) throw new UserError('evaluate: --output_dir is required with --use_model');
  if (info && resolve(outputDir) !== resolve(o.trainOutputDir!)) {
    let cached: TrainInfo | undefined;
    try {
      cached = await readInfo(outputDir);
    } catch {
      cached = undefined;
    }
    if (cached && (cached.checkpoint !== info.checkpoint || cached.scale !== info.scale)) {
      throw new UserError(`${join(outputDir, INFO_FILE)}: this output folder holds results of another training run (${cached.checkpoint})`);
    }
    if (!cached) await writeInfo(outputDir, info);
  }
  let cfg;
  try {
    cfg = clipConfig(arch);
  } catch (err) {
    throw new UserError(`evaluate: ${(err as Error).message}`);
  }
  const tasks = await loadTasks(o.dataDir);
  await mkdir(outputDir, { recursive: true });
  const file = join(outputDir, RESULTS_FILE);
  let existing = '';
  try {
    existing = await readFile(file, 'utf8');
  } catch {
    existing = '';
  }
  const { state } = await loadCheckpoint(checkpoint, cfg);
  const device = await openTrainingBackend(o.gpu, cfg.name);
  let evaluated = 0;
  try {
    const model = new ClipModel(device.backend, cfg, { state });
    log(`evaluate ${checkpoint} (${cfg.name}) on ${tasks.length} tasks of ${o.dataDir} on ${device.device}`);
    const results = await evaluateSuite({
      tasks, store: new FileEvalStore(o.dataDir), encoders: clipEncoders(model, o.tokenizer, batchSize), codec: new SharpImageCodec(),
      batchSize, existing, file,
      onSkip: (t) => log(`skipping ${t.name}: already in ${file}`),
      onTaskStart: (t, i) => log(`evaluating ${t.name} (${i + 1}/${tasks.length})`),
      onProgress: o.onTaskProgress,
      onResult: async (_t, _r, text) => {
        evaluated++;
        await writeFileAtomic(file, new TextEncoder().encode(text));
      },
    });
    const aggregates = aggregateSuite(results, tasks, file);
    return { file, tasks, results, aggregates, table: formatResultsTable(results, tasks, aggregates), evaluated };
  } finally {
    device.close();
  }
}
