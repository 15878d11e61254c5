/**
 * The runs this browser holds (own and imported) and what the Train and Evaluate views show live about them.
 * The records live in IndexedDB (workers/run-store.ts); training and evaluation run in the train worker.
 */
import * as Comlink from 'comlink';
import { parseResults } from '../../core/eval/results.ts';
import { uidCount, decodeSubsetWords } from '../../core/formats/uid.ts';
import type { TrainProgress } from '../../core/train/loop.ts';
import { runPlan, scaleConfig } from '../../core/train/scales.ts';
import type { RunEvalEvent, RunTrainEvent, TrainWorkerApi } from '../../../workers/train.worker.ts';
import type { FilterWorkerApi } from '../../../workers/filter.worker.ts';
import {
  createRun, deleteRun, getRun, listRuns, putRun, readCheckpointRecord, readFile, storeFile, updateRun, type RunRecord,
} from '../../../workers/run-store.ts';

let train: Comlink.Remote<TrainWorkerApi> | undefined;
let filter: Comlink.Remote<FilterWorkerApi> | undefined;

export function trainWorker(): Comlink.Remote<TrainWorkerApi> {
  train ??= Comlink.wrap<TrainWorkerApi>(new Worker(new URL('../../../workers/train.worker.ts', import.meta.url), { type: 'module', name: 'dcw-train' }));
  return train;
}

/**
 * A filter worker that the Train and Inspect views share (the Train view turns a filter spec into the subset .npy
 * as the Filter view exports it; Inspect marks its cards with what a filter keeps), so a filter counted in one is
 * not run again in the other.
 */
export function subsetWorker(): Comlink.Remote<FilterWorkerApi> {
  filter ??= Comlink.wrap<FilterWorkerApi>(new Worker(new URL('../../../workers/filter.worker.ts', import.meta.url), { type: 'module', name: 'dcw-subset' }));
  return filter;
}

/**
 * The curves of the run that trains now, as uPlot's columns (x values, y values), grown in place: a step appends
 * to them and nothing is copied, so the charts' cost does not grow with the run. A class, so that Svelte keeps it
 * as it is (no deep proxy over thousands of points); `runs.tick` tells the charts when it grew.
 */
export class TrainSeries {
  /** Logged losses of the whole run (earlier sessions' from the checkpoint, then this session's). */
  readonly lossSteps: number[] = [];
  readonly losses: number[] = [];
  /** Learning rates: the earlier sessions' logged ones, then every step of this session. */
  readonly lrSteps: number[] = [];
  readonly lrs: number[] = [];
  /** Samples/s (session average) at every step of this session. */
  readonly rateSteps: number[] = [];
  readonly rates: number[] = [];
  constructor(readonly runId: string, earlier: readonly { step: number; loss: number; lr: number }[]) {
    for (const l of earlier) {
      this.lossSteps.push(l.step);
      this.losses.push(l.loss);
      this.lrSteps.push(l.step);
      this.lrs.push(l.lr);
    }
  }

  /** A step of this session (`step`: its 0-based index; `loss` when it was logged). */
  add(step: number, lr: number, samplesPerSecond: number, loss: number | undefined): void {
    // a session starts where the checkpoint ended: an earlier point at or past this step is superseded
    while (this.lrSteps.length && this.lrSteps[this.lrSteps.length - 1]! >= step) {
      this.lrSteps.pop();
      this.lrs.pop();
    }
    this.lrSteps.push(step);
    this.lrs.push(lr);
    this.rateSteps.push(step);
    this.rates.push(samplesPerSecond);
    if (loss !== undefined) {
      this.lossSteps.push(step);
      this.losses.push(loss);
    }
  }
}

/** Live view of the run that trains now. */
export interface LiveTraining {
  runId: string;
  stage: string;
  series: TrainSeries;
  last?: TrainProgress;
  pausing: boolean;
}

export interface LiveEvaluation {
  runId: string;
  task: string;
  index: number;
  of: number;
  samplesDone: number;
  size: number;
}

class RunsState {
  /**
   * The stored runs, as read (not deeply reactive: a record's losses and results can be long, and proxying them
   * cost the main thread; a changed record replaces the array).
   */
  list = $state.raw<RunRecord[]>([]);
  loaded = $state(false);
  training = $state<LiveTraining | null>(null);
  /** Grows with every step of the training (the charts redraw on it). */
  tick = $state(0);
  evaluating = $state<LiveEvaluation | null>(null);
  /** The last problem, with what to do. */
  error = $state<string | null>(null);
  /** The last training throughput measured on this device (the scales' time estimates use it). */
  throughput = $state<DeviceThroughput | null>(null);
  /** Where the CLIP vocabulary comes from: the server, this browser's copy, or nowhere yet. */
  bpe = $state<'unknown' | 'server' | 'stored' | 'missing'>('unknown');
}

export const runs = new RunsState();

export async function refreshRuns(): Promise<void> {
  runs.throughput ??= measuredThroughput();
  try {
    runs.list = await listRuns();
  } catch (err) {
    runs.error = `IndexedDB is not available here: ${(err as Error).message}`;
  }
  runs.loaded = true;
}

async function refreshRun(id: string): Promise<void> {
  const record = await getRun(id);
  const i = runs.list.findIndex((r) => r.id === id);
  if (record && i >= 0) runs.list = runs.list.with(i, record);
  else if (record) runs.list = [...runs.list, record];
  else if (i >= 0) runs.list = runs.list.filter((r) => r.id !== id);
}

/** Runs marked as training when the page loads were cut off (a reload, a closed tab): they are paused. */
export async function markInterrupted(): Promise<void> {
  await refreshRuns();
  for (const r of runs.list) {
    if (r.status === 'training' && runs.training?.runId !== r.id) {
      await updateRun(r.id, { status: 'paused' });
      await refreshRun(r.id);
    }
  }
}

// ---- the CLIP vocabulary ----

const BPE_FILE = 'bpe';
let bpeCache: Uint8Array | undefined;

/** The vocabulary: the server's /api/bpe when it has one, else the copy the user gave this browser. */
export async function bpeBytes(): Promise<Uint8Array | undefined> {
  if (bpeCache) return bpeCache;
  try {
    const res = await fetch('/api/bpe');
    if (res.ok) {
      bpeCache = new Uint8Array(await res.arrayBuffer());
      runs.bpe = 'server';
      return bpeCache;
    }
  } catch {
    // no server: the stored copy
  }
  bpeCache = await readFile(BPE_FILE);
  runs.bpe = bpeCache ? 'stored' : 'missing';
  return bpeCache;
}

/** Checks the file in the worker, then keeps it in IndexedDB for later sessions. */
export async function storeBpe(bytes: Uint8Array, name: string): Promise<void> {
  await trainWorker().checkBpe(bytes, name);
  await storeFile(BPE_FILE, bytes);
  bpeCache = bytes;
  runs.bpe = 'stored';
}

// ---- throughput measured on this device ----

const THROUGHPUT_KEY = 'dcw-throughput';

export interface DeviceThroughput {
  scale: string;
  samplesPerSecond: number;
  adapter: string;
  at: number;
}

export function measuredThroughput(): DeviceThroughput | null {
  try {
    const v = JSON.parse(localStorage.getItem(THROUGHPUT_KEY) ?? 'null') as DeviceThroughput | null;
    return v && typeof v.samplesPerSecond === 'number' && typeof v.scale === 'string' ? v : null;
  } catch {
    return null;
  }
}

function recordThroughput(t: DeviceThroughput): void {
  localStorage.setItem(THROUGHPUT_KEY, JSON.stringify(t));
  runs.throughput = t;
}

// ---- own runs ----

export interface NewRun {
  name: string;
  poolId: string;
  poolName: string;
  scale: string;
  seed: number;
  filter: string;
  filterSpec?: import('../../../workers/filter.worker.ts').FilterSpec;
  subsetNpy: Uint8Array;
  subsetName: string;
}

export async function addRun(n: NewRun): Promise<RunRecord> {
  const words = decodeSubsetWords(n.subsetNpy, n.subsetName);
  const subsetSize = uidCount(words);
  if (!subsetSize) throw new Error(`${n.subsetName} holds no uid: nothing to train on`);
  const record: RunRecord = {
    id: crypto.randomUUID(), name: n.name, origin: 'own', createdAt: Date.now(), scale: n.scale, filter: n.filter, subsetSize,
    samplesSeen: 0, poolId: n.poolId, poolName: n.poolName, filterSpec: n.filterSpec, seed: n.seed, status: 'ready',
  };
  await createRun(record, n.subsetNpy);
  await refreshRun(record.id);
  return record;
}

/** Loss read every step for short runs (live curve), every 10 for long ones (each read waits for the GPU). */
export function logEveryFor(scaleName: string): number {
  return runPlan(scaleConfig(scaleName)).stepsPerEpoch <= 500 ? 1 : 10;
}

export function featureLevel(): 'core' | 'compatibility' | undefined {
  // tests and users can pin the adapter level (?gpu=compatibility); default: core, else compatibility
  const v = new URLSearchParams(location.search).get('gpu');
  return v === 'core' || v === 'compatibility' ? v : undefined;
}

/** Trains (or resumes) a run in the worker until it ends or is paused. */
export async function startTraining(id: string): Promise<void> {
  if (runs.training) throw new Error('another run is training: pause it first');
  runs.error = null;
  const bpe = await bpeBytes();
  if (!bpe) {
    runs.error = 'Training needs the CLIP vocabulary bpe_simple_vocab_16e6.txt.gz: pick it above (it is in every open_clip install), or start dcw serve with --bpe.';
    return;
  }
  const run = runs.list.find((r) => r.id === id);
  if (!run) return;
  const series = new TrainSeries(id, (await readCheckpointRecord(id))?.state.losses ?? []);
  runs.training = { runId: id, stage: 'starting', series, pausing: false };
  const onEvent = Comlink.proxy((e: RunTrainEvent) => {
    const t = runs.training;
    if (!t || t.runId !== id) return;
    if (e.kind === 'stage') t.stage = e.detail;
    else if (e.kind === 'checkpoint') {
      runs.list = runs.list.map((r) => (r.id === id ? { ...r, state: e.state } : r));
    } else {
      const p = e.progress;
      t.last = p;
      // progress.step counts steps done; the logged loss belongs to the 0-based step just taken
      series.add(p.step - 1, p.lr, p.samplesPerSecond, p.loss);
      runs.tick++;
    }
  });
  try {
    const reply = await trainWorker().trainRun({ runId: id, bpe, logEvery: logEveryFor(run.scale), featureLevel: featureLevel() }, onEvent);
    if (reply.samplesPerSecond > 0) recordThroughput({ scale: run.scale, samplesPerSecond: reply.samplesPerSecond, adapter: reply.adapter, at: Date.now() });
  } catch (err) {
    const message = (err as Error).message;
    runs.error = `Training ${run.name} stopped: ${message}. Its last checkpoint is kept: resume it, or cancel it and start again${/GPU|device|adapter|WebGPU/i.test(message) ? ' (if the GPU is the problem, try another browser or the dcw server)' : ''}.`;
  } finally {
    runs.training = null;
    await refreshRun(id);
  }
}

/** Pauses the training after its current step (epoch_latest is saved first). */
export async function pauseTraining(): Promise<void> {
  if (!runs.training) return;
  runs.training.pausing = true;
  await trainWorker().stop();
}

/** Stops the run if it trains, and deletes it with its checkpoint and subset. */
export async function cancelRun(id: string): Promise<void> {
  if (runs.training?.runId === id) {
    await trainWorker().stop();
    while (runs.training?.runId === id) await new Promise((r) => setTimeout(r, 50));
  }
  await deleteRun(id);
  await refreshRun(id);
}

export async function hasCheckpoint(id: string): Promise<boolean> {
  return (await readCheckpointRecord(id)) !== undefined;
}

/** epoch_latest.safetensors of a run (open_clip names): `dcw evaluate --use_model` and open_clip read it. */
export async function checkpointWeights(id: string): Promise<Blob | undefined> {
  return (await readCheckpointRecord(id))?.weights;
}

export async function evaluateRun(id: string): Promise<void> {
  if (runs.evaluating) throw new Error('an evaluation is running');
  if (runs.training) {
    runs.error = 'Pause the training first: the evaluation needs the GPU.';
    return;
  }
  runs.error = null;
  const bpe = await bpeBytes();
  if (!bpe) {
    runs.error = 'Evaluation needs the CLIP vocabulary bpe_simple_vocab_16e6.txt.gz: pick it in the Train view, or start dcw serve with --bpe.';
    return;
  }
  runs.evaluating = { runId: id, task: 'starting', index: 0, of: 0, samplesDone: 0, size: 0 };
  const onEvent = Comlink.proxy((e: RunEvalEvent) => {
    const ev = runs.evaluating;
    if (!ev) return;
    if (e.kind === 'task') Object.assign(ev, { task: e.name, index: e.index, of: e.of, samplesDone: 0 });
    else if (e.kind === 'progress') Object.assign(ev, { samplesDone: e.samplesDone, size: e.size });
    else void refreshRun(id);
  });
  try {
    await trainWorker().evaluateRun({ runId: id, bpe, evalUrl: new URL('/eval/', location.href).href, featureLevel: featureLevel() }, onEvent);
  } catch (err) {
    runs.error = `The evaluation stopped: ${(err as Error).message}. Tasks already evaluated are kept; evaluate again to finish the rest${/tasklist|HTTP 404/.test((err as Error).message) ? ' (is the suite served? start dcw serve with --eval DIR)' : ''}.`;
  } finally {
    runs.evaluating = null;
    await refreshRun(id);
  }
}

// ---- imported runs ----

/** A run from someone's eval_results.jsonl (read with the core reader; a bad file is refused with its problem). */
export async function importResults(text: string, file: string, name: string, subsetSize: number | null, scale: string): Promise<RunRecord> {
  const results = parseResults(text, file);
  if (!results.length) throw new Error(`${file}: no results in it`);
  const record: RunRecord = {
    id: crypto.randomUUID(), name, origin: 'imported', createdAt: Date.now(), scale, filter: file, subsetSize,
    samplesSeen: scale ? runPlan(scaleConfig(scale)).samplesSeen : null, results: text, evaluatedAt: Date.now(),
  };
  await putRun(record);
  await refreshRun(record.id);
  return record;
}

export async function removeRun(id: string): Promise<void> {
  await deleteRun(id);
  await refreshRun(id);
}
