/**
 * Targets for the image_based baselines on a pool without ImageNet features. DataComp's image_based keeps the
 * pool clusters nearest to OpenAI CLIP L/14 image features of ImageNet-1k's training set; a pool embedded by
 * its own scorer (dcw pool score) lives in another space, where those features mean nothing. The rules allow
 * the evaluation tasks' class names (and training splits) for this, so the targets here are the scorer's
 * zero-shot classifier rows: per class of every classification task, the renormalised mean of its template
 * captions' text embeddings — exactly what zero-shot evaluation compares pictures with.
 *
 * A caveat a user should know: these are text embeddings, and CLIP's image and text embeddings occupy
 * different cones ("modality gap"), so each target picks the image cluster most aligned with it, not one it
 * sits in.
 */
import { openEvalSet, type EvalStore } from '../eval/dataset.ts';
import type { EvalTask } from '../eval/tasklist.ts';
import { zeroShotClassifier, type Encoders } from '../eval/zeroshot.ts';

export interface ClassTargets {
  /** rows × dim, each row unit length. */
  weights: Float32Array;
  dim: number;
  /** What each row is. */
  rows: { task: string; classname: string }[];
  /** Tasks left out (retrieval, multilabel), with why. */
  skipped: { task: string; why: string }[];
}

export async function classNameTargets(tasks: readonly EvalTask[], store: EvalStore, enc: Pick<Encoders, 'encodeTexts'>): Promise<ClassTargets> {
  const parts: Float32Array[] = [];
  const rows: ClassTargets['rows'] = [];
  const skipped: ClassTargets['skipped'] = [];
  let dim = 0;
  for (const task of tasks) {
    const set = await openEvalSet(store, task.key);
    if (set.type !== 'classification') {
      skipped.push({ task: task.name, why: `${set.type} task: no class names` });
      continue;
    }
    const classifier = await zeroShotClassifier(enc, set.classnames ?? [], set.templates ?? []);
    dim = classifier.dim;
    parts.push(classifier.weights);
    for (const classname of set.classnames!) rows.push({ task: task.name, classname });
  }
  if (!rows.length) throw new RangeError('the suite has no classification task: nothing to take class names from');
  const weights = new Float32Array(rows.length * dim);
  let at = 0;
  for (const p of parts) {
    weights.set(p, at);
    at += p.length;
  }
  return { weights, dim, rows, skipped };
}
