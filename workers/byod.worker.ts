/**
 * The BYOD worker (comlink): imports image–text pairs (a folder, a table of image URLs, webdataset tars)
 * with src/core/pool/byod.ts, runs the contamination check against the evaluation suite `dcw serve` offers
 * under /eval/, records the user's decision on the matches, and merges a checked import into a stored pool as
 * extra shards and a metadata file. The page never touches the pictures' bytes except for thumbnails.
 */
import * as Comlink from 'comlink';
import { HttpEvalStore } from '../src/core/eval/http-store.ts';
import { FormatError } from '../src/core/formats/errors.ts';
import { ParquetFile } from '../src/core/formats/parquet.ts';
import { readSamples } from '../src/core/formats/webdataset.ts';
import {
  buildByodPool, fetchUrlInputs, findContamination, folderInputs, isUrlTable, prepareSamples, readEvalPictures, readTextTable,
  tarInputs, urlRows, type ByodInput, type ByodProblem, type EvalPicture,
} from '../src/core/pool/byod.ts';
import type { IngestPlan } from '../src/core/pool/ingest.ts';
import type { StoredSample } from '../src/core/pool/store.ts';
import {
  MAX_PROBLEMS, createImport, mergeRefusal, deleteImport, dropSamples, getImport, importSample, importSamples, listImports, putImport,
  type ImportKind, type ImportRecord,
} from './byod-store.ts';
import { IdbPoolStore, getPoolRecord } from './idb-pool-store.ts';
import { BrowserImageCodec } from './image-codec.ts';

export type { ImportRecord } from './byod-store.ts';

export interface ByodProgress {
  phase: string;
  done: number;
  total: number;
}

type OnProgress = (p: ByodProgress) => void;

/** A file handed over by the page, with its path inside the folder or drop (`photos/cat.jpg`). */
export interface PickedFile {
  path: string;
  file: File;
}

const codec = new BrowserImageCodec();
const TABLE = /\.(csv|tsv|jsonl|ndjson|parquet)$/i;
const IMAGE = /\.(jpe?g|png|webp|gif)$/i;
let evalCache: { url: string; pictures: Promise<EvalPicture[]> } | undefined;

function newId(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

async function bytesOf(file: File): Promise<Uint8Array> {
  return new Uint8Array(await file.arrayBuffer());
}

/** What a set of dropped or picked files is: tars, one table of image URLs, or a folder of pictures. */
async function kindOf(files: readonly PickedFile[]): Promise<ImportKind> {
  const visible = files.filter((f) => !f.path.split('/').some((p) => p.startsWith('.')));
  if (visible.some((f) => f.path.toLowerCase().endsWith('.tar'))) return 'tars';
  const tables = visible.filter((f) => TABLE.test(f.path));
  if (tables.length === 1 && !visible.some((f) => IMAGE.test(f.path))) return 'urls';
  return 'folder';
}

async function inputsOf(kind: ImportKind, files: readonly PickedFile[], onProgress?: OnProgress): Promise<{ inputs: ByodInput[]; problems: ByodProblem[]; viaServer?: number }> {
  const visible = files.filter((f) => !f.path.split('/').some((p) => p.startsWith('.')));
  if (kind === 'folder') {
    return folderInputs(visible.map((f) => ({ path: f.path, read: () => bytesOf(f.file) })));
  }
  if (kind === 'tars') {
    const inputs: ByodInput[] = [];
    const problems: ByodProblem[] = [];
    const tars = visible.filter((f) => f.path.toLowerCase().endsWith('.tar')).sort((a, b) => (a.path < b.path ? -1 : 1));
    for (const [i, t] of tars.entries()) {
      onProgress?.({ phase: `reading ${t.path}`, done: i, total: tars.length });
      const got = await tarInputs(t.file.stream() as ReadableStream<Uint8Array>, t.path);
      inputs.push(...got.inputs);
      problems.push(...got.problems);
    }
    return { inputs, problems };
  }
  const tableFile = visible.find((f) => TABLE.test(f.path));
  if (!tableFile) throw new Error('choose a .csv, .tsv, .jsonl or .parquet file with image URLs and captions');
  const table = await readTextTable(await bytesOf(tableFile.file), tableFile.path);
  if (!isUrlTable(table)) throw new FormatError(tableFile.path, `no image URL column (looked for url, image_url, img_url, any case; found ${table.names.map((n) => JSON.stringify(n)).join(', ')})`);
  const { rows, problems } = urlRows(table);
  const fetched = await fetchUrlInputs(rows, {
    origin: self.location.origin, base: self.location.href, concurrency: 8, proxy: new URL('/api/fetch', self.location.href).href,
    onProgress: (done, total) => onProgress?.({ phase: 'fetching pictures', done, total }),
  });
  return { inputs: fetched.inputs, problems: [...problems, ...fetched.problems], viaServer: fetched.viaProxy };
}

function evalUrl(): string {
  return new URL('/eval/', self.location.href).href;
}

async function evalPictures(onProgress?: OnProgress): Promise<EvalPicture[]> {
  const url = evalUrl();
  if (!evalCache || evalCache.url !== url) {
    const pictures = readEvalPictures(new HttpEvalStore(url), codec, { onProgress: (done, total) => onProgress?.({ phase: 'fingerprinting the evaluation suite', done, total }) });
    evalCache = { url, pictures };
    pictures.catch(() => {
      if (evalCache?.pictures === pictures) evalCache = undefined;
    });
  }
  try {
    return await evalCache.pictures;
  } catch (err) {
    if (err instanceof FormatError && err.file === 'tasklist.yml') {
      throw new Error(`no evaluation suite at ${url}: start the workbench with \`dcw serve --eval DIR\` (npm start serves data/eval); the imported data stays unchecked`);
    }
    throw err;
  }
}

async function requireImport(id: string): Promise<ImportRecord> {
  const record = await getImport(id);
  if (!record) throw new Error('no such import (deleted in another tab?)');
  return record;
}

/** Every uid in the pool's listed metadata files (the rows Inspect and the filters see). */
async function poolUids(store: IdbPoolStore, plan: IngestPlan): Promise<Set<string>> {
  const out = new Set<string>();
  for (const m of plan.listing.metadata) {
    const source = await store.openFile(m.path);
    if (!source) continue;
    const uids = (await (await ParquetFile.open(source, m.path)).read({ columns: ['uid'] })).getChild('uid');
    for (let i = 0; i < (uids?.length ?? 0); i++) out.add(String(uids!.get(i)));
  }
  return out;
}

const enc = new TextEncoder();

const api = {
  async imports(): Promise<ImportRecord[]> {
    return listImports();
  },

  /**
   * Imports picked or dropped files: `kind` 'auto' tells tars, a table of image URLs and a folder of pictures
   * apart. Pictures are decoded and checked here; what cannot be used is listed on the import.
   */
  async importFiles(files: PickedFile[], kind: ImportKind | 'auto', name: string, onProgress?: OnProgress): Promise<ImportRecord> {
    if (!files.length) throw new Error('no files were chosen');
    const k = kind === 'auto' ? await kindOf(files) : kind;
    onProgress?.({ phase: 'reading the files', done: 0, total: files.length });
    const found = await inputsOf(k, files, onProgress);
    if (!found.inputs.length && !found.problems.length) {
      throw new Error(k === 'folder' ? `${name}: no pictures (.jpg, .png, .webp, .gif) found` : `${name}: nothing to import`);
    }
    const { samples, problems } = await prepareSamples(found.inputs, codec, {
      onProgress: (done, total) => onProgress?.({ phase: 'checking the pictures', done, total }),
    });
    const all = [...found.problems, ...problems];
    const record: ImportRecord = {
      id: newId(), name, kind: k, createdAt: Date.now(), samples: samples.length,
      bytes: samples.reduce((n, s) => n + s.image.byteLength, 0),
      problems: all.slice(0, MAX_PROBLEMS), problemCount: all.length, check: null, decision: null, merged: null,
      ...(found.viaServer ? { viaServer: found.viaServer } : {}),
    };
    onProgress?.({ phase: 'storing', done: 0, total: samples.length });
    await createImport(record, samples);
    return record;
  },

  /** The contamination check against the evaluation suite under /eval/. */
  async check(id: string, onProgress?: OnProgress): Promise<ImportRecord> {
    const record = await requireImport(id);
    if (record.merged) throw new Error(`“${record.name}” is already merged; it was checked before`);
    const pictures = await evalPictures(onProgress);
    onProgress?.({ phase: 'comparing', done: 0, total: record.samples });
    const samples = await importSamples(id);
    const matches = findContamination(samples, pictures).map((m) => ({ ...m, order: samples.find((s) => s.uid === m.uid)!.order }));
    const evalImages: NonNullable<ImportRecord['check']>['evalImages'] = {};
    for (const m of matches) {
      const p = pictures.find((e) => e.shard === m.evalShard && e.key === m.evalKey)!;
      evalImages[`${m.evalShard}:${m.evalKey}`] = { bytes: p.image, ext: p.imageExt };
    }
    const checked: ImportRecord = {
      ...record,
      check: { at: Date.now(), evalUrl: evalUrl(), tasks: [...new Set(pictures.map((p) => p.task))], evalPictures: pictures.length, matches, evalImages },
      decision: null,
    };
    await putImport(checked);
    onProgress?.({ phase: 'done', done: record.samples, total: record.samples });
    return checked;
  },

  /** Drops the matched samples from the import, or keeps them knowingly; either is recorded. */
  async decide(id: string, action: 'dropped' | 'kept'): Promise<ImportRecord> {
    const record = await requireImport(id);
    if (!record.check) throw new Error(`“${record.name}” has not been checked yet`);
    if (record.merged) throw new Error(`“${record.name}” is already merged`);
    if (record.decision) throw new Error(`the matches were already ${record.decision.action}`);
    const orders = [...new Set(record.check.matches.map((m) => m.order))];
    const uids = [...new Set(record.check.matches.map((m) => m.uid))];
    const next: ImportRecord = { ...record, decision: { action, at: Date.now(), uids } };
    if (action === 'dropped') {
      const dropped = await Promise.all(orders.map((o) => importSample(id, o)));
      next.samples -= orders.length;
      next.bytes -= dropped.reduce((n, s) => n + (s?.image.byteLength ?? 0), 0);
      await dropSamples(next, orders);
    } else {
      await putImport(next);
    }
    return next;
  },

  /**
   * Adds a checked import to a stored pool: new shards after the pool's last one, one metadata file, the
   * shards' stats and parquet, and a report of the import and its check (`byod/<id>.json`). A uid the pool
   * already has stops the merge with a one-line error naming it. The pool's plan is written last: until
   * then nothing of the merge is listed, so a merge cut off half-way leaves the pool as it was.
   */
  async merge(id: string, poolId: string, onProgress?: OnProgress): Promise<ImportRecord> {
    const record = await requireImport(id);
    const refusal = mergeRefusal(record);
    if (refusal) throw new Error(refusal);
    const pool = await getPoolRecord(poolId);
    if (!pool) throw new Error('no such pool');
    if (pool.state !== 'complete') throw new Error(`“${pool.name}” is ${pool.state === 'error' ? 'failed' : pool.state}: merge into it once its ingest is complete`);
    // The ingest worker holds this lock while it writes a pool: no merge while an ingest runs.
    return navigator.locks.request(`dcw-ingest-${poolId}`, async () => {
      const store = await IdbPoolStore.open(poolId);
      try {
        const plan = await store.readPlan<IngestPlan>();
        if (!plan) throw new Error(`“${pool.name}” has no stored listing`);
        onProgress?.({ phase: 'checking uids against the pool', done: 0, total: record.samples });
        const existing = await poolUids(store, plan);
        const samples = await importSamples(id);
        const clash = samples.find((s) => existing.has(s.uid));
        if (clash) throw new Error(`uid ${clash.uid} (${clash.where}) is already in “${pool.name}”: remove that pair from the import, or merge it into another pool`);
        const firstShard = plan.listing.shards.reduce((n, s) => Math.max(n, s.shard + 1), 0);
        const build = await buildByodPool(samples, { firstShard });
        let done = 0;
        for (const shard of build.shards) {
          const stored: StoredSample[] = [];
          for await (const s of readSamples(new Blob([shard.tar as Uint8Array<ArrayBuffer>]).stream(), shard.path)) {
            const uid = shard.samples.find((x) => x.key === s.__key__)!.uid;
            stored.push({ uid, key: s.__key__, shard: shard.shard, files: Object.fromEntries(s.files) });
          }
          await store.putShard({ shard: shard.shard, path: shard.path, samples: stored.length, bytes: shard.tar.byteLength }, stored);
          done += stored.length;
          onProgress?.({ phase: 'writing shards', done, total: samples.length });
        }
        for (const f of build.shardFiles) await store.putFile(f.path, [f.bytes]);
        await store.putFile(build.metadata.path, [build.metadata.bytes]);
        const reportPath = `byod/${id}.json`;
        const report = {
          import: record.name, kind: record.kind, samples: samples.length, problems: record.problemCount,
          uid_rule: 'sha256(sha256_hex(original image bytes) + "\\n" + caption)[:32], or the uid a webdataset sample carried',
          contamination_check: record.check && {
            at: new Date(record.check.at).toISOString(), eval: record.check.evalUrl, tasks: record.check.tasks, eval_pictures: record.check.evalPictures,
            matches: record.check.matches.map(({ order: _order, ...m }) => m),
          },
          decision: record.decision && { action: record.decision.action, at: new Date(record.decision.at).toISOString(), uids: record.decision.uids },
          shards: build.shards.map((s) => s.path), metadata: build.metadata.path,
        };
        const reportBytes = enc.encode(`${JSON.stringify(report, null, 2)}\n`);
        await store.putFile(reportPath, [reportBytes]);
        const listing = plan.listing;
        await store.writePlan<IngestPlan>({
          ...plan,
          listing: {
            metadata: [...listing.metadata, { path: build.metadata.path, bytes: build.metadata.bytes.byteLength }],
            shards: [...listing.shards, ...build.shards.map((s) => ({ path: s.path, shard: s.shard, bytes: s.tar.byteLength, samples: s.samples.length }))],
            extras: [...listing.extras, ...build.shardFiles.map((f) => ({ path: f.path, bytes: f.bytes.byteLength })), { path: reportPath, bytes: reportBytes.byteLength }],
          },
        });
        const merged: ImportRecord = {
          ...record,
          merged: { poolId, poolName: pool.name, at: Date.now(), shards: build.shards.map((s) => s.path), metadata: build.metadata.path, samples: samples.length },
        };
        await putImport(merged);
        return merged;
      } finally {
        store.close();
      }
    }) as unknown as Promise<ImportRecord>;
  },

  /** A staged sample's stored picture (JPEG), for a thumbnail. */
  async sampleImage(id: string, order: number): Promise<Uint8Array | null> {
    return (await importSample(id, order))?.image ?? null;
  },

  async remove(id: string): Promise<void> {
    await deleteImport(id);
  },
};

export type ByodWorkerApi = typeof api;

Comlink.expose(api);
