/**
 * A WebGPU device in Node through Dawn (the `webgpu` package), with the backend chosen by name:
 *  - 'vulkan': a GPU server (NVIDIA/AMD driver ICD; set VK_DRIVER_FILES when the ICD is not where the loader looks);
 *  - 'swiftshader': Chromium's SwiftShader Vulkan ICD on a CPU-only machine (core features, subgroups, slow);
 *  - 'opengles': Dawn's GL ES backend over Mesa llvmpipe in compatibility mode (no subgroups/f16, 3–5× faster on CPU);
 *  - 'auto': a hardware Vulkan adapter if there is one, else opengles, else swiftshader.
 * See ../../../shared/research/webgpu.md for what was measured on each.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { NoAdapterError, requestGpu, type GpuHandle } from '../../src/core/gpu/device.ts';

export type DawnBackend = 'vulkan' | 'swiftshader' | 'opengles' | 'auto';
export const DAWN_BACKENDS: readonly DawnBackend[] = ['vulkan', 'swiftshader', 'opengles', 'auto'];

export interface DawnOptions {
  backend?: DawnBackend;
  /** Called when the device is lost other than by destroy(); default: print it to stderr. */
  onLost?: (info: GPUDeviceLostInfo) => void;
}

export interface DawnGpu extends GpuHandle {
  backend: Exclude<DawnBackend, 'auto'>;
  /** The `GPU` object (navigator.gpu equivalent), e.g. for tfjs-backend-webgpu in the same process. */
  gpu: GPU;
  /** Destroys the device so that the process can exit. */
  close(): void;
}

const SWIFTSHADER_ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json'];

let globalsInstalled = false;
function installGlobals(): void {
  if (globalsInstalled) return;
  // GPUBufferUsage, GPUMapMode, GPUShaderStage … as in a browser, for code written against the browser API.
  Object.assign(globalThis, globals);
  // Mesa's EGL prints "XDG_RUNTIME_DIR is invalid or not set" to stderr on headless machines (CI, servers),
  // which reads like an error to users; a private runtime dir silences it and changes nothing else.
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'dcw-xdg-'));
  globalsInstalled = true;
}

/** Opens a Dawn device on the chosen backend; throws NoAdapterError with a one-line hint when none exists. */
export async function openDawn(options: DawnOptions = {}): Promise<DawnGpu> {
  const backend = options.backend ?? 'auto';
  if (!DAWN_BACKENDS.includes(backend)) throw new Error(`unknown GPU backend '${backend}' (one of ${DAWN_BACKENDS.join(', ')})`);
  installGlobals();
  const onLost = options.onLost ?? ((info: GPUDeviceLostInfo) => console.error(`GPU device lost (${info.reason}): ${info.message}`));
  if (backend !== 'auto') return open(backend, onLost);
  const failures: string[] = [];
  try {
    const vulkan = await open('vulkan', onLost);
    if (!vulkan.info.isCpu) return vulkan;
    vulkan.close();
    failures.push('vulkan: only a software adapter');
  } catch (err) {
    failures.push(`vulkan: ${(err as Error).message}`);
  }
  for (const fallback of ['opengles', 'swiftshader'] as const) {
    try {
      return await open(fallback, onLost);
    } catch (err) {
      failures.push(`${fallback}: ${(err as Error).message}`);
    }
  }
  throw new NoAdapterError(`no WebGPU adapter on any backend (${failures.join('; ')})`);
}

async function open(backend: Exclude<DawnBackend, 'auto'>, onLost: (info: GPUDeviceLostInfo) => void): Promise<DawnGpu> {
  let flags: string[];
  let featureLevel: 'core' | 'compatibility' = 'core';
  let hint: string;
  let savedIcd: string | undefined;
  switch (backend) {
    case 'vulkan':
      // allow_unsafe_apis exposes chromium-experimental-subgroup-matrix where the driver has it. Timestamp
      // quantization (a browser's defence against timing attacks) would round kernel times to ~65 µs.
      flags = ['backend=vulkan', 'enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=timestamp_quantization'];
      hint = 'needs a Vulkan driver and libvulkan1 (+ glvnd); point VK_DRIVER_FILES at its ICD json';
      break;
    case 'swiftshader': {
      savedIcd = process.env.VK_ICD_FILENAMES;
      const icd = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES ?? SWIFTSHADER_ICDS.find((p) => existsSync(p));
      if (!icd) throw new NoAdapterError(`no SwiftShader ICD: install Debian's chromium (it ships ${SWIFTSHADER_ICDS[0]}) or set VK_ICD_FILENAMES`);
      // The Vulkan loader reads this when Dawn creates its instance, i.e. inside create()/requestAdapter().
      process.env.VK_ICD_FILENAMES = icd;
      flags = ['backend=vulkan', 'enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=timestamp_quantization'];
      hint = `SwiftShader ICD ${icd}`;
      break;
    }
    case 'opengles':
      // Without a display, EGL must be told to use the surfaceless platform.
      process.env.EGL_PLATFORM ??= 'surfaceless';
      flags = ['backend=opengles'];
      featureLevel = 'compatibility';
      hint = 'needs libEGL + Mesa (libegl-mesa0, libgles2) and EGL_PLATFORM=surfaceless';
      break;
  }
  const gpu = create(flags);
  let handle: GpuHandle;
  try {
    handle = await requestGpu(gpu, { featureLevel, onLost, where: `Dawn backend ${backend}: ${hint}` });
  } catch (err) {
    if (err instanceof NoAdapterError) throw err;
    throw new NoAdapterError(`Dawn backend ${backend} failed: ${(err as Error).message}`);
  } finally {
    // Only this instance should see the SwiftShader ICD; a later 'vulkan' open must find the real driver.
    if (backend === 'swiftshader') restoreEnv('VK_ICD_FILENAMES', savedIcd);
  }
  return { ...handle, backend, gpu, close: () => handle.device.destroy() };
}

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
