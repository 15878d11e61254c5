/**
 * CLIP model configurations as data, in open_clip's model_configs/*.json terms (ViT-B-32, ViT-B-16, ViT-L-14:
 * the DataComp small/medium, large and xlarge models), plus small workbench configs for CPU tests and
 * in-browser training. Vision heads = width / 64 (open_clip's head_width default); MLP ratio 4; nn.GELU.
 */
export interface VisionConfig {
  imageSize: number;
  patchSize: number;
  width: number;
  layers: number;
  heads: number;
}

export interface TextConfig {
  contextLength: number;
  vocabSize: number;
  width: number;
  heads: number;
  layers: number;
}

export interface ClipConfig {
  name: string;
  embedDim: number;
  vision: VisionConfig;
  text: TextConfig;
}

const CLIP_TEXT = { contextLength: 77, vocabSize: 49408 };

export const CLIP_CONFIGS: Readonly<Record<string, ClipConfig>> = {
  'ViT-B-32': {
    name: 'ViT-B-32',
    embedDim: 512,
    vision: { imageSize: 224, patchSize: 32, width: 768, layers: 12, heads: 12 },
    text: { ...CLIP_TEXT, width: 512, heads: 8, layers: 12 },
  },
  'ViT-B-16': {
    name: 'ViT-B-16',
    embedDim: 512,
    vision: { imageSize: 224, patchSize: 16, width: 768, layers: 12, heads: 12 },
    text: { ...CLIP_TEXT, width: 512, heads: 8, layers: 12 },
  },
  'ViT-L-14': {
    name: 'ViT-L-14',
    embedDim: 768,
    vision: { imageSize: 224, patchSize: 14, width: 1024, layers: 24, heads: 16 },
    text: { ...CLIP_TEXT, width: 768, heads: 12, layers: 12 },
  },
  // Workbench scales (cpu-tiny, gpu-small): the real tokenizer's vocabulary, small towers, and a text context of
  // 32 instead of 77. The embedded pool's captions have a median of 7 tokens (sot/eot included) and 98% fit in
  // 32; the text tower's cost is linear-to-quadratic in the context, so 77 would make it 3× the cost of a
  // cpu-tiny step for padding. Longer captions are cut as open_clip cuts at 77 (eot kept). docs/training.md.
  'wb-tiny': {
    name: 'wb-tiny',
    embedDim: 64,
    vision: { imageSize: 32, patchSize: 8, width: 64, layers: 2, heads: 4 },
    text: { ...CLIP_TEXT, contextLength: 32, width: 64, heads: 4, layers: 2 },
  },
  // The pilot's model (research/pilot-data-effect.md) at 64 px: width 192 × 6 layers per tower, embed 128.
  'wb-small': {
    name: 'wb-small',
    embedDim: 128,
    vision: { imageSize: 64, patchSize: 8, width: 192, layers: 6, heads: 3 },
    text: { ...CLIP_TEXT, contextLength: 32, width: 192, heads: 3, layers: 6 },
  },
};

export function clipConfig(name: string): ClipConfig {
  const c = CLIP_CONFIGS[name];
  if (!c) throw new Error(`unknown CLIP model '${name}' (one of ${Object.keys(CLIP_CONFIGS).join(', ')})`);
  return c;
}

/** Number of patch tokens (without the class token). */
export function gridTokens(v: VisionConfig): number {
  return (Math.floor(v.imageSize / v.patchSize)) ** 2;
}
