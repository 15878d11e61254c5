/**
 * `dcw pool build`: the embedded default pool and its held-out evaluation suite, from pinned npm packages.
 *
 * Order of work: catalog → plan → render (parallel worker processes, content-addressed cache) → drop rows
 * whose picture failed to render or matches a test image → write shards, per-shard parquet and stats,
 * metadata parquet, ground truth, NOTICE, report → evaluation suite. Every file is written atomically
 * (temporary name, then rename), and everything is a pure function of the packages and the seed, so a build
 * interrupted anywhere and started again writes the same bytes; `build.json` is written last and marks a
 * finished build.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Float32, Int32, Int64, Table, Utf8, vectorFromArray, type DataType } from 'apache-arrow';
import { COMMONPOOL_SCHEMA, writeParquet } from '../../src/core/formats/parquet.ts';
import { writeSamples } from '../../src/core/formats/webdataset.ts';
import { decodeFingerprint, findMatches, type Fingerprint } from '../../src/core/pool/contamination.ts';
import { countRows, originalSize, planPool, type PlannedRow, type RenderSpec } from '../../src/core/pool/plan.ts';
import {
  POOL_FORMAT_VERSION, POOL_SEED, ROWS_PER_METADATA_FILE, SAMPLES_PER_SHARD, TRUTH_COLUMNS, computeKey, pythonJsonDumps, shardName,
  type SampleJson, type TruthRow,
} from '../../src/core/pool/schema.ts';
import { sha256Hex } from '../../src/core/pool/sha256.ts';
import { CaptionIndex, GENERIC_WORDS, classOccurrence, tasklistYaml } from '../../src/core/pool/tasks.ts';
import { writeFileAtomic } from '../io/streams.ts';
import { loadCatalog } from './catalog-load.ts';
import { loadEvalTasks, type EvalTaskData } from './eval-sources.ts';
import { HELD_OUT, PACKAGES, REPO_ROOT, noticeText } from './packages.ts';
import { blocked, cachePath, renderAll, renderKey, type RenderJob } from './render-pool.ts';
import { imageSize } from './render.ts';

export interface BuildOptions {
  out: string;
  evalOut: string;
  /** Render cache (default: node_modules/.cache/dcw-pool). */
  cache?: string;
  /** Fraction of every style and task to build (tests: 0.005). */
  fraction?: number;
  workers?: number;
  log?: (line: string) => void;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface BuildReport {
  format: string;
  seed: number;
  fraction: number;
  samples: number;
  shards: number;
  metadataFiles: string[];
  counts: Record<string, Record<string, number>>;
  skipped: { url: string; reason: string }[];
  droppedAsTestDuplicates: { url: string; evalUrl: string; task: string; mad: number; hamming: number }[];
  eval: { task: string; size: number; classes: number; classesInCaptions: number; captionsWithClassName: number; medianPerClass: number; minPerClass: number; genericClassNames: string[] }[];
  seconds: Record<string, number>;
}

export const DEFAULT_CACHE = join(REPO_ROOT, 'node_modules/.cache/dcw-pool');
const EVAL_SPEC: RenderSpec = { size: 64, bg: [255, 255, 255], format: 'png', quality: 100 };
const enc = new TextEncoder();

/** Removes temporary files that an interrupted run left behind (".name.pid-xxxx.part", "*.tmp"). */
function removeLeftovers(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) removeLeftovers(path);
    else if ((name.startsWith('.') && name.endsWith('.part')) || name.endsWith('.tmp')) rmSync(path, { force: true });
  }
}

function col(values: unknown[], type: DataType) {
  return vectorFromArray(values as never[], type);
}

const FACE_BBOXES_TYPE = COMMONPOOL_SCHEMA.fields.find((f) => f.name === 'face_bboxes')!.type;

export async function buildPool(options: BuildOptions): Promise<BuildReport> {
  const log = options.log ?? (() => {});
  const out = resolve(options.out);
  const evalOut = resolve(options.evalOut);
  const cache = resolve(options.cache ?? DEFAULT_CACHE);
  const fraction = options.fraction ?? 1;
  const seconds: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    seconds[name] = Math.round(performance.now() - t) / 1000;
    t = performance.now();
  };

  for (const dir of [out, evalOut]) {
    mkdirSync(dir, { recursive: true });
    removeLeftovers(dir);
  }
  // a finished build is marked by build.json; until this build finishes, neither folder claims one
  rmSync(join(out, 'build.json'), { force: true });
  rmSync(join(evalOut, 'build.json'), { force: true });

  const catalog = loadCatalog();
  const plan = planPool(catalog, { fraction, seed: POOL_SEED });
  const tasks = loadEvalTasks(catalog, { fraction, seed: POOL_SEED });
  lap('plan');
  log(`planned ${plan.rows.length} pool rows and ${tasks.reduce((n, t) => n + t.items.length, 0)} test images`);

  // ---- render
  const jobs: RenderJob[] = [];
  const skipped: { url: string; reason: string }[] = [];
  const rowFile: (string | undefined)[] = plan.rows.map((row, i) => {
    const reason = blocked(row.url.replace(/#\d+$/, ''));
    if (reason) {
      skipped.push({ url: row.url, reason });
      return undefined;
    }
    const file = cachePath(cache, renderKey(row.source.url, row.spec), row.spec);
    jobs.push({ id: i, ref: row.source.ref, aspect: row.source.aspect, spec: row.spec, out: file });
    return file;
  });
  const evalFiles: (string | undefined)[][] = tasks.map((task, ti) =>
    task.items.map((item, ii) => {
      const reason = blocked(item.url);
      if (reason) {
        skipped.push({ url: item.url, reason });
        return undefined;
      }
      const file = cachePath(cache, renderKey(item.url, EVAL_SPEC), EVAL_SPEC);
      jobs.push({ id: 1_000_000 * (ti + 1) + ii, ref: item.ref, aspect: item.aspect, spec: EVAL_SPEC, out: file });
      return file;
    }),
  );
  const result = await renderAll(jobs, { workers: options.workers, onProgress: (d, n) => options.onProgress?.('render', d, n) });
  for (const job of jobs) {
    const reason = result.failed.get(job.id);
    if (!reason) continue;
    if (job.id < 1_000_000) {
      skipped.push({ url: plan.rows[job.id]!.url, reason });
      rowFile[job.id] = undefined;
    } else {
      const ti = Math.floor(job.id / 1_000_000) - 1;
      skipped.push({ url: tasks[ti]!.items[job.id % 1_000_000]!.url, reason });
      evalFiles[ti]![job.id % 1_000_000] = undefined;
    }
  }
  // a failed render fails every row that shares its cache file (exact duplicates)
  const failedFiles = new Set(jobs.filter((j) => result.failed.has(j.id)).map((j) => j.out));
  plan.rows.forEach((row, i) => {
    if (rowFile[i] && failedFiles.has(rowFile[i]!)) {
      if (!result.failed.has(i)) skipped.push({ url: row.url, reason: 'same picture as a failed render' });
      rowFile[i] = undefined;
    }
  });
  lap('render');
  log(`rendered ${result.rendered} pictures (${result.cached} from the cache), ${result.failed.size} failed, ${result.crashes} renderer crashes`);

  // ---- no test image in the pool: drop pool rows whose picture matches a test picture
  const fp = (file: string): Fingerprint => decodeFingerprint(readFileSync(`${file}.fp`));
  const evalRefs: { task: number; item: number }[] = [];
  const evalFps: Fingerprint[] = [];
  tasks.forEach((task, ti) => task.items.forEach((_, ii) => {
    const f = evalFiles[ti]![ii];
    if (f) {
      evalRefs.push({ task: ti, item: ii });
      evalFps.push(fp(f));
    }
  }));
  const poolIdx: number[] = [];
  const poolFps: Fingerprint[] = [];
  const fpByFile = new Map<string, Fingerprint>();
  plan.rows.forEach((_, i) => {
    const f = rowFile[i];
    if (!f) return;
    let v = fpByFile.get(f);
    if (!v) {
      v = fp(f);
      fpByFile.set(f, v);
    }
    poolIdx.push(i);
    poolFps.push(v);
  });
  const matches = findMatches(poolFps, evalFps);
  const dropped: BuildReport['droppedAsTestDuplicates'] = [];
  const droppedRows = new Set<number>();
  for (const m of matches) {
    const i = poolIdx[m.pool]!;
    if (droppedRows.has(i)) continue;
    droppedRows.add(i);
    const ref = evalRefs[m.eval]!;
    dropped.push({ url: plan.rows[i]!.url, evalUrl: tasks[ref.task]!.items[ref.item]!.url, task: tasks[ref.task]!.def.key, mad: m.mad, hamming: m.hamming });
  }
  const rows: { row: PlannedRow; file: string }[] = [];
  plan.rows.forEach((row, i) => {
    if (rowFile[i] && !droppedRows.has(i)) rows.push({ row, file: rowFile[i]! });
  });
  lap('contamination');
  log(`dropped ${dropped.length} pool rows that match a test picture; ${rows.length} rows remain`);

  // ---- metadata files: 20 000 rows each, 32-hex stems, shards numbered in sorted stem order
  const chunks: { stem: string; rows: typeof rows }[] = [];
  for (let s = 0; s < rows.length; s += ROWS_PER_METADATA_FILE) {
    const part = rows.slice(s, s + ROWS_PER_METADATA_FILE);
    chunks.push({ stem: sha256Hex(`${POOL_FORMAT_VERSION}\nmetadata\n${part.map((r) => r.row.uid).join('\n')}`).slice(0, 32), rows: part });
  }
  chunks.sort((a, b) => (a.stem < b.stem ? -1 : 1));
  mkdirSync(join(out, 'metadata'), { recursive: true });
  mkdirSync(join(out, 'shards'), { recursive: true });
  const written = new Set<string>();
  const writeFile = async (path: string, bytes: Uint8Array | string | ReadableStream<Uint8Array>) => {
    await writeFileAtomic(path, typeof bytes === 'string' ? enc.encode(bytes) : bytes);
    written.add(path);
  };
  let shard = 0;
  const truth: TruthRow[] = [];
  let done = 0;
  for (const chunk of chunks) {
    const meta = { uid: [] as string[], url: [] as string[], text: [] as string[], w: [] as bigint[], h: [] as bigint[], sha: [] as string[] };
    for (let s = 0; s < chunk.rows.length; s += SAMPLES_PER_SHARD) {
      const part = chunk.rows.slice(s, s + SAMPLES_PER_SHARD);
      const samples: { __key__: string; files: Record<string, Uint8Array> }[] = [];
      const sp = { uid: [] as string[], caption: [] as string[], url: [] as string[], key: [] as string[], w: [] as number[], h: [] as number[], ow: [] as number[], oh: [] as number[], sha: [] as string[] };
      part.forEach(({ row, file }, idx) => {
        const bytes = readFileSync(file);
        const [w, h] = imageSize(bytes);
        const [ow, oh] = originalSize([w, h], row.truth.image_kind, row.truth.duplicate_of || row.uid);
        const sha = createHash('sha256').update(bytes).digest('hex');
        const key = computeKey(shard, idx);
        const json: SampleJson = {
          uid: row.uid, face_bboxes: [], caption: row.caption, url: row.url, key, status: 'success', error_message: null,
          width: w, height: h, original_width: ow, original_height: oh, exif: '{}', sha256: sha,
        };
        samples.push({ __key__: key, files: { jpg: bytes, json: enc.encode(pythonJsonDumps(json)), txt: enc.encode(row.caption) } });
        meta.uid.push(row.uid); meta.url.push(row.url); meta.text.push(row.caption); meta.w.push(BigInt(ow)); meta.h.push(BigInt(oh)); meta.sha.push(sha);
        sp.uid.push(row.uid); sp.caption.push(row.caption); sp.url.push(row.url); sp.key.push(key); sp.w.push(w); sp.h.push(h); sp.ow.push(ow); sp.oh.push(oh); sp.sha.push(sha);
        truth.push(row.truth);
      });
      const name = shardName(shard);
      await writeFile(join(out, 'shards', `${name}.tar`), writeSamples(samples));
      const n = part.length;
      const shardTable = new Table({
        uid: col(sp.uid, new Utf8()),
        face_bboxes: col(sp.uid.map(() => []), FACE_BBOXES_TYPE),
        caption: col(sp.caption, new Utf8()),
        url: col(sp.url, new Utf8()),
        key: col(sp.key, new Utf8()),
        status: col(sp.uid.map(() => 'success'), new Utf8()),
        error_message: col(sp.uid.map(() => null), new Utf8()),
        width: col(sp.w, new Int32()),
        height: col(sp.h, new Int32()),
        original_width: col(sp.ow, new Int32()),
        original_height: col(sp.oh, new Int32()),
        exif: col(sp.uid.map(() => '{}'), new Utf8()),
        sha256: col(sp.sha, new Utf8()),
      });
      await writeFile(join(out, 'shards', `${name}.parquet`), writeParquet(shardTable));
      const stats = {
        count: n, successes: n, failed_to_download: 0, failed_to_resize: 0,
        // fixed, so the bytes do not depend on the clock (img2dataset writes wall-clock times here)
        duration: 0, start_time: 0, end_time: 0, status_dict: { success: n },
      };
      await writeFile(join(out, 'shards', `${name}_stats.json`), pythonJsonDumps(stats));
      shard++;
      done += n;
      options.onProgress?.('write', done, rows.length);
    }
    const table = new Table({
      uid: col(meta.uid, new Utf8()),
      url: col(meta.url, new Utf8()),
      text: col(meta.text, new Utf8()),
      original_width: col(meta.w, new Int64()),
      original_height: col(meta.h, new Int64()),
      clip_b32_similarity_score: col(meta.uid.map(() => null), new Float32()),
      clip_l14_similarity_score: col(meta.uid.map(() => null), new Float32()),
      face_bboxes: col(meta.uid.map(() => []), FACE_BBOXES_TYPE),
      sha256: col(meta.sha, new Utf8()),
    });
    await writeFile(join(out, 'metadata', `${chunk.stem}.parquet`), writeParquet(table));
  }
  // ground truth, outside metadata/ so no filter reads it
  const truthTable = new Table(Object.fromEntries(TRUTH_COLUMNS.map((c) => [c, col(truth.map((r) => r[c]), new Utf8())])));
  mkdirSync(join(out, 'ground_truth'), { recursive: true });
  await writeFile(join(out, 'ground_truth', 'truth.parquet'), writeParquet(truthTable));
  await writeFile(join(out, 'NOTICE'), noticeText());
  lap('write pool');

  // ---- evaluation suite
  const index = new CaptionIndex(rows.map((r) => r.row.caption));
  const evalReport: BuildReport['eval'] = [];
  const listed: { def: EvalTaskData['def']; size: number; numClasses?: number; randomScore?: number }[] = [];
  for (const [ti, task] of tasks.entries()) {
    const dir = join(evalOut, task.def.key);
    mkdirSync(join(dir, 'test'), { recursive: true });
    const samples: { __key__: string; files: Record<string, Uint8Array> }[] = [];
    let k = 0;
    task.items.forEach((item, ii) => {
      const f = evalFiles[ti]![ii];
      if (!f) return;
      const files: Record<string, Uint8Array> = { png: readFileSync(f) };
      if (task.def.kind === 'retrieval') files.txt = enc.encode((item.label as string[]).map((c) => c.replace(/\n/g, '\\n')).join('\n'));
      else files.cls = enc.encode(String(item.label));
      samples.push({ __key__: `s${String(k++).padStart(7, '0')}`, files });
    });
    await writeFile(join(dir, 'test', '0.tar'), writeSamples(samples));
    await writeFile(join(dir, 'test', 'nshards.txt'), '1\n');
    let names: string[];
    if (task.def.kind === 'retrieval') {
      await writeFile(join(dir, 'dataset_type.txt'), 'retrieval\n');
      names = task.items.map((i) => (i.label as string[])[0]!);
      listed.push({ def: task.def, size: samples.length });
    } else {
      await writeFile(join(dir, 'classnames.txt'), `${task.classnames.join('\n')}\n`);
      await writeFile(join(dir, 'zeroshot_classification_templates.txt'), `${task.def.templates.join('\n')}\n`);
      names = task.classnames;
      listed.push({ def: task.def, size: samples.length, numClasses: task.classnames.length, randomScore: 1 / task.classnames.length });
    }
    const occ = classOccurrence(names, index).map((o) => o.captions).sort((a, b) => a - b);
    const any = new Set<number>();
    for (const c of names) for (const i of index.matches(c)) any.add(i);
    evalReport.push({
      task: task.def.key, size: samples.length, classes: names.length,
      classesInCaptions: occ.filter((n) => n > 0).length,
      captionsWithClassName: any.size,
      medianPerClass: occ[occ.length >> 1] ?? 0, minPerClass: occ[0] ?? 0,
      genericClassNames: names.filter((c) => GENERIC_WORDS.includes(c.toLowerCase())),
    });
  }
  await writeFile(join(evalOut, 'tasklist.yml'), tasklistYaml(listed));
  await writeFile(join(evalOut, 'NOTICE'), noticeText());
  lap('write eval');

  const report: BuildReport = {
    format: POOL_FORMAT_VERSION, seed: POOL_SEED, fraction,
    samples: rows.length, shards: shard, metadataFiles: chunks.map((c) => `${c.stem}.parquet`),
    counts: countRows(truth), skipped, droppedAsTestDuplicates: dropped, eval: evalReport, seconds,
  };
  const stable = { ...report, seconds: undefined };
  await writeFile(join(out, 'pool-report.json'), `${JSON.stringify(stable, null, 2)}\n`);
  await writeFile(join(evalOut, 'learnability.json'), `${JSON.stringify({ heldOut: HELD_OUT, tasks: evalReport }, null, 2)}\n`);
  // remove files of an earlier, different build (e.g. more shards), then mark both folders finished
  for (const dir of [out, evalOut]) pruneUnwritten(dir, written, dir === out ? ['metadata', 'shards', 'ground_truth'] : tasks.map((t) => t.def.key));
  const sums = (dir: string) => [...written].filter((p) => p.startsWith(dir + '/')).sort().map((p) => `${createHash('sha256').update(readFileSync(p)).digest('hex')}  ${relative(dir, p)}`).join('\n');
  await writeFileAtomic(join(out, 'build.json'), enc.encode(`${JSON.stringify({ format: POOL_FORMAT_VERSION, seed: POOL_SEED, fraction, samples: rows.length, packages: PACKAGES.map((p) => `${p.name}@${p.version}`), sha256: sums(out).split('\n') }, null, 2)}\n`));
  await writeFileAtomic(join(evalOut, 'build.json'), enc.encode(`${JSON.stringify({ format: POOL_FORMAT_VERSION, seed: POOL_SEED, fraction, tasks: listed.map((l) => l.def.key), sha256: sums(evalOut).split('\n') }, null, 2)}\n`));
  return report;
}

function pruneUnwritten(root: string, written: Set<string>, subdirs: string[]): void {
  for (const sub of subdirs) {
    const dir = join(root, sub);
    if (!existsSync(dir)) continue;
    const walk = (d: string) => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (!written.has(p)) rmSync(p, { force: true });
      }
    };
    walk(dir);
  }
}

/** Whether `dir` holds a finished build (build.json is written last). */
export function isBuiltPool(dir: string): boolean {
  return existsSync(join(dir, 'build.json'));
}

