// tfjs-core with every gradient registered, plus the WebGPU backend class, as one module: the benchmark's peer.
// (The packages' Node entry points are CommonJS bundles without gradients; the ESM sources are bundled instead.)
export * as tf from '@tensorflow/tfjs-core';
export { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
