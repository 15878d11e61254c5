/**
 * Zero-shot classification and retrieval given a model's two embedding functions, as DataComp's
 * eval_utils (wds_eval.py, retr_eval.py) run clip_benchmark:
 * - classifier: for each class, every template formatted with the class name (`template.format(c=name)`),
 *   text embeddings L2-normalised, averaged, renormalised;
 * - logits = 100 · normalise(image embedding) · classifier; acc1, acc5 (null below 5 classes, as wds_eval.py),
 *   mean_per_class_recall (sklearn balanced accuracy of the top-1 predictions);
 * - retrieval: normalised embeddings of every image and every caption; recall@1/5/10 both ways;
 *   mean_recall@1 = ½ (text_retrieval_recall@1 + image_retrieval_recall@1) (retr_eval.py).
 * Images go through the evaluation transform (Resize short side + CenterCrop, bicubic; augment.ts) in
 * batches of `batchSize` (evaluate.py --batch_size, default 64). Arithmetic is float64 over float32
 * embeddings (torch: float32), so near-ties may rank differently; see metrics.ts.
 */
import { FormatError } from '../formats/errors.ts';
import type { ImageCodec } from '../formats/image.ts';
import { evalTransformInto } from '../train/augment.ts';
import { openEvalSet, readEvalSamples, type EvalSample, type EvalSet, type EvalStore } from './dataset.ts';
import { balancedAccuracy, retrievalMetrics, topkAccuracy, topkRows } from './metrics.ts';
import type { EvalTask } from './tasklist.ts';

/** A model as the evaluation sees it. */
export interface Encoders {
  /** Side of the square input image (the model config's image size). */
  imageSize: number;
  /** Embeddings (count × dim, row-major) of `count` preprocessed images (count × 3 × imageSize², CHW each). */
  encodeImages(images: Float32Array, count: number): Promise<Float32Array>;
  /** Embeddings (texts.length × dim) of captions; the model side tokenizes them (CLIP BPE, its context length). */
  encodeTexts(texts: readonly string[]): Promise<Float32Array>;
}

export interface EvalOptions {
  codec: ImageCodec;
  /** Images per encodeImages call (and captions per encodeTexts call). Default 64. */
  batchSize?: number;
  /** Reports progress: samples done so far. */
  onProgress?: (done: number) => void;
}

/** F.normalize(x, dim=-1): each row divided by max(‖row‖, 1e-12). */
export function normalizeRows(x: Float32Array, dim: number): Float32Array {
  if (dim <= 0 || x.length % dim !== 0) throw new RangeError(`${x.length} values are not rows of ${dim}`);
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length; r += dim) {
    let ss = 0;
    for (let d = 0; d < dim; d++) ss += x[r + d]! * x[r + d]!;
    const norm = Math.max(Math.sqrt(ss), 1e-12);
    for (let d = 0; d < dim; d++) out[r + d] = x[r + d]! / norm;
  }
  return out;
}

/** Python's `template.format(c=classname)`: {c} replaced, {{ and }} unescaped; any other field is an error. */
export function formatTemplate(template: string, classname: string): string {
  return template.replace(/\{\{|\}\}|\{([^{}]*)\}|[{}]/g, (m, field: string | undefined) => {
    if (m === '{{') return '{';
    if (m === '}}') return '}';
    if (field === 'c') return classname;
    throw new FormatError('zeroshot_classification_templates.txt', `template ${JSON.stringify(template)} has ${JSON.stringify(m)}; only {c} is filled in`);
  });
}

function dimOf(embeddings: Float32Array, rows: number, what: string): number {
  const dim = embeddings.length / rows;
  if (!(rows > 0 && Number.isInteger(dim) && dim > 0)) throw new RangeError(`${what}: ${embeddings.length} values for ${rows} rows`);
  return dim;
}

/** The zero-shot classifier: classes × dim, each row the renormalised mean of its normalised template embeddings. */
export async function zeroShotClassifier(enc: Pick<Encoders, 'encodeTexts'>, classnames: readonly string[], templates: readonly string[]): Promise<{ weights: Float32Array; dim: number }> {
  if (!classnames.length || !templates.length) throw new RangeError('zero-shot classification needs class names and templates');
  let weights: Float32Array | undefined;
  let dim = 0;
  for (const [c, name] of classnames.entries()) {
    const texts = templates.map((t) => formatTemplate(t, name));
    const raw = await enc.encodeTexts(texts);
    dim = dimOf(raw, texts.length, 'encodeTexts');
    const emb = normalizeRows(raw, dim);
    weights ??= new Float32Array(classnames.length * dim);
    const mean = new Float64Array(dim);
    for (let t = 0; t < texts.length; t++) for (let d = 0; d < dim; d++) mean[d]! += emb[t * dim + d]!;
    let ss = 0;
    for (let d = 0; d < dim; d++) {
      mean[d]! /= texts.length;
      ss += mean[d]! * mean[d]!;
    }
    const norm = Math.sqrt(ss);
    for (let d = 0; d < dim; d++) weights[c * dim + d] = mean[d]! / norm;
  }
  return { weights: weights!, dim };
}

/** Logits (rows × classes) = 100 · images (normalised) · classifierᵀ. */
export function zeroShotLogits(images: Float32Array, classifier: Float32Array, dim: number): Float64Array {
  const n = images.length / dim;
  const c = classifier.length / dim;
  const out = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += images[i * dim + d]! * classifier[k * dim + d]!;
      out[i * c + k] = 100 * s;
    }
  }
  return out;
}

/** wds_eval.py's metrics from the top-5 predictions: acc1, acc5 (null below 5 classes), mean_per_class_recall. */
export function classificationMetrics(top: Int32Array, k: number, targets: ArrayLike<number>, numClasses: number): Map<string, number | null> {
  const hasTop5 = numClasses >= 5;
  const [acc1, acc5] = topkAccuracy(top, k, targets, hasTop5 ? [1, 5] : [1]);
  const pred = Array.from({ length: targets.length }, (_, i) => top[i * k]!);
  return new Map<string, number | null>([
    ['acc1', acc1!],
    ['acc5', hasTop5 ? acc5! : null],
    ['mean_per_class_recall', balancedAccuracy(targets, pred)],
  ]);
}

async function* imageBatches(store: EvalStore, set: EvalSet, enc: Encoders, opts: EvalOptions) {
  const size = enc.imageSize;
  const plane = 3 * size * size;
  const batchSize = opts.batchSize ?? 64;
  let pixels = new Float32Array(batchSize * plane);
  let items: EvalSample[] = [];
  let done = 0;
  const flush = async () => {
    const raw = await enc.encodeImages(pixels.subarray(0, items.length * plane), items.length);
    const emb = normalizeRows(raw, dimOf(raw, items.length, 'encodeImages'));
    const out = { emb, items };
    done += items.length;
    opts.onProgress?.(done);
    pixels = new Float32Array(batchSize * plane);
    items = [];
    return out;
  };
  for await (const sample of readEvalSamples(store, set)) {
    const image = await opts.codec.decode(sample.image, `${sample.shard}:${sample.key}.${sample.imageExt}`);
    evalTransformInto(image, size, pixels, items.length * plane);
    items.push(sample);
    if (items.length === batchSize) yield await flush();
  }
  if (items.length) yield await flush();
}

/** Zero-shot classification of one evaluation set. */
export async function evaluateClassification(store: EvalStore, set: EvalSet, enc: Encoders, opts: EvalOptions): Promise<Map<string, number | null>> {
  if (!set.classnames?.length) throw new FormatError(`${set.folder}/classnames.txt`, 'missing or empty: needed for zero-shot classification');
  if (!set.templates?.length) throw new FormatError(`${set.folder}/zeroshot_classification_templates.txt`, 'missing or empty: needed for zero-shot classification');
  const { weights, dim } = await zeroShotClassifier(enc, set.classnames, set.templates);
  const k = Math.min(5, set.classnames.length);
  const tops: Int32Array[] = [];
  const targets: number[] = [];
  for await (const { emb, items } of imageBatches(store, set, enc, opts)) {
    if (emb.length / items.length !== dim) throw new RangeError(`image embeddings have ${emb.length / items.length} dims, text embeddings ${dim}`);
    tops.push(topkRows(zeroShotLogits(emb, weights, dim), items.length, set.classnames.length, k));
    for (const s of items) targets.push(s.label!);
  }
  if (!targets.length) throw new FormatError(`${set.folder}/${set.split}`, 'no samples');
  const top = new Int32Array(targets.length * k);
  let at = 0;
  for (const t of tops) {
    top.set(t, at);
    at += t.length;
  }
  return classificationMetrics(top, k, targets, set.classnames.length);
}

/** Zero-shot retrieval of one evaluation set (each image with its `txt` captions). */
export async function evaluateRetrieval(store: EvalStore, set: EvalSet, enc: Encoders, opts: EvalOptions): Promise<Map<string, number>> {
  const imageParts: Float32Array[] = [];
  const captions: string[] = [];
  const textImage: number[] = [];
  let nImages = 0;
  for await (const { emb, items } of imageBatches(store, set, enc, opts)) {
    imageParts.push(emb);
    for (const s of items) {
      for (const c of s.captions!) {
        captions.push(c);
        textImage.push(nImages);
      }
      nImages++;
    }
  }
  if (!nImages) throw new FormatError(`${set.folder}/${set.split}`, 'no samples');
  const images = concat(imageParts);
  const imageDim = images.length / nImages;
  const batchSize = opts.batchSize ?? 64;
  const textParts: Float32Array[] = [];
  for (let i = 0; i < captions.length; i += batchSize) {
    const chunk = captions.slice(i, i + batchSize);
    const raw = await enc.encodeTexts(chunk);
    textParts.push(normalizeRows(raw, dimOf(raw, chunk.length, 'encodeTexts')));
  }
  const texts = concat(textParts);
  if (captions.length && texts.length / captions.length !== imageDim) throw new RangeError(`text embeddings have ${texts.length / captions.length} dims, image embeddings ${imageDim}`);
  const metrics = retrievalMetrics({ images, texts, dim: imageDim, textImage });
  metrics.set('mean_recall@1', 0.5 * (metrics.get('text_retrieval_recall@1')! + metrics.get('image_retrieval_recall@1')!));
  return metrics;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Evaluates one task of a task list and returns its metrics with `main_metric` appended (evaluate.py:
 * `metrics.get(main_metric, "acc1")`, null when the metric is absent). Zero-shot classification and
 * retrieval sets in webdataset layout are supported; WILDS / fairness metadata and WinoGAViL are not yet.
 */
export async function evaluateTask(task: EvalTask, store: EvalStore, enc: Encoders, opts: EvalOptions): Promise<Map<string, number | null>> {
  if (task.key === 'misc/winogavil' || task.key.startsWith('wilds/') || task.key.startsWith('fairness/')) {
    throw new FormatError(task.key, 'this task needs WILDS/fairness metadata or WinoGAViL, which the workbench does not evaluate yet');
  }
  const set = await openEvalSet(store, task.key);
  let metrics: Map<string, number | null>;
  if (set.type === 'retrieval') metrics = await evaluateRetrieval(store, set, enc, opts);
  else if (set.type === 'classification') metrics = await evaluateClassification(store, set, enc, opts);
  else throw new FormatError(`${set.folder}/dataset_type.txt`, 'multilabel sets (mean average precision) are not evaluated yet');
  const main = metrics.get(task.mainMetric);
  metrics.set('main_metric', main === undefined ? null : main);
  return metrics;
}
