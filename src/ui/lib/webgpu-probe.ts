/**
 * What WebGPU this browser offers, and whether it computes correctly: the page shows this first, because
 * everything heavy in the workbench (scoring, training, evaluation) runs on it.
 */
export interface WebGpuReport {
  ok: boolean;
  /** Why there is no usable adapter, and what the user can do. */
  problem?: string;
  adapter?: {
    vendor: string;
    architecture: string;
    description: string;
    isFallback: boolean;
    featureLevel: 'core' | 'compatibility';
    features: string[];
    maxBufferMiB: number;
    maxWorkgroupInvocations: number;
  };
  selfCheck?: { passed: boolean; detail: string };
}

const SELF_CHECK_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  if (i < arrayLength(&input)) { output[i] = input[i] * input[i] + 1.0; }
}`;

export async function probeWebGpu(): Promise<WebGpuReport> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    return { ok: false, problem: 'This browser has no WebGPU (navigator.gpu is missing). Use a current Chrome, Edge or Safari, or run heavy work on the dcw server.' };
  }
  // A core adapter first; the compatibility level is what software renderers (and older GPUs) offer.
  let featureLevel: 'core' | 'compatibility' = 'core';
  let adapter = await gpu.requestAdapter();
  if (!adapter) {
    adapter = await gpu.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions);
    featureLevel = 'compatibility';
  }
  if (!adapter) {
    return { ok: false, problem: 'WebGPU is present but no adapter was found (GPU blocklisted or disabled). Enable WebGPU in the browser flags, try another browser, or use the dcw server.' };
  }
  const info = adapter.info;
  const report: WebGpuReport = {
    ok: true,
    adapter: {
      vendor: info.vendor || 'unknown',
      architecture: info.architecture || 'unknown',
      description: info.description || '',
      isFallback: Boolean((info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter),
      featureLevel,
      features: [...adapter.features].sort(),
      maxBufferMiB: Math.round(adapter.limits.maxStorageBufferBindingSize / 2 ** 20),
      maxWorkgroupInvocations: adapter.limits.maxComputeInvocationsPerWorkgroup,
    },
  };
  report.selfCheck = await selfCheck(adapter);
  report.ok = report.selfCheck.passed;
  return report;
}

/** Runs one compute shader (y = x² + 1) and checks every value read back. */
async function selfCheck(adapter: GPUAdapter): Promise<{ passed: boolean; detail: string }> {
  const device = await adapter.requestDevice();
  try {
    const n = 1000;
    const input = Float32Array.from({ length: n }, (_, i) => (i - 500) / 7);
    const inBuf = device.createBuffer({ size: input.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const outBuf = device.createBuffer({ size: input.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const readBuf = device.createBuffer({ size: input.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(inBuf, 0, input);
    const pipeline = device.createComputePipeline({
      layout: 'auto',
      compute: { module: device.createShaderModule({ code: SELF_CHECK_WGSL }), entryPoint: 'main' },
    });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: inBuf } }, { binding: 1, resource: { buffer: outBuf } }],
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.ceil(n / 64));
    pass.end();
    encoder.copyBufferToBuffer(outBuf, 0, readBuf, 0, input.byteLength);
    device.queue.submit([encoder.finish()]);
    await readBuf.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(readBuf.getMappedRange().slice(0));
    readBuf.unmap();
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(out[i]! - (input[i]! * input[i]! + 1)));
    const passed = worst <= 1e-3;
    return { passed, detail: passed ? `${n} values computed on the GPU match (max error ${worst.toExponential(1)})` : `GPU results are wrong (max error ${worst})` };
  } catch (err) {
    return { passed: false, detail: `compute shader failed: ${(err as Error).message}` };
  } finally {
    device.destroy();
  }
}
