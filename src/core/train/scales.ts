/**
 * The fixed training recipes ("scales") as data.
 *
 * Official scales: DataComp's `scale_configs.py` (debug, small, medium, large, xlarge) plus the open_clip
 * 2.16.1 defaults that `train.py` leaves in force (facts §5): AdamW β1 0.9, β2 0.98 (0.95 for xlarge via
 * `--beta2`), eps 1e-6, weight decay 0.2 on the parameters `weightDecayApplies` selects, warmup then cosine
 * to 0 (schedule.ts), `--epochs` = 5 checkpoints of `train_num_samples / 5` samples each, resampled shards.
 * Nothing here may be changed by a user: a run names a scale, never its numbers.
 *
 * Precision: DataComp trains with `--precision amp` (fp16 autocast + GradScaler; `amp_bfloat16` for xlarge in
 * slurm_train.sh). The workbench's WebGPU engine trains in fp32 throughout: no loss scaling, no fp16/bf16
 * rounding of activations. Expect scores close to, not bit-identical with, an open_clip run of the same recipe.
 *
 * Workbench scales (`cpu-tiny`, `gpu-small`) are equally fixed but NOT comparable with the leaderboard: other
 * models, image sizes and sample counts, sized for the embedded pool. Their models are defined on the model side
 * (src/core/model/configs.ts; open_clip conventions: heads = width / 64, MLP ×4, GELU, the real CLIP BPE vocabulary,
 * but a text context of 32 tokens instead of 77 — see configs.ts and docs/training.md):
 * - `wb-tiny` (cpu-tiny): image 32, patch 8 (16 tokens + class), vision width 64 × 2 layers; text width 64 × 2
 *   layers; embed 64. 5,120 samples train and the embedded suite evaluates on 2 CPU cores in minutes.
 * - `wb-small` (gpu-small): image 64, patch 8 (64 tokens, as the pilot's 32 px / patch 4), vision width 192 × 6
 *   layers; text width 192 × 6 layers; embed 128 — the pilot's model (research/pilot-data-effect.md) at 64 px.
 */

export type OfficialScaleName = 'debug' | 'small' | 'medium' | 'large' | 'xlarge';
export type WorkbenchScaleName = 'cpu-tiny' | 'gpu-small';
/** Recipes of the scoring model (`dcw pool score`, src/core/pipeline/score-pool.ts), not of a benchmark run. */
export type ScorerScaleName = 'scorer-cpu' | 'scorer-gpu';
export type ScaleName = OfficialScaleName | WorkbenchScaleName | ScorerScaleName;

export interface ShuffleBuffer {
  /** Most samples held (webdataset `bufsize`). */
  size: number;
  /** Samples read before the first one is handed out (webdataset `initial`). */
  initial: number;
}

export interface ScaleConfig {
  name: ScaleName;
  /** 'official': DataComp's recipe; 'workbench': ours, not comparable with the leaderboard. */
  kind: 'official' | 'workbench';
  /** Model config name (open_clip's for official scales; src/core/model/configs.ts for ours). */
  model: string;
  /** Global batch size (`batch_size` in scale_configs.py). */
  batchSize: number;
  learningRate: number;
  /** Samples seen over the whole run (`train_num_samples` in scale_configs.py). */
  trainNumSamples: number;
  /** Warmup steps (linear from lr/W to lr). */
  warmup: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Checkpoints = open_clip epochs (`--epochs num_checkpoints`). */
  numCheckpoints: number;
  /** Image side the model sees (the model config's image size). */
  imageSize: number;
  /** Sample shuffle buffer of the loader (open_clip: 5000 / 1000). */
  sampleShuffle: ShuffleBuffer;
  /** What the original recipe trains in; the workbench always trains in fp32 (see the file comment). */
  referencePrecision: 'amp' | 'amp_bfloat16' | 'fp32';
  /** One line for listings. */
  note: string;
}

/** open_clip 2.16.1 `training/params.py` defaults for ViT models. */
export const OPEN_CLIP_VIT_DEFAULTS = Object.freeze({ beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2 });
/** open_clip `training/data.py`: `_SAMPLE_SHUFFLE_SIZE`, `_SAMPLE_SHUFFLE_INITIAL`. */
export const OPEN_CLIP_SAMPLE_SHUFFLE: Readonly<ShuffleBuffer> = Object.freeze({ size: 5000, initial: 1000 });
/** DataComp `train.py --num_checkpoints` default. */
export const DEFAULT_NUM_CHECKPOINTS = 5;

function official(name: OfficialScaleName, model: string, batchSize: number, learningRate: number, trainNumSamples: number, warmup: number, beta2: number | null, note: string): ScaleConfig {
  return Object.freeze({
    name,
    kind: 'official',
    model,
    batchSize,
    learningRate,
    trainNumSamples,
    warmup,
    beta1: OPEN_CLIP_VIT_DEFAULTS.beta1,
    // scale_configs.py: beta2 None → open_clip's default
    beta2: beta2 ?? OPEN_CLIP_VIT_DEFAULTS.beta2,
    eps: OPEN_CLIP_VIT_DEFAULTS.eps,
    weightDecay: OPEN_CLIP_VIT_DEFAULTS.weightDecay,
    numCheckpoints: DEFAULT_NUM_CHECKPOINTS,
    imageSize: 224,
    sampleShuffle: OPEN_CLIP_SAMPLE_SHUFFLE,
    referencePrecision: name === 'xlarge' ? 'amp_bfloat16' : 'amp',
    note,
  });
}

export const SCALES: Readonly<Record<ScaleName, ScaleConfig>> = Object.freeze({
  debug: official('debug', 'ViT-B-32', 1024, 1e-4, 128_000, 500, null, 'DataComp debug scale (not a competition scale)'),
  small: official('small', 'ViT-B-32', 4096, 5e-4, 12_800_000, 500, null, 'DataComp small: 12.8M samples seen'),
  medium: official('medium', 'ViT-B-32', 4096, 5e-4, 128_000_000, 500, null, 'DataComp medium: 128M samples seen'),
  large: official('large', 'ViT-B-16', 8192, 5e-4, 1_280_000_000, 500, null, 'DataComp large: 1.28B samples seen'),
  xlarge: official('xlarge', 'ViT-L-14', 90112, 1e-3, 12_800_000_000, 10000, 0.95, 'DataComp xlarge: 12.8B samples seen'),
  // The whole loop (train + evaluate) on a 2-core CPU within ~10 minutes: tests and first contact.
  'cpu-tiny': Object.freeze({
    name: 'cpu-tiny',
    kind: 'workbench',
    model: 'wb-tiny',
    batchSize: 128,
    learningRate: 1e-3,
    trainNumSamples: 5_120,
    warmup: 8,
    ...OPEN_CLIP_VIT_DEFAULTS,
    numCheckpoints: DEFAULT_NUM_CHECKPOINTS,
    imageSize: 32,
    // 1000/200: the pool a test trains on holds a few hundred to a few thousand samples; a 5000-sample buffer
    // would hold several copies of each and make the first batch wait for 1000 reads.
    sampleShuffle: Object.freeze({ size: 1000, initial: 200 }),
    referencePrecision: 'fp32',
    note: 'workbench cpu-tiny: 32 px, 5,120 samples seen, minutes on a CPU; not comparable with the leaderboard',
  }),
  // Minutes on a laptop GPU; big enough that the choice of data moves the embedded suite beyond seed noise
  // (research/pilot-data-effect.md: 300k samples at 32 px moved the average by ~1 point with ~1 point of noise).
  'gpu-small': Object.freeze({
    name: 'gpu-small',
    kind: 'workbench',
    model: 'wb-small',
    batchSize: 512,
    learningRate: 1e-3,
    trainNumSamples: 1_280_000,
    warmup: 250,
    ...OPEN_CLIP_VIT_DEFAULTS,
    numCheckpoints: DEFAULT_NUM_CHECKPOINTS,
    imageSize: 64,
    sampleShuffle: OPEN_CLIP_SAMPLE_SHUFFLE,
    referencePrecision: 'fp32',
    note: 'workbench gpu-small: 64 px, 1.28M samples seen, minutes on a GPU; not comparable with the leaderboard',
  }),
  // The scoring model of `dcw pool score` (a Data Filtering Network: a CLIP trained on a trusted subset whose
  // image–text cosine scores every pair). One epoch: only the final weights are kept. scorer-cpu is cpu-tiny's
  // model and optimiser for 4× its samples (about one pass over the embedded pool's basic_filter subset, a few
  // minutes on 2 CPU cores); scorer-gpu is gpu-small's model for half its samples.
  'scorer-cpu': Object.freeze({
    name: 'scorer-cpu',
    kind: 'workbench',
    model: 'wb-tiny',
    batchSize: 128,
    learningRate: 1e-3,
    trainNumSamples: 20_480,
    warmup: 16,
    ...OPEN_CLIP_VIT_DEFAULTS,
    numCheckpoints: 1,
    imageSize: 32,
    sampleShuffle: Object.freeze({ size: 2000, initial: 500 }),
    referencePrecision: 'fp32',
    note: 'scoring model on a CPU: wb-tiny, 32 px, 20,480 samples seen of the trusted subset (dcw pool score)',
  }),
  'scorer-gpu': Object.freeze({
    name: 'scorer-gpu',
    kind: 'workbench',
    model: 'wb-small',
    batchSize: 512,
    learningRate: 1e-3,
    trainNumSamples: 640_000,
    warmup: 125,
    ...OPEN_CLIP_VIT_DEFAULTS,
    numCheckpoints: 1,
    imageSize: 64,
    sampleShuffle: OPEN_CLIP_SAMPLE_SHUFFLE,
    referencePrecision: 'fp32',
    note: 'scoring model on a GPU: wb-small, 64 px, 640k samples seen of the trusted subset (dcw pool score)',
  }),
});

export const OFFICIAL_SCALES: readonly OfficialScaleName[] = ['debug', 'small', 'medium', 'large', 'xlarge'];
export const WORKBENCH_SCALES: readonly WorkbenchScaleName[] = ['cpu-tiny', 'gpu-small'];
export const SCORER_SCALES: readonly ScorerScaleName[] = ['scorer-cpu', 'scorer-gpu'];

export function isScaleName(name: string): name is ScaleName {
  return Object.prototype.hasOwnProperty.call(SCALES, name);
}

/** The scale's recipe; unknown names are an error listing the known ones (as scale_configs.get_scale_config). */
export function scaleConfig(name: string): ScaleConfig {
  if (!isScaleName(name)) throw new RangeError(`unknown scale '${name}' (one of ${Object.keys(SCALES).join(', ')})`);
  return SCALES[name];
}

/**
 * How a run is cut into epochs and steps, as open_clip's `get_wds_dataset` does for one worker:
 * DataComp passes `--train-num-samples seen // num_checkpoints` and `--epochs num_checkpoints`;
 * each epoch is `ceil(samples / batch)` batches (open_clip then rounds that up to a multiple of the data-loader
 * workers × world size; the workbench has one loader, so no rounding). Total steps = epochs × that.
 */
export interface RunPlan {
  samplesPerEpoch: number;
  stepsPerEpoch: number;
  epochs: number;
  totalSteps: number;
  /** Samples actually seen: totalSteps × batchSize (≥ trainNumSamples, as in open_clip). */
  samplesSeen: number;
}

export function runPlan(scale: Pick<ScaleConfig, 'trainNumSamples' | 'batchSize' | 'numCheckpoints'>, numCheckpoints = scale.numCheckpoints): RunPlan {
  if (!(Number.isInteger(numCheckpoints) && numCheckpoints >= 1)) throw new RangeError(`num_checkpoints ${numCheckpoints} is not a positive integer`);
  const samplesPerEpoch = Math.floor(scale.trainNumSamples / numCheckpoints);
  const stepsPerEpoch = Math.ceil(samplesPerEpoch / scale.batchSize);
  const totalSteps = stepsPerEpoch * numCheckpoints;
  return { samplesPerEpoch, stepsPerEpoch, epochs: numCheckpoints, totalSteps, samplesSeen: totalSteps * scale.batchSize };
}

/**
 * open_clip's weight-decay rule (`training/main.py`): parameters with fewer than 2 dimensions, or whose name
 * contains "bn", "ln", "bias" or "logit_scale", get no weight decay; all others get `--wd`.
 * (Substring tests, as open_clip writes them: a name like "...ln_1.weight" is excluded, so is "bias" anywhere.)
 */
export function weightDecayApplies(name: string, shape: readonly number[]): boolean {
  const exclude = shape.length < 2 || name.includes('bn') || name.includes('ln') || name.includes('bias') || name.includes('logit_scale');
  return !exclude;
}

/** Splits named parameters into open_clip's two AdamW groups: [no decay, decay]. */
export function weightDecayGroups<T extends { name: string; shape: readonly number[] }>(params: readonly T[], weightDecay: number): { weightDecay: number; params: T[] }[] {
  return [
    { weightDecay: 0, params: params.filter((p) => !weightDecayApplies(p.name, p.shape)) },
    { weightDecay, params: params.filter((p) => weightDecayApplies(p.name, p.shape)) },
  ];
}
