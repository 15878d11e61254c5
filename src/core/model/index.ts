/**
 * CLIP (open_clip's architecture and initialisation) on the WebGPU engine and its float64 reference, model
 * configs, and safetensors checkpoints with open_clip's state-dict names.
 */
export { ClipModel, clipBatch, clipParamSpecs, INIT_LOGIT_SCALE, MAX_LOGIT_SCALE, type ClipBatch, type ClipOutputs, type StateDict } from './clip.ts';
export { CLIP_CONFIGS, clipConfig, gridTokens, type ClipConfig, type TextConfig, type VisionConfig } from './configs.ts';
export { clipOps, type ClipOps } from './clip-ops.ts';
export { checkpointBytes, readCheckpoint } from './checkpoint.ts';
export { readSafetensors, writeSafetensors, f32Tensor, toFloat32, MAX_HEADER_BYTES, type SafeDType, type SafeTensor, type SafeTensorsFile } from './safetensors.ts';
export * as layers from './layers.ts';
