/**
 * One resharder worker's task (resharder.py's `process_task`): read its run of input shards in order, keep
 * the samples whose uid is in the subset (as many times as it occurs there), and write them to output
 * shards of --shard-size samples under temporary names. Runs in the calling thread (one worker) or in a
 * worker thread (worker.ts), so several workers use several cores.
 *
 * Output is written in large batches: each member's header, body and padding are copied into a 4 MiB
 * buffer that goes to the file in one write, instead of three small writes (and three promise round
 * trips) per member. The bytes are those of TarWriter (formats/tar.ts): encodeTarHeader with
 * webdataset's defaults, the body, zero padding to 512, then tarEnd.
 */
import { join } from 'node:path';
import { encodeTarHeader, tarEnd, WEBDATASET_TAR_DEFAULTS } from '../../src/core/formats/tar.ts';
import { readSamples, sampleEntries, type WdsSample } from '../../src/core/formats/webdataset.ts';
import { pyJsonDumps, pyJsonLoads, type PyJson } from '../../src/core/eval/pyjson.ts';
import { blurBoundingBoxes } from '../../src/core/reshard/blur.ts';
import { formatShardName, SubsetIndex, type Shard } from '../../src/core/reshard/plan.ts';
import { Rng } from '../../src/core/util/random.ts';
import { SharpImageCodec } from '../io/image-codec.ts';
import { fileReadStream, fileWriteStream } from '../io/streams.ts';
import { BlurBoxFinder } from './blur-boxes.ts';

/** --blur-metadata-map and what to do with the boxes it leads to. */
export interface BlurParams {
  /** Per shard of the task (same order), its metadata parquet, or null when the map names none. */
  parquets: (string | null)[];
  /** --apply-blur: blur the boxes and re-encode the picture as webp (replacing jpg). */
  apply: boolean;
  /** --inject-blur-metadata: write the boxes into the sample's json as face_bboxes. */
  inject: boolean;
  webpQuality: number;
}

export interface TaskParams {
  worker: number;
  shards: Shard[];
  inputDir: string;
  outputDir: string;
  shardFormat: string;
  shardSize: number;
  shuffleBufsize: number;
  dryRun: boolean;
  blur?: BlurParams;
}

export interface TaskOutput {
  temp: string;
  count: number;
}

export interface TaskResult {
  outputs: TaskOutput[];
  processed: number;
  outputCount: number;
  errors: string[];
  bytesRead: number;
  bytesWritten: number;
  blurCount: number;
  /** Seconds spent blurring and re-encoding. */
  blurTime: number;
}

export type TaskLog = (level: 'info' | 'warn' | 'error' | 'debug', message: string) => void;

const MAX_SHARD_BYTES = 3e9;
const BATCH_BYTES = 4 << 20;
const READ_CHUNK_BYTES = 4 << 20;

/** Per output sample, webdataset's TarWriter size accounting: header + body padded to 512 per member. */
function sampleTarBytes(sample: WdsSample): number {
  let n = 0;
  for (const [, data] of sample.files) n += 512 + Math.ceil(data.length / 512) * 512;
  return n;
}

/** The temporary name of output shard `index` of worker `worker` (renamed into place at the end). */
export function tempShardName(worker: number, index: number): string {
  return `.reshard-w${String(worker).padStart(3, '0')}-${String(index).padStart(6, '0')}.tar`;
}

/** Temporary files of an interrupted run: the shards above and their partial (".….part") files. */
export const TEMP_SHARD = /^\.{1,2}reshard-w\d{3}-\d{6}\.tar/;

/** One output shard: members batched into large writes to an atomic file stream. */
class BatchedShard {
  private buf = new Uint8Array(BATCH_BYTES);
  private at = 0;
  /** Archive bytes so far (what tarEnd pads). */
  private written = 0;
  private readonly sink: WritableStreamDefaultWriter<Uint8Array>;

  constructor(path: string, private readonly onBytes: (n: number) => void) {
    this.sink = fileWriteStream(path).getWriter();
  }

  private async send(chunk: Uint8Array): Promise<void> {
    await this.sink.ready;
    // errors surface through `ready` and close(); the per-write promise would only repeat them
    this.sink.write(chunk).catch(() => {});
    this.onBytes(chunk.length);
  }

  private async flush(): Promise<void> {
    if (!this.at) return;
    const chunk = this.buf.subarray(0, this.at);
    this.buf = new Uint8Array(BATCH_BYTES); // the sent one belongs to the file stream until written
    this.at = 0;
    await this.send(chunk);
  }

  private async put(bytes: Uint8Array): Promise<void> {
    this.written += bytes.length;
    if (bytes.length >= BATCH_BYTES / 4) {
      // a large body goes as it is (it is a fresh buffer from the tar reader, never reused)
      await this.flush();
      await this.send(bytes);
      return;
    }
    if (this.at + bytes.length > this.buf.length) await this.flush();
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  private async zeros(n: number): Promise<void> {
    this.written += n;
    if (this.at + n > this.buf.length) await this.flush();
    this.buf.fill(0, this.at, this.at + n);
    this.at += n;
  }

  async add(path: string, data: Uint8Array): Promise<void> {
    await this.put(encodeTarHeader({ path, size: data.length }, WEBDATASET_TAR_DEFAULTS));
    await this.put(data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) await this.zeros(pad);
  }

  async finish(): Promise<void> {
    await this.put(tarEnd(this.written));
    await this.flush();
    await this.sink.close();
  }

  async abort(reason: unknown): Promise<void> {
    await this.sink.abort(reason).catch(() => {});
  }
}

export async function runTask(p: TaskParams, subset: SubsetIndex, log: TaskLog): Promise<TaskResult> {
  const w = p.worker;
  const result: TaskResult = { outputs: [], processed: 0, outputCount: 0, errors: [], bytesRead: 0, bytesWritten: 0, blurCount: 0, blurTime: 0 };
  const outputs = result.outputs;
  let shard: BatchedShard | undefined;
  let count = 0;
  let size = 0;
  const fail = (message: string) => {
    result.errors.push(message);
    log('error', message);
  };
  const closeShard = async () => {
    if (!shard) return;
    await shard.finish();
    outputs[outputs.length - 1]!.count = count;
    shard = undefined;
  };
  const write = async (sample: WdsSample) => {
    if (p.dryRun) return;
    if (!shard || count >= p.shardSize || size >= MAX_SHARD_BYTES) {
      await closeShard();
      const temp = join(p.outputDir, tempShardName(w, outputs.length));
      outputs.push({ temp, count: 0 });
      shard = new BatchedShard(temp, (n) => (result.bytesWritten += n));
      count = 0;
      size = 0;
    }
    for (const entry of sampleEntries(sample)) await shard.add(entry.path, entry.data as Uint8Array);
    count++;
    size += sampleTarBytes(sample);
  };
  const rng = new Rng(w);
  const buffer: WdsSample[] = [];
  const emit = async (sample: WdsSample) => {
    if (p.shuffleBufsize <= 0) return write(sample);
    buffer.push(sample);
    if (buffer.length >= p.shuffleBufsize) {
      const k = rng.int(buffer.length);
      const picked = buffer[k]!;
      buffer[k] = buffer[buffer.length - 1]!;
      buffer.pop();
      await write(picked);
    }
  };
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const boxFinder = p.blur ? new BlurBoxFinder() : undefined;
  const codec = p.blur?.apply ? new SharpImageCodec() : undefined;
  /** process_example's blur step for a sample of the subset: its files as written, or null to drop it. */
  const applyBlur = async (files: Map<string, Uint8Array>, parquet: string, key: Uint32Array, uid: string, path: string, name: string) => {
    const found = await boxFinder!.find(parquet, key, uid, path);
    if (found && 'error' in found) {
      fail(found.error);
      return found.skip ? null : files;
    }
    if (!found?.boxes.length) return files;
    const out = new Map(files);
    if (p.blur!.apply) {
      const t0 = performance.now();
      const jpg = files.get('jpg');
      if (!jpg) throw new Error(`${name}: no jpg member to blur`);
      const image = await codec!.decode(jpg, `${name}.jpg`);
      out.set('webp', await codec!.encode(blurBoundingBoxes(image, found.boxes), { format: 'webp', quality: p.blur!.webpQuality }));
      out.delete('jpg');
      result.blurCount++;
      result.blurTime += (performance.now() - t0) / 1000;
    }
    if (p.blur!.inject) {
      // json.loads then dumps: Python's types (ints stay ints), key order kept, face_bboxes set or added
      const meta = pyJsonLoads(decoder.decode(files.get('json')!), { pyTypes: true });
      if (!(meta instanceof Map)) throw new Error(`${name}.json: not a JSON object`);
      meta.set('face_bboxes', found.boxes as PyJson);
      out.set('json', encoder.encode(pyJsonDumps(meta as Map<string, PyJson>)));
    }
    return out;
  };
  try {
    for (const [shardIndex, s] of p.shards.entries()) {
      const path = join(p.inputDir, formatShardName(p.shardFormat, s.shardId));
      const stream = fileReadStream(path, { chunkBytes: READ_CHUNK_BYTES }).pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          result.bytesRead += chunk.length;
          c.enqueue(chunk);
        },
      }));
      try {
        for await (const sample of readSamples(stream, path, { duplicates: 'new-sample' })) {
          const json = sample.files.get('json');
          if (!json) {
            fail(`missing json for ${path}/${sample.__key__}, skipping`);
            continue;
          }
          let uid: unknown;
          try {
            uid = (JSON.parse(decoder.decode(json)) as { uid?: unknown }).uid;
          } catch (err) {
            fail(`${path}/${sample.__key__}.json: ${(err as Error).message}`);
            continue;
          }
          const key = typeof uid === 'string' ? SubsetIndex.parseUid(uid) : undefined;
          if (!key) {
            fail(`${path}/${sample.__key__}.json: uid ${JSON.stringify(uid)} is not a 128-bit hex number`);
            continue;
          }
          const n = subset.count(key);
          let files = sample.files;
          const parquet = p.blur?.parquets[shardIndex];
          if (n > 0 && parquet) {
            // an exception here drops the sample, as process_example's caller logs and goes on
            let blurred: Map<string, Uint8Array> | null;
            try {
              blurred = await applyBlur(files, parquet, key, uid as string, path, `${path}/${sample.__key__}`);
            } catch (err) {
              blurred = null;
              fail(`${path}/${sample.__key__}: ${(err as Error).message}`);
            }
            if (!blurred) continue;
            files = blurred;
          }
          for (let j = 0; j < n; j++) {
            await emit({ __key__: `${uid as string}-${j}`, files });
            result.outputCount++;
          }
          result.processed++;
        }
      } catch (err) {
        // webdataset's handler logs and goes on with the next shard
        fail(`webdataset error: ${path}: ${(err as Error).message}`);
      }
    }
    while (buffer.length) {
      const k = rng.int(buffer.length);
      const picked = buffer[k]!;
      buffer[k] = buffer[buffer.length - 1]!;
      buffer.pop();
      await write(picked);
    }
    await closeShard();
  } catch (err) {
    await shard?.abort(err);
    throw err;
  }
  const expected = p.shards.reduce((n, s) => n + s.size, 0);
  if (result.processed !== expected) log('error', `worker ${w}: expected ${expected} samples but found ${result.processed}`);
  return result;
}
