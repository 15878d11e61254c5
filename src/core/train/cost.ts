/**
 * What a training step costs, from the model config alone, so that a throughput measured on one scale of this
 * device (samples/s) can be turned into an estimated time for another scale.
 *
 * Counted as multiply–adds × 2 of the matrix products of a forward pass (the usual transformer estimate:
 * embeddings' lookups, layer norms, softmax and GELU are left out, being O(width) per token):
 *   vision  patch embedding 2·(3·p²)·W per patch; per layer, per token T = patches + 1: QKV and output
 *           projections 2·4·W², MLP (×4) 2·8·W², attention scores and mix 2·2·T·W; projection 2·W·E
 *   text    per layer the same with the context length as T; projection 2·W·E
 *   loss    the two B×B similarity products: 2·2·B·E per sample
 * A training step is forward + backward ≈ 3 × forward (backward computes the gradients of inputs and weights,
 * two products per forward product). Small models use a device less well than large ones, so an estimate from
 * a small scale's throughput errs on the long side for a larger model on a GPU; it is an order of magnitude,
 * not a promise.
 */
import { clipConfig, gridTokens, type ClipConfig } from '../model/configs.ts';
import { runPlan, type ScaleConfig } from './scales.ts';

function towerFlops(tokens: number, width: number, layers: number): number {
  return layers * tokens * (2 * 4 * width * width + 2 * 8 * width * width + 2 * 2 * tokens * width);
}

/**
 * Forward FLOPs of one image and one caption (without the loss, which depends on the batch). open_clip's
 * docs/model_profile.csv counts the same way (its "gflops" are 2 × multiply–adds).
 */
export function clipForwardFlops(cfg: ClipConfig): { vision: number; text: number; total: number } {
  const v = cfg.vision;
  const patches = gridTokens(v);
  const vision = patches * 2 * 3 * v.patchSize * v.patchSize * v.width + towerFlops(patches + 1, v.width, v.layers) + 2 * v.width * cfg.embedDim;
  const t = cfg.text;
  const text = towerFlops(t.contextLength, t.width, t.layers) + 2 * t.width * cfg.embedDim;
  return { vision, text, total: vision + text };
}

/** FLOPs of one training sample of a scale: 3 × (forward + its share of the contrastive loss). */
export function trainFlopsPerSample(scale: Pick<ScaleConfig, 'model' | 'batchSize'>): number {
  const cfg = clipConfig(scale.model);
  return 3 * (clipForwardFlops(cfg).total + 2 * 2 * scale.batchSize * cfg.embedDim);
}

/** A throughput measured on this device: samples/s while training `scale`. */
export interface MeasuredThroughput {
  scale: Pick<ScaleConfig, 'model' | 'batchSize'>;
  samplesPerSecond: number;
}

/**
 * Seconds the whole of `target` would take here, at the FLOP rate the measurement implies. Undefined when the
 * measurement is not a positive, finite rate.
 */
export function estimateTrainSeconds(target: ScaleConfig, measured: MeasuredThroughput): number | undefined {
  if (!(Number.isFinite(measured.samplesPerSecond) && measured.samplesPerSecond > 0)) return undefined;
  const flopsPerSecond = measured.samplesPerSecond * trainFlopsPerSample(measured.scale);
  return (runPlan(target).samplesSeen * trainFlopsPerSample(target)) / flopsPerSecond;
}
