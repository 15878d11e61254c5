/**
 * The engine: tensors in GPU storage buffers, a buffer pool, a pipeline cache and batched command
 * submission. Kernels are recorded into one command encoder (one compute pass while only dispatches
 * follow each other) and submitted on flush(), and every `maxDispatchesPerSubmit` dispatches: a training
 * step records every dispatch of forward, backward and optimizer with no readback inside it, and the GPU
 * starts on the first chunk while the host still records the rest. Reading a tensor (read()) and settled()
 * are the only things that wait for the GPU.
 *
 * Ordering: dispatches run in recording order, and storage written by one dispatch is visible to the
 * next (each dispatch is its own usage scope), so a buffer released to the pool may be reused by a later
 * dispatch of the same batch. The one hazard, queue.writeBuffer overtaking recorded work, is avoided by
 * flushing before an upload when work is pending.
 */
import type { GpuHandle, GpuInfo } from './device.ts';

export type DType = 'f32' | 'f16' | 'u32' | 'i32';
const BYTES: Record<DType, number> = { f32: 4, f16: 2, u32: 4, i32: 4 };

export class GpuError extends Error {
  override name = 'GpuError';
}

export class Tensor {
  readonly size: number;
  /** Bytes the data occupies (the buffer may be larger: pool size classes). */
  readonly byteLength: number;
  private released = false;

  constructor(
    readonly engine: Engine,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    this.byteLength = this.size * BYTES[dtype];
  }

  get disposed(): boolean {
    return this.released;
  }

  /** Returns the buffer to the pool; the tensor must not be used afterwards. */
  dispose(): void {
    if (this.released) return;
    this.released = true;
    this.engine.releaseBuffer(this.buffer);
  }

  /** Same storage, another shape of the same size (no copy). */
  view(shape: readonly number[]): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== this.size) throw new Error(`view ${JSON.stringify(shape)} does not match size ${this.size}`);
    return new TensorView(this, shape);
  }

  read(): Promise<Float32Array | Uint32Array | Int32Array> {
    return this.engine.read(this);
  }
}

/** A reshaped alias: disposing it does nothing, the owner keeps the storage. */
class TensorView extends Tensor {
  constructor(readonly owner: Tensor, shape: readonly number[]) {
    super(owner.engine, owner.buffer, shape, owner.dtype);
  }
  override get disposed(): boolean {
    return this.owner.disposed;
  }
  override dispose(): void {}
}

export type ParamType = 'u32' | 'i32' | 'f32';
/** Layout of a kernel's uniform block: names and scalar types, in order. */
export type ParamLayout = readonly (readonly [string, ParamType])[];

/** WGSL for the uniform struct of a layout (all 4-byte scalars, so offsets are 4·index). */
export function paramStruct(layout: ParamLayout): string {
  if (!layout.length) return '';
  return `struct Params {\n${layout.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}\n`;
}

export interface Kernel {
  /** Unique name of this specialisation (also the pipeline-cache key). */
  key: string;
  /** Full WGSL; storage buffers at bindings 0..n-1 in call order, the Params uniform (if any) at binding n. */
  code: () => string;
  params?: ParamLayout;
}

export interface EngineStats {
  dispatches: number;
  /** Bind groups created; with the cache, far fewer than dispatches once a step repeats. */
  bindGroupsCreated: number;
  submits: number;
  pipelines: number;
  buffersCreated: number;
  bytesAllocated: number;
  bytesPooled: number;
}

const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x4 /* COPY_SRC */ | 0x8; /* COPY_DST */
const UNIFORM_CHUNK = 65536;
/** Engine.maxDispatchesPerSubmit's default (before the overlap of recording and GPU work: 2048, one per step). */
export const DEFAULT_DISPATCHES_PER_SUBMIT = 128;
const MAX_CACHED_BIND_GROUPS = 8192;
/** Queries per profiling query set (WebGPU's largest). */
const PROFILE_SET = 4096;

interface CompiledKernel {
  pipeline: GPUComputePipeline;
  /** The explicit layout (uniform at a dynamic offset); undefined for an 'auto' layout. */
  layout: GPUBindGroupLayout | undefined;
  id: number;
}

interface UniformChunk {
  buffer: GPUBuffer;
  data: Uint8Array;
  u32: Uint32Array;
  i32: Int32Array;
  f32: Float32Array;
}

type BindingKind = 'read' | 'read_write' | 'uniform';

/**
 * Group-0 bindings of a WGSL module in binding order, or undefined when they are not the engine's convention
 * (storage buffers at 0..n−1, at most one uniform, last, nothing else in group 0).
 */
export function bindingKinds(code: string): BindingKind[] | undefined {
  const found = new Map<number, BindingKind>();
  for (const m of code.matchAll(/@group\(\s*(\d+)\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*<\s*(storage|uniform)\s*(?:,\s*(read_write|read)\s*)?>/g)) {
    if (m[1] !== '0') return undefined;
    const kind: BindingKind = m[3] === 'uniform' ? 'uniform' : m[4] === 'read_write' ? 'read_write' : 'read';
    found.set(Number(m[2]), kind);
  }
  const declared = (code.match(/@binding\(/g) ?? []).length;
  if (declared !== found.size) return undefined;
  const kinds: BindingKind[] = [];
  for (let i = 0; i < found.size; i++) {
    const k = found.get(i);
    if (!k) return undefined;
    kinds.push(k);
  }
  if (kinds.slice(0, -1).includes('uniform')) return undefined;
  return kinds;
}

function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 65536) return b;
  const step = 2 ** Math.floor(Math.log2(b)) / 4;
  return Math.ceil(b / step) * step;
}

export class Engine {
  readonly device: GPUDevice;
  readonly info: GpuInfo;
  readonly stats: EngineStats = { dispatches: 0, bindGroupsCreated: 0, submits: 0, pipelines: 0, buffersCreated: 0, bytesAllocated: 0, bytesPooled: 0 };
  /** Set once the device is lost; every later call throws it. */
  lostReason: string | undefined;
  private errors: string[] = [];
  private pool = new Map<number, GPUBuffer[]>();
  private bufferSize = new WeakMap<GPUBuffer, number>();
  private pipelines = new Map<string, CompiledKernel>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 0;
  private passPipeline: GPUComputePipeline | undefined;
  private encoder: GPUCommandEncoder | undefined;
  private pass: GPUComputePassEncoder | undefined;
  private pendingDispatches = 0;
  private uniformChunks: UniformChunk[] = [];
  private uniformChunk = 0;
  private uniformOffset = 0;
  private uniformAlign: number;
  private scopes: Tensor[][] = [];
  /**
   * Dispatches recorded before an automatic submit: the GPU works on a step's first chunks while the host records
   * the rest (ViT-B/32: ~1,400 dispatches, ~25 ms of recording, per step). A submit costs tens of µs.
   */
  maxDispatchesPerSubmit = DEFAULT_DISPATCHES_PER_SUBMIT;
  private timer: { querySet: GPUQuerySet; resolve: GPUBuffer; used: number; capacity: number; overflow: boolean } | undefined;
  private timing = false;
  /** Per-dispatch GPU timing (startProfile): one compute pass per dispatch, timestamps in 4096-query sets. */
  private profile: { sets: GPUQuerySet[]; used: number; kernels: string[] } | undefined;
  /** Sees every recorded dispatch (profilers that replay a step's kernels; undefined in normal use). */
  onDispatch: ((kernel: Kernel, buffers: readonly Tensor[], params: readonly number[], workgroups: readonly [number, number?, number?]) => void) | undefined;

  constructor(readonly handle: GpuHandle) {
    this.device = handle.device;
    this.info = handle.info;
    this.uniformAlign = Math.max(16, handle.info.limits.minUniformBufferOffsetAlignment ?? 256);
    handle.lost.then((info) => {
      this.lostReason = `GPU device lost (${info.reason}): ${info.message}`;
    });
    this.device.addEventListener('uncapturederror', (event) => {
      const message = (event as GPUUncapturedErrorEvent).error?.message ?? String(event);
      if (this.errors.length < 8) this.errors.push(message);
    });
  }

  // ---------- tensors ----------

  empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = Math.max(4, size * BYTES[dtype]);
    const maxBinding = this.info.limits.maxStorageBufferBindingSize;
    if (maxBinding && bytes > maxBinding) {
      throw new GpuError(`tensor ${JSON.stringify(shape)} needs ${bytes} bytes, over this device's binding limit of ${maxBinding}`);
    }
    const t = new Tensor(this, this.acquireBuffer(bytes), shape, dtype);
    this.scopes.at(-1)?.push(t);
    return t;
  }

  /** A tensor filled with zeros (cleared on the GPU, in recording order). */
  zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const t = this.empty(shape, dtype);
    this.clear(t);
    return t;
  }

  tensor(data: ArrayLike<number>, shape: readonly number[] = [data.length], dtype: DType = 'f32'): Tensor {
    const t = this.empty(shape, dtype);
    if (t.size !== data.length) throw new Error(`data of length ${data.length} does not fill shape ${JSON.stringify(shape)}`);
    this.write(t, data);
    return t;
  }

  /** Overwrites a tensor's contents from the CPU (ordered after everything recorded so far). */
  write(t: Tensor, data: ArrayLike<number>): void {
    this.check();
    let bytes: ArrayBufferView;
    if (t.dtype === 'f32') bytes = data instanceof Float32Array ? data : Float32Array.from(data);
    else if (t.dtype === 'u32') bytes = data instanceof Uint32Array ? data : Uint32Array.from(data);
    else if (t.dtype === 'i32') bytes = data instanceof Int32Array ? data : Int32Array.from(data);
    else bytes = f32ToF16(data);
    if (this.pendingDispatches > 0 || this.encoder) this.flush();
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(t.buffer, 0, padded.buffer, padded.byteOffset, padded.byteLength);
  }

  /** Overwrites a tensor's storage with raw bytes (e.g. uint8 pixels in a u32 tensor), ordered like write(). */
  writeBytes(t: Tensor, bytes: Uint8Array): void {
    this.check();
    if (bytes.byteLength > Math.ceil(t.byteLength / 4) * 4) throw new Error(`writeBytes: ${bytes.byteLength} bytes do not fit a tensor of ${t.byteLength}`);
    if (this.pendingDispatches > 0 || this.encoder) this.flush();
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(t.buffer, 0, padded.buffer, padded.byteOffset, padded.byteLength);
  }

  /** Takes a tensor out of the open scopes: it lives until disposed (caches made during a step). */
  detach(t: Tensor): Tensor {
    for (const scope of this.scopes) {
      const i = scope.indexOf(t);
      if (i >= 0) scope.splice(i, 1);
    }
    return t;
  }

  /**
   * A promise that resolves once the GPU has finished everything submitted so far (submits pending work first).
   * It rejects only on device loss; validation errors stay for the next dispatch or read to report.
   */
  settled(): Promise<void> {
    this.flush();
    return this.device.queue.onSubmittedWorkDone().then(() => {
      if (this.lostReason) throw new GpuError(this.lostReason);
    });
  }

  /** Zero-fills a tensor in recording order. */
  clear(t: Tensor): void {
    this.endPass();
    this.commandEncoder().clearBuffer(t.buffer, 0, Math.ceil(t.byteLength / 4) * 4);
  }

  copy(src: Tensor, dst: Tensor): void {
    if (src.byteLength !== dst.byteLength) throw new Error('copy between tensors of different sizes');
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src.buffer, 0, dst.buffer, 0, Math.ceil(src.byteLength / 4) * 4);
  }

  /** Submits pending work and reads a tensor back. */
  async read(t: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
    this.check();
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(4, bytes), usage: 0x1 /* MAP_READ */ | 0x8 /* COPY_DST */ });
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(t.buffer, 0, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(0x1 /* READ */);
    } catch (err) {
      this.check();
      throw err;
    }
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.check();
    if (t.dtype === 'f16') return f16ToF32(new Uint16Array(copy, 0, t.size));
    if (t.dtype === 'u32') return new Uint32Array(copy, 0, t.size);
    if (t.dtype === 'i32') return new Int32Array(copy, 0, t.size);
    return new Float32Array(copy, 0, t.size);
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    const data = await this.read(t);
    return data instanceof Float32Array ? data : Float32Array.from(data);
  }

  /** Waits until the GPU finished everything submitted; throws a recorded validation error or loss. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Tensors created until endScope() are disposed then, except those kept. */
  beginScope(): void {
    this.scopes.push([]);
  }

  endScope(keep: readonly Tensor[] = []): void {
    const created = this.scopes.pop();
    if (!created) throw new Error('endScope without beginScope');
    const kept = new Set(keep);
    for (const t of created) {
      if (kept.has(t)) this.scopes.at(-1)?.push(t);
      else t.dispose();
    }
  }

  // ---------- kernels ----------

  pipeline(kernel: Kernel): GPUComputePipeline {
    return this.compiled(kernel).pipeline;
  }

  /**
   * Pipeline with an explicit layout read off the kernel's WGSL (storage read / read_write, the Params uniform
   * with a dynamic offset), so that one bind group serves every call on the same buffers: the uniform block
   * moves by offset, not by a new bind group. Kernels whose bindings cannot be read fall back to 'auto'.
   */
  private compiled(kernel: Kernel): CompiledKernel {
    let c = this.pipelines.get(kernel.key);
    if (!c) {
      const code = kernel.code();
      const module = this.device.createShaderModule({ code, label: kernel.key });
      const kinds = bindingKinds(code);
      let layout: GPUBindGroupLayout | undefined;
      let pipeline: GPUComputePipeline;
      if (kinds) {
        layout = this.device.createBindGroupLayout({
          label: kernel.key,
          entries: kinds.map((kind, binding) => ({
            binding,
            visibility: 4 /* COMPUTE */,
            buffer: kind === 'uniform' ? { type: 'uniform', hasDynamicOffset: true } : { type: kind === 'read' ? 'read-only-storage' : 'storage' },
          })),
        });
        const pipelineLayout = this.device.createPipelineLayout({ bindGroupLayouts: [layout], label: kernel.key });
        pipeline = this.device.createComputePipeline({ layout: pipelineLayout, compute: { module, entryPoint: 'main' }, label: kernel.key });
      } else {
        pipeline = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: kernel.key });
      }
      c = { pipeline, layout, id: this.pipelines.size };
      this.pipelines.set(kernel.key, c);
      this.stats.pipelines++;
    }
    return c;
  }

  /** Records one dispatch. `params` follow kernel.params in order; f32 fields are written as floats. */
  dispatch(kernel: Kernel, buffers: readonly Tensor[], params: readonly number[], workgroups: readonly [number, number?, number?]): void {
    this.check();
    const c = this.compiled(kernel);
    const [x, y = 1, z = 1] = workgroups;
    const maxGroups = this.info.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new GpuError(`kernel ${kernel.key}: ${x}×${y}×${z} workgroups exceed ${maxGroups} per dimension`);
    }
    const layout = kernel.params ?? [];
    if (layout.length && params.length !== layout.length) throw new Error(`kernel ${kernel.key}: ${params.length} params for ${layout.length} fields`);
    let key = `${c.id}`;
    for (let binding = 0; binding < buffers.length; binding++) {
      const t = buffers[binding]!;
      if (t.disposed) throw new Error(`kernel ${kernel.key}: input ${binding} was disposed`);
      key += `,${this.bufferId(t.buffer)}:${t.byteLength}`;
    }
    if (x === 0 || y === 0 || z === 0) return;
    let uniform: { buffer: GPUBuffer; offset: number; size: number; chunk: number } | undefined;
    if (layout.length) {
      uniform = this.uniform(layout, params);
      key += `|${uniform.chunk}`;
    }
    let bindGroup: GPUBindGroup;
    let offsets: number[] | undefined;
    if (c.layout) {
      let cached = this.bindGroups.get(key);
      if (!cached) {
        const entries: GPUBindGroupEntry[] = buffers.map((t, binding) => ({ binding, resource: { buffer: t.buffer, offset: 0, size: Math.ceil(t.byteLength / 16) * 16 } }));
        if (uniform) entries.push({ binding: buffers.length, resource: { buffer: uniform.buffer, offset: 0, size: uniform.size } });
        cached = this.device.createBindGroup({ layout: c.layout, entries });
        // Bounded: buffers are pooled, so a training loop revisits the same few hundred combinations.
        if (this.bindGroups.size >= MAX_CACHED_BIND_GROUPS) this.bindGroups.clear();
        this.bindGroups.set(key, cached);
        this.stats.bindGroupsCreated++;
      }
      bindGroup = cached;
      if (uniform) offsets = [uniform.offset];
    } else {
      const entries: GPUBindGroupEntry[] = buffers.map((t, binding) => ({ binding, resource: { buffer: t.buffer, offset: 0, size: Math.ceil(t.byteLength / 16) * 16 } }));
      if (uniform) entries.push({ binding: buffers.length, resource: { buffer: uniform.buffer, offset: uniform.offset, size: uniform.size } });
      bindGroup = this.device.createBindGroup({ layout: c.pipeline.getBindGroupLayout(0), entries });
      this.stats.bindGroupsCreated++;
    }
    this.onDispatch?.(kernel, buffers, params, workgroups);
    const pass = this.computePass();
    if (this.passPipeline !== c.pipeline) {
      pass.setPipeline(c.pipeline);
      this.passPipeline = c.pipeline;
    }
    if (offsets) pass.setBindGroup(0, bindGroup, offsets);
    else pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
    if (this.profile) {
      this.profile.kernels.push(kernel.key);
      this.endPass();
    }
    if (++this.pendingDispatches >= this.maxDispatchesPerSubmit) this.flush();
  }

  /** Submits everything recorded so far (no wait). */
  flush(): void {
    this.endPass();
    if (!this.encoder) return;
    for (let i = 0; i <= this.uniformChunk && i < this.uniformChunks.length; i++) {
      const used = i < this.uniformChunk ? UNIFORM_CHUNK : this.uniformOffset;
      const chunk = this.uniformChunks[i]!;
      if (used > 0) this.device.queue.writeBuffer(chunk.buffer, 0, chunk.data.buffer, 0, Math.ceil(used / 4) * 4);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    this.encoder = undefined;
    this.pendingDispatches = 0;
    this.uniformChunk = 0;
    this.uniformOffset = 0;
  }

  /**
   * GPU time of work recorded from startTimer() to stopTimer(), summed over compute passes, from timestamp
   * queries (benchmarks: it excludes host-side latency). stopTimer() resolves to undefined without the feature
   * or when more than 1024 passes were recorded.
   */
  startTimer(): boolean {
    if (!this.info.timestampQuery) return false;
    this.endPass();
    if (!this.timer) {
      const capacity = 2048;
      this.timer = {
        querySet: this.device.createQuerySet({ type: 'timestamp', count: capacity }),
        resolve: this.device.createBuffer({ size: capacity * 8, usage: 0x200 /* QUERY_RESOLVE */ | 0x4 /* COPY_SRC */ }),
        used: 0,
        capacity,
        overflow: false,
      };
    }
    this.timer.used = 0;
    this.timer.overflow = false;
    this.timing = true;
    return true;
  }

  async stopTimer(): Promise<number | undefined> {
    const t = this.timer;
    if (!this.timing || !t) return undefined;
    this.endPass();
    this.timing = false;
    const used = t.used;
    if (used === 0) return 0;
    const staging = this.device.createBuffer({ size: used * 8, usage: 0x1 /* MAP_READ */ | 0x8 /* COPY_DST */ });
    const enc = this.commandEncoder();
    enc.resolveQuerySet(t.querySet, 0, used, t.resolve, 0);
    enc.copyBufferToBuffer(t.resolve, 0, staging, 0, used * 8);
    this.flush();
    await staging.mapAsync(0x1);
    const stamps = new BigInt64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    if (t.overflow) return undefined;
    let ns = 0n;
    for (let i = 0; i + 1 < used; i += 2) ns += stamps[i + 1]! - stamps[i]!;
    return Number(ns) / 1e6;
  }

  /**
   * Per-dispatch GPU time from here to stopProfile(): each dispatch gets its own compute pass with timestamp
   * writes (which adds a little GPU time per dispatch, so use it to see where time goes, not for totals).
   * False without 'timestamp-query'. Copies and clears are not timed.
   */
  startProfile(): boolean {
    if (!this.info.timestampQuery) return false;
    this.endPass();
    this.profile = { sets: [], used: 0, kernels: [] };
    return true;
  }

  /** The kernel key and GPU milliseconds of every dispatch since startProfile(), in recording order. */
  async stopProfile(): Promise<{ kernel: string; ms: number }[] | undefined> {
    const p = this.profile;
    if (!p) return undefined;
    this.endPass();
    this.profile = undefined;
    if (p.used === 0) return [];
    const bytes = p.used * 8;
    const resolve = this.device.createBuffer({ size: p.sets.length * PROFILE_SET * 8, usage: 0x200 /* QUERY_RESOLVE */ | 0x4 /* COPY_SRC */ });
    const staging = this.device.createBuffer({ size: bytes, usage: 0x1 /* MAP_READ */ | 0x8 /* COPY_DST */ });
    const enc = this.commandEncoder();
    p.sets.forEach((set, k) => enc.resolveQuerySet(set, 0, Math.min(PROFILE_SET, p.used - k * PROFILE_SET), resolve, k * PROFILE_SET * 8));
    enc.copyBufferToBuffer(resolve, 0, staging, 0, bytes);
    this.flush();
    await staging.mapAsync(0x1);
    const stamps = new BigInt64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    resolve.destroy();
    for (const set of p.sets) set.destroy();
    this.check();
    return p.kernels.map((kernel, i) => ({ kernel, ms: Number(stamps[2 * i + 1]! - stamps[2 * i]!) / 1e6 }));
  }

  /** Releases pooled buffers and destroys the device. */
  destroy(): void {
    this.bindGroups.clear();
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
    this.device.destroy();
  }

  // ---------- internals ----------

  private check(): void {
    if (this.lostReason) throw new GpuError(this.lostReason);
    if (this.errors.length) {
      const first = this.errors[0]!;
      this.errors = [];
      throw new GpuError(`WebGPU error: ${first}`);
    }
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (this.pass) return this.pass;
    const p = this.profile;
    if (p) {
      if (p.used === p.sets.length * PROFILE_SET) p.sets.push(this.device.createQuerySet({ type: 'timestamp', count: PROFILE_SET }));
      const set = p.sets[p.sets.length - 1]!;
      const at = p.used % PROFILE_SET;
      p.used += 2;
      this.pass = this.commandEncoder().beginComputePass({ timestampWrites: { querySet: set, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 } });
      return this.pass;
    }
    const t = this.timing ? this.timer : undefined;
    if (t && t.used + 2 <= t.capacity) {
      this.pass = this.commandEncoder().beginComputePass({
        timestampWrites: { querySet: t.querySet, beginningOfPassWriteIndex: t.used, endOfPassWriteIndex: t.used + 1 },
      });
      t.used += 2;
    } else {
      if (t) t.overflow = true;
      this.pass = this.commandEncoder().beginComputePass();
    }
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
    this.passPipeline = undefined;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) this.bufferIds.set(buffer, (id = this.nextBufferId++));
    return id;
  }

  /** Writes a Params block into the current chunk (uploaded on flush) and says where it is. */
  private uniform(layout: ParamLayout, values: readonly number[]): { buffer: GPUBuffer; offset: number; size: number; chunk: number } {
    const bytes = Math.ceil((layout.length * 4) / 16) * 16;
    if (this.uniformOffset + bytes > UNIFORM_CHUNK) {
      this.uniformChunk++;
      this.uniformOffset = 0;
    }
    let chunk = this.uniformChunks[this.uniformChunk];
    if (!chunk) {
      const data = new Uint8Array(UNIFORM_CHUNK);
      chunk = {
        buffer: this.device.createBuffer({ size: UNIFORM_CHUNK, usage: 0x40 /* UNIFORM */ | 0x8 /* COPY_DST */ }),
        data, u32: new Uint32Array(data.buffer), i32: new Int32Array(data.buffer), f32: new Float32Array(data.buffer),
      };
      this.uniformChunks.push(chunk);
    }
    const offset = this.uniformOffset;
    const base = offset >> 2;
    for (let i = 0; i < layout.length; i++) {
      const type = layout[i]![1];
      const v = values[i]!;
      if (type === 'f32') chunk.f32[base + i] = v;
      else if (type === 'i32') chunk.i32[base + i] = v;
      else chunk.u32[base + i] = v >>> 0;
    }
    this.uniformOffset = Math.ceil((offset + bytes) / this.uniformAlign) * this.uniformAlign;
    return { buffer: chunk.buffer, offset, size: bytes, chunk: this.uniformChunk };
  }

  private acquireBuffer(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const free = this.pool.get(size);
    const reused = free?.pop();
    if (reused) {
      this.stats.bytesPooled -= size;
      return reused;
    }
    const buffer = this.device.createBuffer({ size, usage: STORAGE_USAGE });
    this.bufferSize.set(buffer, size);
    this.stats.buffersCreated++;
    this.stats.bytesAllocated += size;
    return buffer;
  }

  /**
   * Called by Tensor.dispose(). Each size class is kept sorted by buffer id and hands out its lowest id, so which
   * buffer an allocation gets depends only on the set of free buffers, not on the order they were released: a
   * training step that repeats gets the same buffers in the same roles, and its bind groups come from the cache.
   */
  releaseBuffer(buffer: GPUBuffer): void {
    const size = this.bufferSize.get(buffer);
    if (size === undefined) return;
    let list = this.pool.get(size);
    if (!list) this.pool.set(size, (list = []));
    // Descending ids; pop() takes the lowest.
    const id = this.bufferId(buffer);
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.bufferId(list[mid]!) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buffer);
    this.stats.bytesPooled += size;
  }
}

function padTo4(bytes: ArrayBufferView): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return out;
}

/** Round-to-nearest-even float32 → IEEE half. */
export function f32ToF16(data: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(data.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < data.length; i++) {
    f[0] = data[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = sign | h;
  }
  return out;
}

export function f16ToF32(data: Uint16Array): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const h = data[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    out[i] = e === 0 ? sign * m * 2 ** -24 : e === 0x1f ? (m ? NaN : sign * Infinity) : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}
