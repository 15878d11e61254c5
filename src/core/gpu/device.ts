/**
 * Device acquisition that works the same in a browser tab, a browser worker and Node: the caller hands in a
 * `GPU` object (navigator.gpu in the browser, Dawn's `create(...)` in Node via server/gpu/dawn.ts), and gets
 * back a device opened with the adapter's own limits (a compatibility-mode device otherwise allows only 128
 * invocations per workgroup) and every feature the engine can use, plus a description of what it got.
 *
 * Device loss is never swallowed: `lost` settles with the reason, `onLost` is called for any loss that the
 * program did not cause itself with destroy(), and the Engine refuses further work once it happened.
 */

/** Features the engine enables whenever the adapter offers them. */
export const USEFUL_FEATURES = [
  'shader-f16',
  'subgroups',
  'timestamp-query',
  'chromium-experimental-subgroup-matrix',
] as const;

/** The limit names of the WebGPU spec; only those the adapter reports are requested. */
const LIMIT_NAMES = [
  'maxBindGroups', 'maxBindingsPerBindGroup', 'maxBufferSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension', 'maxDynamicStorageBuffersPerPipelineLayout', 'maxDynamicUniformBuffersPerPipelineLayout',
  'maxStorageBufferBindingSize', 'maxStorageBuffersPerShaderStage', 'maxUniformBufferBindingSize', 'maxUniformBuffersPerShaderStage',
  'minStorageBufferOffsetAlignment', 'minUniformBufferOffsetAlignment',
] as const;

export type LimitName = (typeof LIMIT_NAMES)[number];

export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  featureLevel: 'core' | 'compatibility';
  isFallbackAdapter: boolean;
  /** A software rasteriser (SwiftShader, llvmpipe/lavapipe): kernels without barriers win there. */
  isCpu: boolean;
  features: string[];
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  /** Subgroup-matrix shapes the adapter offers (chromium-experimental-subgroup-matrix), empty when none. */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /** WGSL language features of the implementation (navigator.gpu.wgslLanguageFeatures), e.g. 'subgroup_id'. */
  wgslFeatures: string[];
  limits: Record<LimitName, number>;
}

export interface GpuHandle {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: GpuInfo;
  /** Settles once, when the device is lost (also after destroy(), with reason 'destroyed'). */
  lost: Promise<GPUDeviceLostInfo>;
}

export interface RequestGpuOptions {
  featureLevel?: 'core' | 'compatibility';
  powerPreference?: GPUPowerPreference;
  /** Called when the device is lost for any reason other than our own destroy(). */
  onLost?: (info: GPUDeviceLostInfo) => void;
  /** Name of the environment, used in the error message when there is no adapter. */
  where?: string;
}

export class NoAdapterError extends Error {
  override name = 'NoAdapterError';
}

/** Opens a device on `gpu` with the adapter's limits and the engine's useful features. */
export async function requestGpu(gpu: GPU, options: RequestGpuOptions = {}): Promise<GpuHandle> {
  const featureLevel = options.featureLevel ?? 'core';
  const adapterOptions: GPURequestAdapterOptions & { featureLevel?: string } = { featureLevel };
  if (options.powerPreference) adapterOptions.powerPreference = options.powerPreference;
  const adapter = await gpu.requestAdapter(adapterOptions);
  if (!adapter) {
    throw new NoAdapterError(
      `no WebGPU adapter (featureLevel ${featureLevel}${options.where ? `, ${options.where}` : ''})`,
    );
  }
  const requiredFeatures = USEFUL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const limits = {} as Record<LimitName, number>;
  const requiredLimits: Record<string, number> = {};
  const adapterLimits = adapter.limits as unknown as Record<string, number | undefined>;
  for (const name of LIMIT_NAMES) {
    const value = adapterLimits[name];
    if (typeof value === 'number') {
      limits[name] = value;
      requiredLimits[name] = value;
    }
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  let destroyedByUs = false;
  const destroy = device.destroy.bind(device);
  device.destroy = () => {
    destroyedByUs = true;
    destroy();
  };
  const lost = device.lost.then((info) => {
    if (!destroyedByUs && info.reason !== 'destroyed') options.onLost?.(info);
    return info;
  });
  const wgslFeatures = [...((gpu as { wgslLanguageFeatures?: Iterable<string> }).wgslLanguageFeatures ?? [])].map(String).sort();
  return { adapter, device, info: describe(adapter, device, featureLevel, limits, wgslFeatures), lost };
}

function describe(adapter: GPUAdapter, device: GPUDevice, featureLevel: 'core' | 'compatibility', limits: Record<LimitName, number>, wgslFeatures: string[]): GpuInfo {
  const raw = (adapter.info ?? {}) as GPUAdapterInfo & {
    subgroupMatrixConfigs?: SubgroupMatrixConfig[];
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    isFallbackAdapter?: boolean;
  };
  const vendor = raw.vendor ?? '';
  const architecture = raw.architecture ?? '';
  const dev = raw.device ?? '';
  const description = raw.description ?? '';
  const isFallbackAdapter = Boolean(raw.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter);
  const text = `${vendor} ${architecture} ${dev} ${description}`.toLowerCase();
  const isCpu = isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic/.test(text) ||
    // Compatibility mode over Mesa on a machine without a GPU masks the vendor; a GPU would say who it is.
    (featureLevel === 'compatibility' && vendor === '' && /mesa|llvm|^\s*$/.test(text));
  const features = [...device.features].map(String).sort();
  const configs = (raw.subgroupMatrixConfigs ?? []).map((c) => ({
    componentType: String(c.componentType), resultComponentType: String(c.resultComponentType), M: c.M, N: c.N, K: c.K,
  }));
  return {
    vendor, architecture, device: dev, description, featureLevel, isFallbackAdapter, isCpu, features,
    shaderF16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    timestampQuery: device.features.has('timestamp-query'),
    subgroupMatrixConfigs: configs,
    subgroupMinSize: raw.subgroupMinSize ?? 0,
    subgroupMaxSize: raw.subgroupMaxSize ?? 0,
    wgslFeatures,
    limits,
  };
}

/** One line for logs and benchmark tables. */
export function describeGpu(info: GpuInfo): string {
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' / ') || 'unnamed adapter';
  const extras = [info.featureLevel, info.isCpu ? 'cpu' : 'gpu', info.shaderF16 ? 'f16' : '', info.subgroups ? `subgroups ${info.subgroupMinSize}-${info.subgroupMaxSize}` : '']
    .filter(Boolean).join(', ');
  return `${name} (${extras})`;
}
