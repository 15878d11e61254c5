/**
 * `dcw pool targets`: the image_based targets of a scored pool (src/core/pipeline/class-targets.ts): the
 * scorer's zero-shot classifier rows for every class of the suite's classification tasks, written as
 * `{pool}/scorer/targets.npy` (float32 [classes, dim]) and `targets.json` (what each row is).
 */
import { isAbsolute, join, resolve } from 'node:path';
import { parseTasklist } from '../../src/core/eval/tasklist.ts';
import { encodeNpy } from '../../src/core/formats/npy.ts';
import { ClipModel } from '../../src/core/model/clip.ts';
import { clipConfig } from '../../src/core/model/configs.ts';
import { classNameTargets, type ClassTargets } from '../../src/core/pipeline/class-targets.ts';
import { clipEncoders } from '../../src/core/pipeline/evaluate.ts';
import type { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import { UserError } from '../cli/errors.ts';
import { FileEvalStore } from '../eval/file-store.ts';
import type { DawnBackend } from '../gpu/dawn.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { readInfo } from '../train/checkpoints.ts';
import { openTrainingBackend } from '../train/train.ts';
import { SCORER_DIR } from './score.ts';

export interface PoolTargetsOptions {
  pool: string;
  evalDir: string;
  tokenizer: ClipTokenizer;
  gpu?: DawnBackend;
  /** Default {pool}/scorer/targets.npy. */
  out?: string;
}

export async function writePoolTargets(o: PoolTargetsOptions): Promise<{ file: string; targets: ClassTargets }> {
  const scorerDir = join(o.pool, SCORER_DIR);
  let info;
  try {
    info = await readInfo(scorerDir);
  } catch {
    throw new UserError(`pool targets: ${scorerDir}: no scorer here: run 'dcw pool score --pool ${o.pool}' first`);
  }
  const store = new FileEvalStore(o.evalDir);
  const tasklist = await store.readText('tasklist.yml');
  if (tasklist === undefined) throw new UserError(`pool targets: ${join(o.evalDir, 'tasklist.yml')}: not found: --eval must be an evaluation suite (the embedded one: data/eval)`);
  const tasks = parseTasklist(tasklist, join(o.evalDir, 'tasklist.yml'));
  const cfg = clipConfig(info.model);
  const { state } = await loadCheckpoint(isAbsolute(info.checkpoint) ? info.checkpoint : resolve(scorerDir, info.checkpoint), cfg);
  const device = await openTrainingBackend(o.gpu, cfg.name);
  try {
    const model = new ClipModel(device.backend, cfg, { state });
    const targets = await classNameTargets(tasks, store, clipEncoders(model, o.tokenizer, 256));
    const file = o.out ?? join(scorerDir, 'targets.npy');
    await writeFileAtomic(file, encodeNpy({ dtype: '<f4', shape: [targets.rows.length, targets.dim], data: targets.weights }));
    await writeFileAtomic(file.replace(/\.npy$/, '') + '.json', new TextEncoder().encode(`${JSON.stringify({
      about: 'image_based targets: the scorer\'s zero-shot classifier rows (template-averaged class-name text embeddings), one per class of each classification task',
      scorer: info.checkpoint, model: info.model, dim: targets.dim, rows: targets.rows, skipped: targets.skipped,
    }, null, 2)}\n`));
    return { file, targets };
  } finally {
    device.close();
  }
}
