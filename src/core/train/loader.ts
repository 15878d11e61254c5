/**
 * The training data loader: webdataset shards → shuffled, augmented Float32 CHW batches, as open_clip 2.16.1's
 * `get_wds_dataset` with `--dataset-resampled` (what DataComp's train.py always passes):
 *
 *   resampled shards (with replacement, optionally weighted) → every sample of each visited shard in order
 *   → sample shuffle buffer (webdataset `shuffle(bufsize, initial)`) → drop samples without caption or image
 *   → decode (RGB) → RandomResizedCrop + normalise → batches of `batchSize`.
 *
 * Each epoch (= checkpoint) starts a fresh pipeline seeded by (seed, epoch), as open_clip re-creates its
 * iterator per epoch with `ResampledShards2(deterministic=True, epoch=…)`. Randomness is our `Rng`, not
 * Python's, so the sample order differs from open_clip's while following the same rules.
 *
 * Determinism and exact resume: the order in which samples are read and handed out depends only on the seed,
 * the epoch and the shard sizes, so it is simulated on indices alone (`SampleOrder`), without bytes. A
 * position is (epoch, step, `emitted` = samples taken from the shuffle buffer so far this epoch); resuming
 * replays the index simulation to that point and re-reads, from the shards, just the samples that were in the
 * buffer. Each sample's augmentation draws from an Rng seeded by (seed, epoch, its emission number), so the
 * same position gives the same batches whatever happened before.
 *
 * Memory is bounded by the shuffle buffer: at most `size` encoded samples (only the image and txt members
 * are kept), plus one batch of decoded pixels.
 *
 * Buffer sizes: open_clip's 5000 / 1000. When the pool holds fewer samples than the buffer, the buffer is cut
 * to the pool's size (and `initial` to at most that), so that it does not hold several copies of the same
 * sample (resampling would otherwise fill it with repeats of a small shard) — see `effectiveShuffle`.
 */
import { FormatError } from '../formats/errors.ts';
import type { ImageCodec } from '../formats/image.ts';
import { readSamples, type WdsSample } from '../formats/webdataset.ts';
import { Rng } from '../util/random.ts';
import { normalizeChw, trainPixelsInto } from './augment.ts';
import type { ShuffleBuffer } from './scales.ts';

/** A shard and how many webdataset samples it holds (from `{n:08d}_stats.json` "successes", or counted). */
export interface ShardInfo {
  name: string;
  samples: number;
  /** Relative sampling weight (open_clip `--train-data-upsampling-factors`); default 1. */
  weight?: number;
}

/** Where shards come from: files in Node (server/train/shard-store.ts), IndexedDB in browsers. */
export interface ShardStore {
  listShards(): Promise<ShardInfo[]>;
  openShard(name: string): Promise<ReadableStream<Uint8Array>>;
}

/** Where the loader stands: resume from it to get exactly the batches that would have followed. */
export interface LoaderPosition {
  epoch: number;
  /** Batches produced so far in this epoch. */
  step: number;
  /** Samples taken from the shuffle buffer so far in this epoch (dropped ones included). */
  emitted: number;
}

/** A sample's identity: the n-th shard visit of the epoch, which shard, which sample of it. */
export interface SampleRef {
  /** Read order in the epoch (0, 1, 2…). */
  seq: number;
  visit: number;
  shard: number;
  index: number;
}

/** open_clip's image extensions in `rename(image="jpg;png;jpeg;webp")` order. */
export const TRAIN_IMAGE_EXTENSIONS = ['jpg', 'png', 'jpeg', 'webp'] as const;
const KEPT_EXTENSIONS = new Set<string>([...TRAIN_IMAGE_EXTENSIONS, 'txt']);

/** 64-bit seed for one random stream of a run: SplitMix-style mixing of (seed, epoch, stream, index). */
export function streamSeed(seed: number, epoch: number, stream: number, index = 0): bigint {
  const mask = (1n << 64n) - 1n;
  let h = BigInt.asUintN(64, BigInt(seed));
  for (const part of [epoch, stream, index]) {
    h = (h ^ BigInt.asUintN(64, BigInt(part))) & mask;
    h = BigInt.asUintN(64, (h ^ (h >> 30n)) * 0xbf58476d1ce4e5b9n);
    h = BigInt.asUintN(64, (h ^ (h >> 27n)) * 0x94d049bb133111ebn);
    h = h ^ (h >> 31n);
  }
  return h;
}

const STREAM_SHARDS = 1;
const STREAM_SHUFFLE = 2;
const STREAM_AUGMENT = 3;

/** The shuffle buffer used for a pool of `poolSamples` (see the file comment). */
export function effectiveShuffle(buffer: ShuffleBuffer, poolSamples: number): ShuffleBuffer {
  const size = Math.max(1, Math.min(buffer.size, poolSamples));
  return { size, initial: Math.max(1, Math.min(buffer.initial, size)) };
}

/**
 * The epoch's read and emission order on indices alone. Shards are drawn with replacement by weight
 * (ResampledShards); the shuffle follows webdataset 0.2's `_shuffle`: each incoming sample is added, one more
 * is read while the buffer is below `size`, and once it holds `initial` samples a random one is handed out
 * (swapped with the last and popped).
 */
export class SampleOrder {
  private readonly shardRng: Rng;
  private readonly shuffleRng: Rng;
  private readonly cumulative: number[];
  private readonly total: number;
  readonly buffer: SampleRef[] = [];
  /** Samples read so far (the next read's `seq`). */
  read = 0;
  /** Samples handed out so far. */
  emitted = 0;
  private visit = -1;
  private shard = -1;
  private index = 0;

  constructor(
    private readonly shards: readonly ShardInfo[],
    readonly shuffle: ShuffleBuffer,
    seed: number,
    epoch: number,
  ) {
    if (!shards.some((s) => s.samples > 0)) throw new RangeError('no shard holds any sample');
    this.shardRng = new Rng(streamSeed(seed, epoch, STREAM_SHARDS));
    this.shuffleRng = new Rng(streamSeed(seed, epoch, STREAM_SHUFFLE));
    let acc = 0;
    this.cumulative = shards.map((s) => {
      const w = s.weight ?? 1;
      if (!(w >= 0 && Number.isFinite(w))) throw new RangeError(`shard ${s.name} has weight ${w}`);
      acc += s.samples > 0 ? w : 0; // an empty shard is never worth a visit
      return acc;
    });
    this.total = acc;
    if (!(this.total > 0)) throw new RangeError('all shard weights are 0');
  }

  /** The next sample read from the resampled shard stream (never ends). */
  private nextRead(): SampleRef {
    while (this.shard < 0 || this.index >= this.shards[this.shard]!.samples) {
      const u = this.shardRng.next() * this.total;
      let s = this.cumulative.findIndex((c) => u < c);
      if (s < 0) s = this.cumulative.length - 1;
      this.visit++;
      this.shard = s;
      this.index = 0;
    }
    return { seq: this.read++, visit: this.visit, shard: this.shard, index: this.index++ };
  }

  /**
   * Hands out the next sample. `onRead` sees every sample as it enters the buffer (the real loader fetches
   * its bytes then).
   */
  async next(onRead?: (ref: SampleRef) => Promise<void> | void): Promise<SampleRef> {
    for (;;) {
      const a = this.nextRead();
      this.buffer.push(a);
      if (onRead) await onRead(a);
      if (this.buffer.length < this.shuffle.size) {
        const b = this.nextRead();
        this.buffer.push(b);
        if (onRead) await onRead(b);
      }
      if (this.buffer.length >= this.shuffle.initial) {
        const k = this.shuffleRng.int(this.buffer.length);
        const picked = this.buffer[k]!;
        this.buffer[k] = this.buffer[this.buffer.length - 1]!;
        this.buffer.pop();
        this.emitted++;
        return picked;
      }
    }
  }

  /** Advances without bytes to `emitted` hand-outs (for resuming). */
  async skipTo(emitted: number): Promise<void> {
    while (this.emitted < emitted) await this.next();
  }

  /** Where reading stands: the current visit, its shard and the next sample index in it. */
  get cursor(): { visit: number; shard: number; index: number } {
    return { visit: this.visit, shard: this.shard, index: this.index };
  }
}

export interface LoaderOptions {
  store: ShardStore;
  codec: ImageCodec;
  batchSize: number;
  /** Side of the square training crop. */
  imageSize: number;
  seed: number;
  sampleShuffle: ShuffleBuffer;
  /** Where to start; default the beginning of epoch 0. */
  start?: LoaderPosition;
  /** Called for a dropped sample (no caption, no image, undecodable), as open_clip's log_and_continue. */
  onDrop?: (key: string, shard: string, reason: string) => void;
}

export interface TrainBatch {
  /**
   * The augmented crops as uint8, batchSize × 3 × imageSize × imageSize, CHW per sample: training uploads these
   * (a quarter of the float32 bytes) and normalises on the backend (Backend.pixels with augment.ts PIXEL_TABLE).
   */
  pixels: Uint8Array;
  /** The same normalised (ToTensor + Normalize, float32), computed on first access. */
  readonly images: Float32Array;
  /** The captions (`txt`), for the tokenizer. */
  texts: string[];
  /** `__key__` of each sample. */
  keys: string[];
  /** The position after this batch: resume from it to continue. */
  position: LoaderPosition;
}

interface Fetched {
  key: string;
  shard: string;
  files: Map<string, Uint8Array>;
}

/** Reads one shard visit sequentially: samples must be asked for in increasing index order. */
class VisitReader {
  private readonly iterator: AsyncGenerator<WdsSample, void, undefined>;
  next = 0;

  constructor(
    readonly shard: ShardInfo,
    stream: ReadableStream<Uint8Array>,
  ) {
    this.iterator = readSamples(stream, shard.name, { extensions: KEPT_EXTENSIONS, duplicates: 'new-sample' });
  }

  async sample(index: number): Promise<WdsSample> {
    if (index < this.next) throw new Error(`internal: sample ${index} of ${this.shard.name} asked after ${this.next}`);
    for (;;) {
      const r = await this.iterator.next();
      if (r.done) throw new FormatError(this.shard.name, `holds ${this.next} samples, but the shard list says ${this.shard.samples}`);
      if (this.next++ === index) return r.value;
    }
  }

  async close(): Promise<void> {
    await this.iterator.return(undefined);
  }
}

/**
 * The training loader of one epoch. `batches(steps)` yields up to `steps` batches from the position given
 * (or the epoch start); start a new loader for the next epoch.
 */
export class TrainLoader {
  private order!: SampleOrder;
  private shards!: ShardInfo[];
  private readonly bytes = new Map<number, Fetched>();
  private reader: { visit: number; r: VisitReader } | undefined;
  private position: LoaderPosition;
  /** Most samples held in the shuffle buffer at once (for the bounded-memory check). */
  maxBuffered = 0;
  dropped = 0;

  constructor(private readonly options: LoaderOptions) {
    this.position = options.start ?? { epoch: 0, step: 0, emitted: 0 };
    if (!(Number.isInteger(options.batchSize) && options.batchSize > 0)) throw new RangeError(`batch size ${options.batchSize}`);
  }

  private async open(): Promise<void> {
    if (this.order) return;
    this.shards = await this.options.store.listShards();
    const pool = this.shards.reduce((a, s) => a + s.samples, 0);
    const shuffle = effectiveShuffle(this.options.sampleShuffle, pool);
    this.order = new SampleOrder(this.shards, shuffle, this.options.seed, this.position.epoch);
    if (this.position.emitted > 0) await this.restore();
  }

  /** Re-reads the samples that were in the buffer at the resume position, and reopens the current visit. */
  private async restore(): Promise<void> {
    await this.order.skipTo(this.position.emitted);
    const byVisit = new Map<number, SampleRef[]>();
    for (const ref of this.order.buffer) {
      const list = byVisit.get(ref.visit) ?? [];
      list.push(ref);
      byVisit.set(ref.visit, list);
    }
    const cursor = this.order.cursor;
    for (const [visit, refs] of [...byVisit].sort((a, b) => a[0] - b[0])) {
      refs.sort((a, b) => a.index - b.index);
      const reader = new VisitReader(this.shards[refs[0]!.shard]!, await this.options.store.openShard(this.shards[refs[0]!.shard]!.name));
      for (const ref of refs) this.keep(ref, await reader.sample(ref.index));
      if (visit === cursor.visit) this.reader = { visit, r: reader };
      else await reader.close();
    }
    // the visit being read may have nothing left in the buffer: skip its samples already read
    if (!this.reader || this.reader.visit !== cursor.visit) {
      const shard = this.shards[cursor.shard]!;
      const r = new VisitReader(shard, await this.options.store.openShard(shard.name));
      if (cursor.index > 0) await r.sample(cursor.index - 1);
      this.reader = { visit: cursor.visit, r };
    } else if (cursor.index > 0 && this.reader.r.next < cursor.index) {
      await this.reader.r.sample(cursor.index - 1);
    }
  }

  private keep(ref: SampleRef, sample: WdsSample): void {
    this.bytes.set(ref.seq, { key: sample.__key__, shard: this.shards[ref.shard]!.name, files: sample.files });
  }

  private async fetch(ref: SampleRef): Promise<void> {
    if (!this.reader || this.reader.visit !== ref.visit) {
      if (this.reader) await this.reader.r.close();
      const shard = this.shards[ref.shard]!;
      this.reader = { visit: ref.visit, r: new VisitReader(shard, await this.options.store.openShard(shard.name)) };
    }
    this.keep(ref, await this.reader.r.sample(ref.index));
    this.maxBuffered = Math.max(this.maxBuffered, this.bytes.size);
  }

  /** Lets go of the open shard (call when done with the loader). */
  async close(): Promise<void> {
    if (this.reader) await this.reader.r.close();
    this.reader = undefined;
    this.bytes.clear();
  }

  /** Yields up to `steps` batches, continuing from the current position. */
  async *batches(steps: number): AsyncGenerator<TrainBatch, void, undefined> {
    await this.open();
    const { batchSize, imageSize, codec, seed } = this.options;
    const plane = 3 * imageSize * imageSize;
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let finished = false;
    try {
      for (let s = 0; s < steps; s++) {
        const pixels = new Uint8Array(batchSize * plane);
        const texts: string[] = [];
        const keys: string[] = [];
        while (texts.length < batchSize) {
          const ref = await this.order.next((r) => this.fetch(r));
          const emission = this.order.emitted - 1;
          const got = this.bytes.get(ref.seq)!;
          this.bytes.delete(ref.seq);
          const drop = (reason: string) => {
            this.dropped++;
            this.options.onDrop?.(got.key, got.shard, reason);
          };
          // open_clip's filter_no_caption_or_no_image, then decoding with log_and_continue
          const ext = TRAIN_IMAGE_EXTENSIONS.find((e) => got.files.has(e));
          const txt = got.files.get('txt');
          if (!ext || !txt) {
            drop(!txt ? 'no caption (txt)' : 'no image');
            continue;
          }
          let text: string;
          try {
            text = decoder.decode(txt);
          } catch {
            drop('caption is not UTF-8');
            continue;
          }
          let image;
          try {
            image = await codec.decode(got.files.get(ext)!, `${got.shard}:${got.key}.${ext}`);
          } catch (err) {
            drop((err as Error).message);
            continue;
          }
          const rng = new Rng(streamSeed(seed, this.position.epoch, STREAM_AUGMENT, emission));
          trainPixelsInto(image, imageSize, rng, pixels, texts.length * plane);
          texts.push(text);
          keys.push(got.key);
        }
        this.position = { epoch: this.position.epoch, step: this.position.step + 1, emitted: this.order.emitted };
        yield trainBatch(pixels, imageSize * imageSize, texts, keys, { ...this.position });
      }
      finished = true;
    } finally {
      if (!finished) {
        // left early (or failed): let go of the open shard and the buffer; a later call restores the position
        if (this.reader) await this.reader.r.close();
        this.reader = undefined;
        this.bytes.clear();
        this.order = undefined as unknown as SampleOrder;
      }
    }
  }
}

function trainBatch(pixels: Uint8Array, plane: number, texts: string[], keys: string[], position: LoaderPosition): TrainBatch {
  let images: Float32Array | undefined;
  return {
    pixels, texts, keys, position,
    get images() {
      images ??= normalizeChw(pixels, plane);
      return images;
    },
  };
}
