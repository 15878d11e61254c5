/**
 * The GPU benchmark itself, free of Node and DOM so that it runs the same in Node (bench/gpu.ts, Dawn) and in
 * headless Chromium (bench/gpu-browser.ts): the engine's matmul at CLIP's shapes and at 1024/2048/4096, and
 * one transformer-block training step, each beside @tensorflow/tfjs-backend-webgpu on the same GPUDevice.
 *
 * Timing: every measurement ends at queue.onSubmittedWorkDone(); a first run (pipeline compilation) and a
 * second (steady estimate) are discarded, then several runs are batched per sample so a sample lasts ≥ 50 ms,
 * and the median of the samples is reported. Anything whose estimate exceeds the time budget is skipped and
 * says so in the table.
 */
import { describeGpu } from '../src/core/gpu/device.ts';
import type { Engine, Tensor } from '../src/core/gpu/engine.ts';
import { choosePlan, configName, matmul, planMatmul, planName, setMatmulConfig, setMatmulTuning, tiledConfigError, type MatmulConfig } from '../src/core/gpu/kernels/matmul.ts';
import { DEFAULT_GPU_TUNING, type MatmulTuning } from '../src/core/gpu/tuning.ts';
import * as ops from '../src/core/gpu/kernels/ops.ts';
import { Rng } from '../src/core/util/random.ts';
import { blockStepEngine, blockStepTfjs, BLOCK_SHAPES, type BlockShape } from './gpu-block.ts';

/** The slice of tfjs the suite uses (bench/tfjs-entry.ts). */
export interface Tfjs {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  tf: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  WebGPUBackend: any;
}

export interface SuiteOptions {
  engine: Engine;
  tfjs?: Tfjs;
  /** Budget for one measurement (all its runs), seconds. */
  maxSeconds?: number;
  log?: (line: string) => void;
  /** Tries several matmul kernels and keeps the fastest (always on for GPUs). */
  autotune?: boolean;
  quick?: boolean;
  /** A stored tuning for this device (skips the GPU autotune unless `autotune` is true). */
  tuning?: MatmulTuning;
  /** Runs the GPU code path (autotune, tuned plans) at tiny sizes on any adapter: a local smoke test. */
  smoke?: boolean;
  /** Only these row groups (default all): 'block' runs the host-overhead and block-step rows without the matmul shapes. */
  only?: 'block' | 'matmul';
  /** 'all': the block step once per row-kernel form the device has (ops.rowKernelModes), default form first. */
  rowModes?: 'default' | 'all';
}

export interface Measurement {
  /** Only the first run was timed (the budget allowed no more). */
  singleRun?: boolean;
  /** Median wall time per run (submit → onSubmittedWorkDone, runs batched per sample). */
  ms?: number;
  gflops?: number;
  /** Fastest sample's wall time per run. */
  minMs?: number;
  /** Median GPU time per run from timestamp queries (engine only, where the adapter has them). */
  gpuMs?: number;
  gpuGflops?: number;
  /** Median host time per run spent recording (the run() calls alone, before the wait): the engine's CPU cost. */
  recordMs?: number;
  skipped?: string;
}

export interface Row {
  group: 'matmul' | 'block' | 'autotune' | 'host';
  name: string;
  flops: number;
  engine: Measurement;
  tfjs: Measurement;
  /** engine speed ÷ tfjs speed. */
  ratio?: number;
  note?: string;
}

export interface SuiteResult {
  device: string;
  info: Engine['info'];
  matmulConfig: string;
  /** The tuning the matmul rows ran with (GPUs). */
  tuning?: MatmulTuning;
  rows: Row[];
  startedAt: string;
  seconds: number;
}

export async function runGpuSuite(options: SuiteOptions): Promise<SuiteResult> {
  const { engine } = options;
  const log = options.log ?? (() => {});
  const maxSeconds = options.maxSeconds ?? 20;
  const started = Date.now();
  const rows: Row[] = [];
  const rng = new Rng(1234);
  let tfjs: TfjsSession | undefined;
  try {
    tfjs = options.tfjs ? await startTfjs(options.tfjs, engine) : undefined;
  } catch (err) {
    log(`tfjs-webgpu could not start on this device: ${(err as Error).message}`);
  }
  log(`device: ${describeGpu(engine.info)}`);

  const smoke = options.smoke ?? false;
  const cpu = engine.info.isCpu && !smoke;
  const rates = { engine: 0, tfjs: 0 };

  // --- choose the matmul kernels for this device ---
  let chosen: MatmulConfig | undefined;
  let tuning: MatmulTuning | undefined;
  const timer = { start: () => engine.startTimer(), stop: () => engine.stopTimer() };
  if (cpu && (options.autotune ?? true)) {
    // CPU adapters: one kernel for everything, chosen at 512³ among the barrier-free ones.
    const n = 512;
    const candidates: MatmulConfig[] = [{ kind: 'reg', wgX: 8, wgY: 8 }, { kind: 'reg', wgX: 16, wgY: 4 }, { kind: 'reg', wgX: 4, wgY: 16 }, { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 }];
    const a = engine.tensor(randomArray(rng, n * n));
    const b = engine.tensor(randomArray(rng, n * n));
    const c = engine.empty([n, n]);
    let best = 0;
    for (const config of candidates) {
      const flops = 2 * n ** 3;
      const m = await measure(() => matmul(engine, a, b, n, n, n, { out: c, config }), () => engine.sync(), flops, maxSeconds / 2, 0);
      rows.push({ group: 'autotune', name: `${configName(config)} ${n}³`, flops, engine: m, tfjs: {} });
      log(`autotune ${configName(config)} ${n}³: ${fmt(m)}`);
      if ((m.gflops ?? 0) > best) [best, chosen] = [m.gflops!, config];
    }
    a.dispose();
    b.dispose();
    c.dispose();
    setMatmulConfig(engine, chosen);
  } else if (!cpu) {
    tuning = options.tuning && !options.autotune ? options.tuning : await autotuneGpu(engine, rng, rows, log, maxSeconds, options.quick ?? false, timer, smoke);
    setMatmulTuning(engine, tuning);
  }

  // --- matmul at CLIP shapes and squares ---
  const B = cpu || smoke ? 8 : 256;
  const shapes: { name: string; M: number; N: number; K: number; batch?: number; transA?: boolean; transB?: boolean }[] = [
    { name: `text qkv ${B}·77×512→1536`, M: B * 77, N: 1536, K: 512 },
    { name: `text mlp up ${B}·77×512→2048`, M: B * 77, N: 2048, K: 512 },
    { name: `text mlp down ${B}·77×2048→512`, M: B * 77, N: 512, K: 2048 },
    { name: `text dX = dY·Wᵀ (Bᵀ) ${B}·77×1536→512`, M: B * 77, N: 512, K: 1536, transB: true },
    { name: `text dW = Xᵀ·dY (Aᵀ) 512×1536, K=${B}·77`, M: 512, N: 1536, K: B * 77, transA: true },
    { name: `vision qkv ${B}·50×768→2304`, M: B * 50, N: 2304, K: 768 },
    { name: `vision mlp up ${B}·50×768→3072`, M: B * 50, N: 3072, K: 768 },
    { name: `attention q·kᵀ ${B}·8 × 77×77×64`, M: 77, N: 77, K: 64, batch: B * 8, transB: true },
    { name: `logits ${B}×${B}×512 (Bᵀ)`, M: B, N: B, K: 512, transB: true },
    ...[1024, 2048, 4096].map((n) => ({ name: `square ${n}³`, M: n, N: n, K: n })),
  ];
  for (const s of options.only === 'block' ? [] : options.quick || smoke ? shapes.filter((x) => !x.name.startsWith('square 4096') && !(smoke && x.name.startsWith('square'))) : shapes) {
    const batch = s.batch ?? 1;
    const flops = 2 * s.M * s.N * s.K * batch;
    const aShape = batch > 1 ? [batch, ...(s.transA ? [s.K, s.M] : [s.M, s.K])] : s.transA ? [s.K, s.M] : [s.M, s.K];
    const bShape = batch > 1 ? [batch, ...(s.transB ? [s.N, s.K] : [s.K, s.N])] : s.transB ? [s.N, s.K] : [s.K, s.N];
    const aData = randomArray(rng, batch * s.M * s.K);
    const bData = randomArray(rng, batch * s.K * s.N);
    const row: Row = { group: 'matmul', name: s.name, flops, engine: {}, tfjs: {} };
    const estimate = (rate: number) => (rate > 0 ? flops / rate / 1e9 : 0);
    if (estimate(rates.engine) * 3 > maxSeconds) {
      row.engine = { skipped: `skipped: ~${estimate(rates.engine).toFixed(0)} s per run` };
    } else {
      const a = engine.tensor(aData, aShape);
      const b = engine.tensor(bData, bShape);
      const c = engine.empty([batch, s.M, s.N]);
      row.engine = await measure(
        () => matmul(engine, a, b, s.M, s.N, s.K, { batch, transA: s.transA, transB: s.transB, out: c }),
        () => engine.sync(), flops, maxSeconds, 3, timer,
      );
      row.note = planName(planMatmul(engine, s.M, s.N, s.K, batch));
      rates.engine = Math.max(rates.engine, row.engine.gflops ?? 0);
      a.dispose();
      b.dispose();
      c.dispose();
    }
    if (!tfjs) row.tfjs = { skipped: 'tfjs not loaded' };
    else if (estimate(rates.tfjs) * 3 > maxSeconds) row.tfjs = { skipped: `skipped: ~${estimate(rates.tfjs).toFixed(0)} s per run` };
    else {
      const { tf } = tfjs;
      const a = tf.tensor(aData, aShape);
      const b = tf.tensor(bData, bShape);
      try {
        row.tfjs = await measure(() => tf.matMul(a, b, s.transA ?? false, s.transB ?? false).dispose(), tfjs.sync, flops, maxSeconds);
        rates.tfjs = Math.max(rates.tfjs, row.tfjs.gflops ?? 0);
      } catch (err) {
        row.tfjs = { skipped: `failed: ${String((err as Error).message ?? err).slice(0, 80)}` };
      }
      a.dispose();
      b.dispose();
    }
    if (row.engine.gflops && row.tfjs.gflops) row.ratio = row.engine.gflops / row.tfjs.gflops;
    rows.push(row);
    log(`${row.name}: engine ${fmt(row.engine)} | tfjs ${fmt(row.tfjs)}${row.ratio ? ` | ×${row.ratio.toFixed(2)}` : ''}`);
  }

  // --- host cost per recorded op, then one transformer-block training step ---
  if (options.only !== 'matmul') rows.push(...(await hostRows(engine, maxSeconds, log)));
  const defaultMode = ops.rowKernelMode(engine);
  const modes = options.rowModes === 'all' ? [defaultMode, ...ops.rowKernelModes(engine).filter((m) => m !== defaultMode)] : [defaultMode];
  for (const shape of options.only === 'matmul' ? [] : BLOCK_SHAPES.filter((s) => (cpu || smoke ? s.cpu : s.gpu))) {
    for (const mode of modes) {
      ops.setRowKernelMode(engine, mode);
      try {
        rows.push(await blockRow(engine, mode === defaultMode ? tfjs : undefined, shape, maxSeconds, log, mode, mode !== defaultMode));
      } finally {
        ops.setRowKernelMode(engine, undefined);
      }
    }
  }

  tfjs?.dispose();
  return {
    device: describeGpu(engine.info),
    info: engine.info,
    matmulConfig: chosen ? configName(chosen) : tuning ? `tuned: ${tuning.kernels.map((k) => `${configName(k.config)} ×${k.speed.toFixed(2)}`).join(', ')}; fill ${tuning.targetWorkgroups} workgroups, split-K ≥ ${tuning.minSplitK}` : 'default for the adapter',
    tuning,
    rows,
    startedAt: new Date(started).toISOString(),
    seconds: (Date.now() - started) / 1000,
  };
}

async function blockRow(engine: Engine, tfjs: TfjsSession | undefined, shape: BlockShape, maxSeconds: number, log: (l: string) => void, mode: ops.RowKernelMode, otherForm = false): Promise<Row> {
  const name = `block step B${shape.batch} T${shape.seq} C${shape.width} H${shape.heads}${shape.causal ? ' causal' : ''} [rows: ${mode}]`;
  const row: Row = { group: 'block', name, flops: blockFlops(shape), engine: {}, tfjs: {}, note: 'forward + backward + AdamW, one submit' };
  const step = blockStepEngine(engine, shape);
  row.engine = await measure(step.run, () => engine.sync(), row.flops, maxSeconds, 3, { start: () => engine.startTimer(), stop: () => engine.stopTimer() });
  step.dispose();
  const parts = [row.engine.gpuMs !== undefined ? `GPU ${row.engine.gpuMs.toFixed(3)} ms` : '', row.engine.recordMs !== undefined ? `recording ${row.engine.recordMs.toFixed(3)} ms` : ''].filter(Boolean);
  if (parts.length) row.note = `${parts.join(', ')}; ${row.note}`;
  if (!tfjs) row.tfjs = { skipped: otherForm ? 'tfjs: see the default form' : 'tfjs not loaded' };
  else {
    try {
      const t = blockStepTfjs(tfjs.tf, shape);
      row.tfjs = await measure(t.run, tfjs.sync, row.flops, maxSeconds);
      t.dispose();
    } catch (err) {
      row.tfjs = { skipped: `failed: ${String((err as Error).message ?? err).slice(0, 80)}` };
    }
  }
  if (row.engine.ms && row.tfjs.ms) row.ratio = row.tfjs.ms / row.engine.ms;
  log(`${name}: engine ${fmt(row.engine)} | tfjs ${fmt(row.tfjs)}${row.ratio ? ` | ×${row.ratio.toFixed(2)}` : ''}`);
  return row;
}

/**
 * Host cost of recording one op: 256 tiny dispatches per run (the GPU work is negligible), so wall time per
 * op is what the engine's dispatch() costs on the CPU (pipeline lookup, uniforms, bind group, pass commands)
 * plus the submit, spread over the batch.
 */
async function hostRows(engine: Engine, maxSeconds: number, log: (l: string) => void): Promise<Row[]> {
  const OPS = 256;
  const a = engine.tensor(new Float32Array(64).fill(1));
  const b = engine.tensor(new Float32Array(64).fill(2));
  const out = engine.empty([64]);
  const m8 = engine.tensor(new Float32Array(64).fill(0.5), [8, 8]);
  const c8 = engine.empty([8, 8]);
  const cases: [string, () => void][] = [
    ['elementwise add ×256 (64 elements)', () => { for (let i = 0; i < OPS; i++) ops.add(engine, a, b, out); }],
    ['matmul 8×8×8 ×256', () => { for (let i = 0; i < OPS; i++) matmul(engine, m8, m8, 8, 8, 8, { out: c8 }); }],
  ];
  const rows: Row[] = [];
  for (const [name, run] of cases) {
    const m = await measure(run, () => engine.sync(), 0, Math.min(maxSeconds, 4), 3, { start: () => engine.startTimer(), stop: () => engine.stopTimer() });
    const perOp = (ms?: number) => (ms === undefined ? '' : `${((ms * 1000) / OPS).toFixed(1)} µs/op`);
    const note = `wall ${perOp(m.ms)}, recording ${perOp(m.recordMs)}${m.gpuMs !== undefined ? `, GPU ${perOp(m.gpuMs)}` : ''}`;
    rows.push({ group: 'host', name, flops: 0, engine: { ...m, gflops: undefined, gpuGflops: undefined }, tfjs: {}, note });
    log(`${name}: ${note}`);
  }
  for (const t of [a, b, out, m8, c8]) t.dispose();
  return rows;
}

/** Matmul FLOPs of one block step: forward 2·rows·12·C² + attention, backward twice that. */
export function blockFlops(s: BlockShape): number {
  const rows = s.batch * s.seq;
  const dense = 2 * rows * 12 * s.width * s.width;
  const attention = 2 * 2 * s.batch * s.seq * s.seq * s.width;
  return 3 * (dense + attention);
}

interface TfjsSession {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  tf: any;
  sync: () => Promise<void>;
  dispose: () => void;
}

/** tfjs-backend-webgpu on the engine's own GPUDevice, so both sides share the device and queue. */
async function startTfjs(lib: Tfjs, engine: Engine): Promise<TfjsSession> {
  const { tf, WebGPUBackend } = lib;
  const backend = new WebGPUBackend(engine.device, engine.handle.adapter.info);
  // The kernels are registered for the name 'webgpu': replace its factory with one that uses our device.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => backend);
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs refused the webgpu backend');
  await tf.ready();
  return {
    tf,
    sync: async () => {
      // What tfjs itself does before a readback: close the pass, submit what is recorded.
      if (backend.commandEncoder) {
        backend.endComputePassEncoder();
        backend.submitQueue();
      }
      await engine.device.queue.onSubmittedWorkDone();
    },
    dispose: () => {
      // Keep the device: it belongs to the engine.
      tf.engine().reset?.();
    },
  };
}

interface Timer {
  start(): boolean;
  stop(): Promise<number | undefined>;
}

async function measure(run: () => unknown, sync: () => Promise<void>, flops: number, maxSeconds: number, minSamples = 3, timer?: Timer): Promise<Measurement> {
  const now = () => performance.now();
  let t = now();
  run();
  await sync();
  let first = (now() - t) / 1000;
  if (first * 2 > maxSeconds) {
    // Possibly pipeline compilation: time one more run before deciding the shape is too slow to repeat.
    t = now();
    run();
    await sync();
    first = (now() - t) / 1000;
    if (first * 2 > maxSeconds) return { ms: first * 1000, gflops: flops / first / 1e9, singleRun: true };
  }
  t = now();
  run();
  await sync();
  const second = Math.max((now() - t) / 1000, 1e-6);
  const iters = Math.max(1, Math.min(100, Math.ceil(0.05 / second)));
  // Warm-up: a GPU left idle while the host prepared data clocks down and needs a fraction of a second of load
  // to come back (the H100 ran 4–5× slower for the first ~0.3 s: the "square 4096³ at 8 TFLOP/s" rows).
  const warm = Math.min(0.3, maxSeconds / 4);
  const warmStart = now();
  while ((now() - warmStart) / 1000 < warm) {
    for (let i = 0; i < iters; i++) run();
    await sync();
  }
  const budget = maxSeconds - first - second - warm;
  const samples = Math.max(minSamples, Math.min(7, Math.floor(budget / (second * iters))));
  const times: number[] = [];
  const gpuTimes: number[] = [];
  const recordTimes: number[] = [];
  for (let s = 0; s < samples; s++) {
    const timing = timer?.start() ?? false;
    t = now();
    for (let i = 0; i < iters; i++) run();
    recordTimes.push((now() - t) / 1000 / iters);
    await sync();
    times.push((now() - t) / 1000 / iters);
    if (timing) {
      const gpu = await timer!.stop();
      if (gpu !== undefined) gpuTimes.push(gpu / 1000 / iters);
    }
  }
  if (!times.length) return { ms: second * 1000, gflops: flops / second / 1e9 };
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const m: Measurement = { ms: median(times) * 1000, gflops: flops / median(times) / 1e9, minMs: Math.min(...times) * 1000, recordMs: median(recordTimes) * 1000 };
  if (gpuTimes.length === times.length) {
    m.gpuMs = median(gpuTimes) * 1000;
    m.gpuGflops = flops / median(gpuTimes) / 1e9;
  }
  return m;
}

/** Matmul shapes with few output tiles: the ones the device-fill settings (split-K, smaller tiles) decide. */
const FILL_SHAPES = [
  { name: 'square 1024³', M: 1024, N: 1024, K: 1024 },
  { name: 'dW 512×1536, K=19712 (Aᵀ)', M: 512, N: 1536, K: 19712, transA: true },
  { name: 'logits 256×256×512 (Bᵀ)', M: 256, N: 256, K: 512, transB: true },
  { name: 'mlp down 19712×512, K=2048', M: 19712, N: 512, K: 2048 },
  { name: 'attention 2048 × 77×77×64 (Bᵀ)', M: 77, N: 77, K: 64, batch: 2048, transB: true },
] as const;

/**
 * GPU autotune: (1) every candidate kernel at 4096³ (2048³ with --quick) gives each kernel's relative speed on
 * large problems; (2) a few device-fill settings (workgroups that fill the device, smallest split-K slice) are
 * tried on shapes with few output tiles, keeping the setting with the least total time. The result is data
 * (MatmulTuning) that bench/gpu.ts stores per device.
 */
async function autotuneGpu(engine: Engine, rng: Rng, rows: Row[], log: (l: string) => void, maxSeconds: number, quick: boolean, timer: Timer, smoke: boolean): Promise<MatmulTuning> {
  const candidates: MatmulConfig[] = [
    { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 },
    { kind: 'tiled', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 },
    { kind: 'tiled', BM: 64, BN: 128, BK: 8, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 64, BN: 128, BK: 16, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 128, BN: 64, BK: 8, TM: 8, TN: 8, db: true },
    { kind: 'tiled', BM: 64, BN: 64, BK: 8, TM: 4, TN: 4, db: true },
    { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, db: true },
    { kind: 'tiled', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, db: true },
    { kind: 'reg', wgX: 16, wgY: 8 },
  ].filter((c) => c.kind === 'reg' || !tiledConfigError(c as Extract<MatmulConfig, { kind: 'tiled' }>, engine)) as MatmulConfig[];
  const size = smoke ? 128 : quick ? 2048 : 4096;
  const budget = Math.min(maxSeconds, 5) / 8;
  const a = engine.tensor(randomArray(rng, size * size));
  const b = engine.tensor(randomArray(rng, size * size));
  const c = engine.empty([size, size]);
  const measured: { config: MatmulConfig; gflops: number }[] = [];
  for (const config of candidates) {
    const flops = 2 * size ** 3;
    let m: Measurement;
    try {
      m = await measure(() => matmul(engine, a, b, size, size, size, { out: c, config }), () => engine.sync(), flops, budget, 3, timer);
    } catch (err) {
      m = { skipped: `failed: ${(err as Error).message.slice(0, 80)}` };
    }
    rows.push({ group: 'autotune', name: `${configName(config)} ${size}³`, flops, engine: m, tfjs: {} });
    log(`autotune ${configName(config)} ${size}³: ${fmt(m)}`);
    const rate = m.gpuGflops ?? m.gflops;
    if (rate) measured.push({ config, gflops: rate });
  }
  a.dispose();
  b.dispose();
  c.dispose();
  if (!measured.length) return DEFAULT_GPU_TUNING;
  const top = Math.max(...measured.map((m) => m.gflops));
  const kernels = fastestPerTile(measured.map((m) => ({ config: m.config, speed: m.gflops / top })));
  let best: { tuning: MatmulTuning; ms: number } | undefined;
  const cache = new Map<string, number>();
  const inputs = new Map<string, { a: Tensor; b: Tensor; c: Tensor }>();
  for (const targetWorkgroups of [132, 264, 528]) {
    for (const minSplitK of [128, 512]) {
      const tuning: MatmulTuning = { ...DEFAULT_GPU_TUNING, kernels, targetWorkgroups, minSplitK };
      let total = 0;
      for (const s of smoke ? FILL_SHAPES.map((x) => ({ ...x, M: Math.ceil(x.M / 8), N: Math.ceil(x.N / 8), K: Math.ceil(x.K / 8), batch: 2 })) : FILL_SHAPES) {
        const batch = 'batch' in s ? s.batch : 1;
        const plan = choosePlan(tuning, s.M, s.N, s.K, batch, engine);
        const key = `${s.name} ${planName(plan)}`;
        let ms = cache.get(key);
        if (ms === undefined) {
          let io = inputs.get(s.name);
          if (!io) {
            io = { a: engine.tensor(randomArray(rng, batch * s.M * s.K)), b: engine.tensor(randomArray(rng, batch * s.K * s.N)), c: engine.empty([batch, s.M, s.N]) };
            inputs.set(s.name, io);
          }
          const { a, b, c } = io;
          const t = 'transA' in s ? { transA: true } : 'transB' in s ? { transB: true } : {};
          const m = await measure(() => matmul(engine, a, b, s.M, s.N, s.K, { ...t, batch, out: c, config: plan.config, splits: plan.splits }), () => engine.sync(), 2 * s.M * s.N * s.K * batch, budget, 3, timer);
          ms = m.gpuMs ?? m.ms ?? Infinity;
          cache.set(key, ms);
          rows.push({ group: 'autotune', name: `${s.name}: ${planName(plan)}`, flops: 2 * s.M * s.N * s.K * batch, engine: m, tfjs: {} });
          log(`autotune ${s.name}: ${planName(plan)}: ${fmt(m)}`);
        }
        total += ms;
      }
      log(`autotune fill ${targetWorkgroups} workgroups, split-K ≥ ${minSplitK}: ${total.toFixed(3)} ms over ${FILL_SHAPES.length} shapes`);
      if (!best || total < best.ms) best = { tuning, ms: total };
    }
  }
  for (const io of inputs.values()) {
    io.a.dispose();
    io.b.dispose();
    io.c.dispose();
  }
  return best!.tuning;
}

let pool: Float32Array | undefined;
/**
 * N(0,1) data; large arrays are copied from a shared pool of 2²² normals at a random offset, so preparing a
 * 40M-element operand takes milliseconds instead of seconds (during which the GPU would clock down).
 */
function randomArray(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n <= 1 << 16) {
    for (let i = 0; i < n; i++) out[i] = rng.normal();
    return out;
  }
  if (!pool) {
    pool = new Float32Array(1 << 22);
    for (let i = 0; i < pool.length; i++) pool[i] = rng.normal();
  }
  for (let i = 0; i < n; ) {
    const start = rng.int(pool.length >> 1);
    const len = Math.min(n - i, pool.length - start);
    out.set(pool.subarray(start, start + len), i);
    i += len;
  }
  return out;
}

function fmt(m: Measurement): string {
  if (m.skipped) return m.skipped;
  const gpu = m.gpuMs !== undefined ? `; GPU ${m.gpuGflops!.toFixed(1)} GFLOP/s, ${m.gpuMs.toFixed(3)} ms` : '';
  return `${m.gflops!.toFixed(1)} GFLOP/s (${m.ms!.toFixed(3)} ms${m.singleRun ? ', 1 run' : ''}${gpu})`;
}

function rate(m: Measurement): string {
  if (m.skipped) return m.skipped;
  if (m.gflops === undefined) return '';
  return m.gflops.toFixed(1) + (m.singleRun ? ' (1 run)' : '');
}

/** The side-by-side table as text. */
/**
 * A tuning's kernel list from measured speeds (relative to the fastest, 1): per tile shape the fastest variant
 * (BK, buffering), shapes below 0.3 dropped, fastest first.
 */
export function fastestPerTile(measured: readonly { config: MatmulConfig; speed: number }[]): { config: MatmulConfig; speed: number }[] {
  const byTile = new Map<string, { config: MatmulConfig; speed: number }>();
  for (const m of measured) {
    const tile = m.config.kind === 'tiled' ? `${m.config.BM}x${m.config.BN}` : 'reg';
    if (m.speed >= 0.3 && m.speed > (byTile.get(tile)?.speed ?? 0)) byTile.set(tile, m);
  }
  return [...byTile.values()].sort((x, y) => y.speed - x.speed);
}

export function formatTable(result: SuiteResult): string {
  const lines = [`device: ${result.device}`, `matmul kernel: ${result.matmulConfig}`, ''];
  const head = ['group', 'shape', 'engine GFLOP/s', 'engine ms', 'GPU-timed GFLOP/s', 'tfjs GFLOP/s', 'tfjs ms', 'engine/tfjs', 'engine plan / note'];
  const body = result.rows.map((r) => [
    r.group, r.name,
    rate(r.engine), r.engine.ms?.toFixed(3) ?? '', r.group === 'host' ? r.engine.gpuMs?.toFixed(3) ?? '' : r.engine.gpuGflops?.toFixed(1) ?? '',
    r.group === 'autotune' ? '' : rate(r.tfjs), r.tfjs.ms?.toFixed(3) ?? '',
    r.ratio ? `×${r.ratio.toFixed(2)}` : '',
    r.group === 'autotune' ? '' : r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i < 2 || i === 8 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  lines.push(line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...body.map(line));
  return lines.join('\n');
}

export type { Tensor };
