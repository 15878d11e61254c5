/**
 * `dcw reshard`: resharder.py's algorithm (facts §4) on local folders, streaming: each input shard is read
 * through the tar reader a chunk at a time and each output shard is written through an atomic file
 * stream, so memory holds one sample (plus the optional shuffle buffer), whatever the pool size.
 *
 * Several workers (-j) run in worker threads, one task (a contiguous run of input shards) each, sharing
 * the subset through a SharedArrayBuffer; memory per worker is one sample, a 4 MiB write batch and the
 * optional shuffle buffer.
 *
 * Where this differs from the official script, and why:
 * - Output shard numbers: the official workers take numbers from a shared counter when they open a shard,
 *   so the numbering depends on timing. Here each worker writes under temporary names and the shards are
 *   numbered in worker order at the end, so the same inputs and flags give the same files.
 * - tar mtime is 0 (webdataset writes the wall clock), for the same reason.
 * - An unsorted subset file is refused (the official binary search would silently miss uids).
 * - --shuffle-bufsize shuffles with the workbench's seeded Rng, not Python's random.
 * - The output directory is created when missing.
 * - --apply-blur: the blur is img2dataset's (src/core/reshard/blur.ts, within one level of OpenCV's float
 *   rounding), decoded and re-encoded by libvips (sharp) instead of OpenCV: the webp bytes differ, the
 *   pictures agree. --reencode-webp-quality is read as a number (the official script hands cv2 the string).
 */
import { copyFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { Worker } from 'node:worker_threads';
import { isSortedWords, decodeSubsetWords } from '../../src/core/formats/uid.ts';
import { formatShardName, guessNumShards, planTasks, SubsetIndex, type Shard } from '../../src/core/reshard/plan.ts';
import { UserError } from '../cli/errors.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { loadBlurMetadataMap } from './blur-boxes.ts';
import { runTask, TEMP_SHARD, type TaskLog, type TaskParams, type TaskResult } from './task.ts';
import type { WorkerInput, WorkerMessage } from './worker.ts';

export interface ReshardOptions {
  inputDir: string;
  outputDir: string;
  subsetFile: string;
  numShards?: number;
  firstShard?: number;
  numWorkers?: number;
  shardSize?: number;
  shardFormat?: string;
  outputShardFormat?: string;
  shardStatsFormat?: string;
  outputShardStatsFormat?: string;
  shardTable?: string;
  writeShardTable?: boolean;
  shuffleBufsize?: number;
  blurMetadataMap?: string;
  applyBlur?: boolean;
  injectBlurMetadata?: boolean;
  reencodeWebpQuality?: string | number;
  dryRun?: boolean;
  overwrite?: boolean;
  verbose?: number;
  quiet?: number;
  /** Log lines (info and warnings); default: stderr. */
  log?: (level: 'info' | 'warn' | 'error' | 'debug', message: string) => void;
}

export interface ReshardState {
  processed_count: number;
  output_count: number;
  blur_count: number;
  blur_time: number;
  output_shard_count: number;
  worker_success: number;
}

export interface ReshardReport extends ReshardState {
  inputShards: number;
  missingShards: number;
  expectedSamples: number;
  subsetSize: number;
  /** Subset entries that matched no input sample (the official warning). */
  notFound: number;
  errors: string[];
  seconds: number;
  bytesRead: number;
  bytesWritten: number;
}

/** Python's json.dumps of a flat object with its default separators and ensure_ascii. */
export function pyJsonDumps(obj: Record<string, string | number>): string {
  const ascii = (s: string) => JSON.stringify(s).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `{${Object.entries(obj).map(([k, v]) => `${ascii(k)}: ${typeof v === 'number' ? String(v) : ascii(v)}`).join(', ')}}`;
}

export async function reshard(opts: ReshardOptions): Promise<ReshardReport> {
  const started = performance.now();
  const o = {
    firstShard: 0, numWorkers: 1, shardSize: 10000, shardFormat: '{:08d}.tar', outputShardFormat: '{:08d}.tar',
    shardStatsFormat: '{:08d}_stats.json', outputShardStatsFormat: '{:08d}_stats.json', shardTable: 'sizes.json',
    shuffleBufsize: 0, reencodeWebpQuality: 100, ...opts,
  };
  const level = Math.max(0, Math.min(4, 1 - (o.verbose ?? 0) + (o.quiet ?? 0)));
  const levels = { debug: 0, info: 1, warn: 2, error: 3 } as const;
  const log = (lvl: keyof typeof levels, message: string) => {
    if (levels[lvl] < level) return;
    if (o.log) o.log(lvl, message);
    else process.stderr.write(`[${lvl.toUpperCase()}] ${message}\n`);
  };
  const webpQuality = Number(o.reencodeWebpQuality);
  if (!Number.isInteger(webpQuality) || webpQuality < 0 || webpQuality > 100) throw new UserError(`reshard: --reencode-webp-quality must be a whole number from 0 to 100, got ${o.reencodeWebpQuality}`);
  const blurMap = o.blurMetadataMap ? await loadBlurMetadataMap(o.blurMetadataMap, o.inputDir) : undefined;
  for (const [flag, v] of [['--shard-size', o.shardSize], ['-j/--num-workers', o.numWorkers]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new UserError(`reshard: ${flag} must be a positive integer, got ${v}`);
  }
  for (const fmt of [o.shardFormat, o.outputShardFormat, o.shardStatsFormat, o.outputShardStatsFormat]) {
    try {
      formatShardName(fmt, 0);
    } catch (err) {
      throw new UserError(`reshard: ${(err as Error).message}`);
    }
  }
  const exists = async (p: string) => stat(p).then((s) => s.isFile(), () => false);

  // 1. input shards and their sizes
  const inputStat = await stat(o.inputDir).catch(() => undefined);
  if (!inputStat?.isDirectory()) throw new UserError(`reshard: --input-dir ${o.inputDir} is not a directory`);
  let table: Record<string, number> = {};
  const tablePath = join(o.inputDir, o.shardTable);
  const hadTable = await exists(tablePath);
  if (hadTable) {
    try {
      table = JSON.parse(await readFile(tablePath, 'utf8')) as Record<string, number>;
      log('info', `loaded shard table ${tablePath} with ${Object.keys(table).length} shards`);
    } catch (err) {
      log('error', `shard table parsing error: ${(err as Error).message}`);
    }
  }
  let numShards = o.numShards;
  if (!numShards) {
    try {
      numShards = await guessNumShards((id) => exists(join(o.inputDir, formatShardName(o.shardFormat, id))), o.firstShard);
    } catch (err) {
      throw new UserError(`reshard: ${o.inputDir}: ${(err as Error).message} (${formatShardName(o.shardFormat, o.firstShard)}, …)`);
    }
    log('info', `binary search found ${numShards} potential shards`);
  }
  const shards: Shard[] = [];
  let offset = 0;
  let missing = 0;
  for (let id = o.firstShard; id < o.firstShard + numShards; id++) {
    const name = formatShardName(o.shardFormat, id);
    if (!(name in table)) {
      const statsPath = join(o.inputDir, formatShardName(o.shardStatsFormat, id));
      if ((await exists(statsPath)) && (await exists(join(o.inputDir, name)))) {
        const stats = JSON.parse(await readFile(statsPath, 'utf8')) as { successes?: unknown };
        const size = Number(stats.successes);
        if (!Number.isInteger(size) || size < 0) throw new UserError(`reshard: ${statsPath}: "successes" is not a sample count`);
        table[name] = size;
      }
    }
    if (name in table) {
      shards.push({ shardId: id, dataStart: offset, size: table[name]! });
      offset += table[name]!;
    } else {
      log('debug', `missing shard ${name}`);
      missing++;
    }
  }
  if (missing) log('warn', `${missing} shards were missing; use -v to see the list`);
  if (!shards.length) throw new UserError(`reshard: ${o.inputDir}: no input shard has both its tar and its stats file`);
  const totalData = offset;
  log('info', `found a total of ${shards.length} shards with ${totalData} examples`);
  if (blurMap) {
    const unmapped = shards.filter((s) => !blurMap.has(formatShardName(o.shardFormat, s.shardId)));
    for (const s of unmapped) log('debug', `could not find parquet for shard ${formatShardName(o.shardFormat, s.shardId)}`);
    if (unmapped.length) log('warn', `could not find parquets for ${unmapped.length} shards; use -v to see the list`);
  }
  if (o.writeShardTable && !hadTable && !o.dryRun) await writeFileAtomic(tablePath, new TextEncoder().encode(JSON.stringify(table)));

  // 2. subset (checked before anything in the output directory is touched)
  const subsetBytes = new Uint8Array(await readFile(o.subsetFile).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`reshard: --subset-file ${o.subsetFile}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  }));
  const subsetWords = decodeSubsetWords(subsetBytes, o.subsetFile);
  if (!isSortedWords(subsetWords)) throw new UserError(`reshard: ${o.subsetFile}: the uids are not sorted (np.sort them, or write the file with dcw filter / dcw uids encode)`);
  const subset = new SubsetIndex(subsetWords);
  log('info', `selecting a subset of ${subset.size} examples`);

  // 3. output directory
  if (!o.dryRun) {
    await mkdir(o.outputDir, { recursive: true });
    const entries = await readdir(o.outputDir, { withFileTypes: true });
    if (entries.length && !o.overwrite) throw new UserError(`reshard: refusing to overwrite non-empty directory ${o.outputDir}; skip this check by passing --overwrite`);
    for (const e of entries) if (e.isFile() || e.isSymbolicLink()) await rm(join(o.outputDir, e.name));
    await copyFile(o.subsetFile, join(o.outputDir, 'sample_ids.npy'));
  }

  // 4. workers: one runs here; several run in worker threads (one task each), so they use several cores
  const numWorkers = Math.min(o.numWorkers, shards.length);
  const tasks = planTasks(shards, numWorkers);
  const state: ReshardState = { processed_count: 0, output_count: 0, blur_count: 0, blur_time: 0, output_shard_count: 0, worker_success: 0 };
  const errors: string[] = [];
  let bytesRead = 0;
  let bytesWritten = 0;
  const params = (w: number, task: Shard[]): TaskParams => ({
    worker: w, shards: task, inputDir: o.inputDir, outputDir: o.outputDir, shardFormat: o.shardFormat, shardSize: o.shardSize,
    shuffleBufsize: o.shuffleBufsize, dryRun: Boolean(o.dryRun),
    // the official workers look boxes up only when a map is given, and only then apply or inject them
    blur: blurMap ? {
      parquets: task.map((s) => blurMap.get(formatShardName(o.shardFormat, s.shardId)) ?? null),
      apply: Boolean(o.applyBlur), inject: Boolean(o.injectBlurMetadata), webpQuality,
    } : undefined,
  });
  let results: TaskResult[];
  try {
    if (tasks.length === 1) {
      results = [await runTask(params(0, tasks[0]!), subset, log)];
    } else {
      const shared = new SharedArrayBuffer(subsetWords.byteLength);
      new Uint32Array(shared).set(subsetWords);
      results = await runInThreads(tasks.map((task, w) => params(w, task)), shared, log);
    }
  } catch (err) {
    // nothing half-done stays behind: every worker's temporary shards go
    if (!o.dryRun) {
      for (const name of await readdir(o.outputDir)) if (TEMP_SHARD.test(name)) await rm(join(o.outputDir, name), { force: true });
    }
    throw err;
  }
  for (const r of results) {
    state.processed_count += r.processed;
    state.output_count += r.outputCount;
    state.worker_success++;
    state.blur_count += r.blurCount;
    state.blur_time += r.blurTime;
    errors.push(...r.errors);
    bytesRead += r.bytesRead;
    bytesWritten += r.bytesWritten;
  }
  const workerShards = results.map((r) => r.outputs);

  // 5. number the output shards in worker order and write their stats
  if (!o.dryRun) {
    for (const outs of workerShards) {
      for (const out of outs) {
        const index = state.output_shard_count++;
        await rename(out.temp, join(o.outputDir, formatShardName(o.outputShardFormat, index)));
        await writeFileAtomic(join(o.outputDir, formatShardName(o.outputShardStatsFormat, index)), new TextEncoder().encode(pyJsonDumps({ successes: out.count })));
      }
    }
  } else {
    state.output_shard_count = 0;
  }
  const seconds = (performance.now() - started) / 1000;
  log('info', `processed ${state.processed_count} images in ${seconds.toFixed(3)}s (${(state.processed_count / seconds).toFixed(2)} images/sec)`);
  if (state.processed_count !== totalData) log('error', `expected ${totalData} samples but found ${state.processed_count}`);
  log('info', `output ${state.output_count} images`);
  const notFound = subset.size - state.output_count;
  if (notFound !== 0) log('warn', `${notFound} images in the subset were not found in the input!`);
  log('info', `wrote ${state.output_shard_count} output shards`);

  if (!o.dryRun) {
    // meta.json: the official stringified args (argparse order), the counters, cwd
    const py = (v: unknown) => (v === undefined || v === null ? 'None' : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v));
    const pyCount = (n: number | undefined) => (n ? `[${Array(n).fill(1).join(', ')}]` : 'None');
    const meta = {
      input_dir: normalize(o.inputDir).replace(/\/$/, ''),
      output_dir: normalize(o.outputDir).replace(/\/$/, ''),
      subset_file: normalize(o.subsetFile),
      num_shards: py(opts.numShards),
      first_shard: py(o.firstShard),
      num_workers: py(numWorkers),
      shard_size: py(o.shardSize),
      shard_format: o.shardFormat,
      output_shard_format: o.outputShardFormat,
      shard_stats_format: o.shardStatsFormat,
      output_shard_stats_format: o.outputShardStatsFormat,
      shard_table: normalize(o.shardTable),
      write_shard_table: py(Boolean(o.writeShardTable)),
      shuffle_bufsize: py(o.shuffleBufsize),
      blur_metadata_map: o.blurMetadataMap ? normalize(o.blurMetadataMap) : 'None',
      apply_blur: py(Boolean(o.applyBlur)),
      inject_blur_metadata: py(Boolean(o.injectBlurMetadata)),
      reencode_webp_quality: py(o.reencodeWebpQuality),
      dry_run: py(Boolean(o.dryRun)),
      overwrite: py(Boolean(o.overwrite)),
      verbose: pyCount(o.verbose),
      quiet: pyCount(o.quiet),
      ...state,
      cwd: process.cwd(),
    };
    await writeFileAtomic(join(o.outputDir, 'meta.json'), new TextEncoder().encode(pyJsonDumps(meta)));
  }
  return {
    ...state, inputShards: shards.length, missingShards: missing, expectedSamples: totalData, subsetSize: subset.size, notFound,
    errors, seconds, bytesRead, bytesWritten,
  };
}

/**
 * Runs each task in a worker thread. The threads load TypeScript through tsx's register(), as bin/dcw.js
 * does (a worker does not inherit the parent's --import hooks). The first failure stops the others.
 */
async function runInThreads(tasks: TaskParams[], subset: SharedArrayBuffer, log: TaskLog): Promise<TaskResult[]> {
  const entry = new URL('./worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  const workers: Worker[] = [];
  try {
    return await Promise.all(tasks.map((params) => new Promise<TaskResult>((resolve, reject) => {
      const worker = new Worker(boot, { eval: true, workerData: { params, subset } satisfies WorkerInput });
      workers.push(worker);
      let settled = false;
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'log') log(m.level, m.message);
        else if (m.type === 'done') {
          settled = true;
          resolve(m.result);
        } else {
          settled = true;
          reject(new Error(m.message));
        }
      });
      worker.on('error', (err) => {
        settled = true;
        reject(err);
      });
      worker.on('exit', (code) => {
        if (!settled) reject(new Error(`reshard worker ${params.worker} stopped (exit code ${code})`));
      });
    })));
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
