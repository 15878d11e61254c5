/** The GPU a training or run worker uses: the level asked for, else a core adapter, else a compatibility one. */
import { requestGpu } from '../src/core/gpu/device.ts';

export async function openWorkerGpu(level?: 'core' | 'compatibility') {
  if (!('gpu' in navigator)) throw new Error('this browser has no WebGPU (navigator.gpu) in workers');
  if (level) return requestGpu(navigator.gpu, { featureLevel: level, where: 'web worker' });
  try {
    return await requestGpu(navigator.gpu, { featureLevel: 'core', where: 'web worker' });
  } catch {
    return requestGpu(navigator.gpu, { featureLevel: 'compatibility', where: 'web worker' });
  }
}
