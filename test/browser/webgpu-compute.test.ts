// WGSL compute on both CPU adapters Chromium offers here: SwiftShader (core) and Dawn's OpenGL ES backend
// over Mesa llvmpipe (compatibility). A matrix product is computed on the GPU and checked against JS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openBrowser, type AdapterKind } from '../helpers/browser.ts';

for (const adapter of ['core', 'compat'] as AdapterKind[]) {
  test(`a WGSL matrix product is read back and matches the CPU (${adapter} adapter)`, async () => {
    const session = await openBrowser({ adapter });
    try {
      const result = await session.page.evaluate(async (kind) => {
        const options = kind === 'compat' ? ({ featureLevel: 'compatibility' } as GPURequestAdapterOptions) : {};
        const adapter = await navigator.gpu.requestAdapter(options);
        if (!adapter) return { error: 'no adapter' };
        const device = await adapter.requestDevice();
        const [m, k, n] = [37, 29, 23]; // odd sizes on purpose
        const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
        const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.5));
        const mk = (data: Float32Array<ArrayBuffer>, usage: number) => {
          const buf = device.createBuffer({ size: data.byteLength, usage: usage | GPUBufferUsage.COPY_DST });
          device.queue.writeBuffer(buf, 0, data);
          return buf;
        };
        const aBuf = mk(a, GPUBufferUsage.STORAGE);
        const bBuf = mk(b, GPUBufferUsage.STORAGE);
        const cBuf = device.createBuffer({ size: m * n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
        const read = device.createBuffer({ size: m * n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        const code = `
          @group(0) @binding(0) var<storage, read> a: array<f32>;
          @group(0) @binding(1) var<storage, read> b: array<f32>;
          @group(0) @binding(2) var<storage, read_write> c: array<f32>;
          @compute @workgroup_size(8, 8)
          fn main(@builtin(global_invocation_id) id: vec3<u32>) {
            if (id.x >= ${n}u || id.y >= ${m}u) { return; }
            var acc = 0.0;
            for (var i = 0u; i < ${k}u; i++) { acc += a[id.y * ${k}u + i] * b[i * ${n}u + id.x]; }
            c[id.y * ${n}u + id.x] = acc;
          }`;
        const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
        const group = device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [aBuf, bBuf, cBuf].map((buffer, binding) => ({ binding, resource: { buffer } })),
        });
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(Math.ceil(n / 8), Math.ceil(m / 8));
        pass.end();
        enc.copyBufferToBuffer(cBuf, 0, read, 0, m * n * 4);
        device.queue.submit([enc.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const c = new Float32Array(read.getMappedRange().slice(0));
        let worst = 0;
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
          let ref = 0;
          for (let x = 0; x < k; x++) ref += a[i * k + x]! * b[x * n + j]!;
          worst = Math.max(worst, Math.abs(ref - c[i * n + j]!));
        }
        return { worst, vendor: adapter.info.vendor, description: adapter.info.description, features: [...adapter.features] };
      }, adapter);
      assert.ok(!('error' in result), JSON.stringify(result));
      assert.ok(result.worst! < 1e-4, `max abs error ${result.worst}`);
      if (adapter === 'compat') assert.ok(!result.features!.includes('subgroups'), 'the compatibility adapter should be the GL one');
    } finally {
      await session.close();
    }
  });
}
