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
import { configName, matmul, setMatmulConfig, type MatmulConfig } from '../src/core/gpu/kernels/matmul.ts';
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
}

export interface Measurement {
  /** Only the first run was timed (the budget allowed no more). */
  singleRun?: boolean;
  ms?: number;
  gflops?: number;
  skipped?: string;
}

export interface Row {
  group: 'matmul' | 'block' | 'autotune';
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

  const cpu = engine.info.isCpu;
  const rates = { engine: 0, tfjs: 0 };

  // --- choose the matmul kernel for this device ---
  let chosen: MatmulConfig | undefined;
  if (options.autotune ?? !cpu) {
    const n = cpu ? 512 : 2048;
    const candidates: MatmulConfig[] = cpu
      ? [{ kind: 'reg', wgX: 8, wgY: 8 }, { kind: 'reg', wgX: 16, wgY: 4 }, { kind: 'reg', wgX: 4, wgY: 16 }, { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 }]
      : [
          { kind: 'reg', wgX: 8, wgY: 8 }, { kind: 'reg', wgX: 16, wgY: 16 }, { kind: 'reg', wgX: 16, wgY: 8 }, { kind: 'reg', wgX: 32, wgY: 8 },
          { kind: 'tiled', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 }, { kind: 'tiled', BM: 64, BN: 64, BK: 8, TM: 4, TN: 4 },
          { kind: 'tiled', BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 }, { kind: 'tiled', BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 },
          { kind: 'tiled', BM: 64, BN: 128, BK: 16, TM: 4, TN: 8 }, { kind: 'tiled', BM: 128, BN: 64, BK: 16, TM: 8, TN: 4 },
          { kind: 'tiled', BM: 128, BN: 128, BK: 32, TM: 8, TN: 8 }, { kind: 'tiled', BM: 64, BN: 64, BK: 32, TM: 8, TN: 8 },
        ];
    const sizes = cpu ? [n] : [n, 4096];
    const best = new Map<number, { config: MatmulConfig; gflops: number }>();
    for (const size of sizes) {
      const a = engine.tensor(randomArray(rng, size * size));
      const b = engine.tensor(randomArray(rng, size * size));
      const c = engine.empty([size, size]);
      for (const config of candidates) {
        const flops = 2 * size ** 3;
        let m: Measurement;
        try {
          m = await measure(() => matmul(engine, a, b, size, size, size, { out: c, config }), () => engine.sync(), flops, maxSeconds / 2, 0);
        } catch (err) {
          m = { skipped: `failed: ${(err as Error).message.slice(0, 80)}` };
        }
        rows.push({ group: 'autotune', name: `${configName(config)} ${size}³`, flops, engine: m, tfjs: {} });
        log(`autotune ${configName(config)} ${size}³: ${fmt(m)}`);
        if (m.gflops && m.gflops > (best.get(size)?.gflops ?? 0)) best.set(size, { config, gflops: m.gflops });
      }
      a.dispose();
      b.dispose();
      c.dispose();
    }
    // The largest size decides: it is the one the target is stated for.
    chosen = best.get(sizes.at(-1)!)?.config ?? best.get(sizes[0]!)?.config;
    setMatmulConfig(engine, chosen);
  }

  // --- matmul at CLIP shapes and squares ---
  const B = cpu ? 8 : 256;
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
  for (const s of options.quick ? shapes.filter((x) => !x.name.startsWith('square 4096')) : shapes) {
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
        () => engine.sync(), flops, maxSeconds,
      );
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

  // --- one transformer-block training step ---
  for (const shape of BLOCK_SHAPES.filter((s) => (cpu ? s.cpu : s.gpu))) {
    rows.push(await blockRow(engine, tfjs, shape, maxSeconds, log));
  }

  tfjs?.dispose();
  return {
    device: describeGpu(engine.info),
    info: engine.info,
    matmulConfig: chosen ? configName(chosen) : 'default for the adapter',
    rows,
    startedAt: new Date(started).toISOString(),
    seconds: (Date.now() - started) / 1000,
  };
}

async function blockRow(engine: Engine, tfjs: TfjsSession | undefined, shape: BlockShape, maxSeconds: number, log: (l: string) => void): Promise<Row> {
  const name = `block step B${shape.batch} T${shape.seq} C${shape.width} H${shape.heads}${shape.causal ? ' causal' : ''}`;
  const row: Row = { group: 'block', name, flops: blockFlops(shape), engine: {}, tfjs: {}, note: 'forward + backward + AdamW, one submit' };
  const step = blockStepEngine(engine, shape);
  row.engine = await measure(step.run, () => engine.sync(), row.flops, maxSeconds);
  step.dispose();
  if (!tfjs) row.tfjs = { skipped: 'tfjs not loaded' };
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

async function measure(run: () => unknown, sync: () => Promise<void>, flops: number, maxSeconds: number, minSamples = 3): Promise<Measurement> {
  const now = () => performance.now();
  let t = now();
  run();
  await sync();
  const first = (now() - t) / 1000;
  // Too slow to repeat: report the one run (it includes pipeline compilation, so it flatters nobody).
  if (first * 2 > maxSeconds) return { ms: first * 1000, gflops: flops / first / 1e9, singleRun: true };
  t = now();
  run();
  await sync();
  const second = Math.max((now() - t) / 1000, 1e-6);
  const iters = Math.max(1, Math.min(100, Math.ceil(0.05 / second)));
  const budget = maxSeconds - first - second;
  const samples = Math.max(minSamples, Math.min(7, Math.floor(budget / (second * iters))));
  const times: number[] = [];
  for (let s = 0; s < samples; s++) {
    t = now();
    for (let i = 0; i < iters; i++) run();
    await sync();
    times.push((now() - t) / 1000 / iters);
  }
  times.sort((x, y) => x - y);
  const median = times[Math.floor(times.length / 2)]!;
  return { ms: median * 1000, gflops: flops / median / 1e9 };
}

function randomArray(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal();
  return out;
}

function fmt(m: Measurement): string {
  if (m.skipped) return m.skipped;
  return `${m.gflops!.toFixed(1)} GFLOP/s (${m.ms!.toFixed(2)} ms${m.singleRun ? ', 1 run' : ''})`;
}

function rate(m: Measurement): string {
  if (m.skipped) return m.skipped;
  if (m.gflops === undefined) return '';
  return m.gflops.toFixed(1) + (m.singleRun ? ' (1 run)' : '');
}

/** The side-by-side table as text. */
export function formatTable(result: SuiteResult): string {
  const lines = [`device: ${result.device}`, `matmul kernel: ${result.matmulConfig}`, ''];
  const head = ['group', 'shape', 'engine GFLOP/s', 'engine ms', 'tfjs GFLOP/s', 'tfjs ms', 'engine/tfjs'];
  const body = result.rows.map((r) => [
    r.group, r.name,
    rate(r.engine), r.engine.ms?.toFixed(2) ?? '',
    r.group === 'autotune' ? '' : rate(r.tfjs), r.tfjs.ms?.toFixed(2) ?? '',
    r.ratio ? `×${r.ratio.toFixed(2)}` : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  lines.push(line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...body.map(line));
  return lines.join('\n');
}

export type { Tensor };
