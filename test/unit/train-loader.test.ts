// The training loader on a small embedded pool build (re-cut into shards of different sizes): resampled shards,
// the webdataset shuffle rule, determinism, exact resume, bounded memory, dropped samples; and the image
// transforms (Pillow's bicubic against ImageMagick, RandomResizedCrop bounds, CLIP normalisation).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readSamples, writeSamples, type WdsSample } from '../../src/core/formats/webdataset.ts';
import {
  CLIP_MEAN, CLIP_STD, centerCropOffsets, evalTransformInto, pyRound, randomResizedCropBox, resampleBicubic, shortSideSize, type Pixels,
} from '../../src/core/train/augment.ts';
import { effectiveShuffle, SampleOrder, TrainLoader, type TrainBatch } from '../../src/core/train/loader.ts';
import { Rng } from '../../src/core/util/random.ts';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import { fileReadStream } from '../../server/io/streams.ts';
import { FileShardStore } from '../../server/train/shard-store.ts';

const ROOT = join(import.meta.dirname, '../..');
const codec = new SharpImageCodec();
let dir: string;
let shards: string;
const sizes = [70, 45, 60];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dcw-loader-'));
  const build = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(build.status, 0, build.stderr);
  const all: WdsSample[] = [];
  for await (const s of readSamples(fileReadStream(join(dir, 'pool/shards/00000000.tar')), 'pool')) all.push(s);
  assert.ok(all.length >= sizes.reduce((a, b) => a + b, 0) + 2, `pool has ${all.length} samples`);
  shards = join(dir, 'shards');
  mkdirSync(shards);
  let at = 0;
  for (const [i, n] of sizes.entries()) {
    const part = all.slice(at, at + n);
    at += n;
    if (i === 2) {
      // one sample without a caption, one with an image that does not decode: both dropped, as open_clip does
      part.push({ __key__: 'nocaption', files: new Map([['jpg', all[at]!.files.get('jpg')!]]) });
      part.push({ __key__: 'brokenjpg', files: new Map([['jpg', all[at + 1]!.files.get('jpg')!.slice(0, 40)], ['txt', new TextEncoder().encode('broken')]]) });
    }
    const bytes = new Uint8Array(await new Response(writeSamples(part)).arrayBuffer());
    writeFileSync(join(shards, `${String(i).padStart(8, '0')}.tar`), bytes);
    // shard 1 has no stats file: its size is counted from the tar
    if (i !== 1) writeFileSync(join(shards, `${String(i).padStart(8, '0')}_stats.json`), JSON.stringify({ successes: part.length }));
  }
});

after(() => rmSync(dir, { recursive: true, force: true }));

async function take(loader: TrainLoader, steps: number): Promise<TrainBatch[]> {
  const out: TrainBatch[] = [];
  for await (const b of loader.batches(steps)) out.push(b);
  return out;
}

const options = (seed: number) => ({ store: new FileShardStore(shards), codec, batchSize: 16, imageSize: 24, seed, sampleShuffle: { size: 1000, initial: 100 } });

describe('shard store', () => {
  test('lists every tar with its size (stats.json, or counted)', async () => {
    const list = await new FileShardStore(shards).listShards();
    assert.deepEqual(list.map((s) => s.samples), [70, 45, 62]);
    assert.throws(() => new FileShardStore(`${shards}::${shards}`, '1'), /one non-negative number per data directory/);
  });
});

describe('sample order (resampled shards + webdataset shuffle)', () => {
  const infos = [{ name: 'a', samples: 10, weight: 1 }, { name: 'b', samples: 10, weight: 0 }, { name: 'c', samples: 10, weight: 3 }];

  test('first hand-out after `initial` reads; buffer never above `size`; each read handed out at most once', async () => {
    const order = new SampleOrder(infos, { size: 50, initial: 20 }, 7, 0);
    const first = await order.next();
    assert.equal(order.read, 20);
    assert.ok(first.seq < 20);
    const seen = new Set([first.seq]);
    for (let i = 0; i < 2000; i++) {
      const r = await order.next();
      assert.ok(!seen.has(r.seq));
      seen.add(r.seq);
      assert.ok(order.buffer.length <= 50);
    }
    // steady state: one read per hand-out once the buffer is full
    assert.equal(order.read - order.emitted, order.buffer.length);
  });

  test('shards are drawn with replacement by weight; a weight of 0 is never drawn', async () => {
    const order = new SampleOrder(infos, { size: 1, initial: 1 }, 3, 0);
    const visits = [0, 0, 0];
    let last = -1;
    for (let i = 0; i < 20000; i++) {
      const r = await order.next();
      if (r.visit !== last) visits[r.shard]!++;
      last = r.visit;
    }
    assert.equal(visits[1], 0);
    const ratio = visits[2]! / visits[0]!;
    assert.ok(ratio > 2.6 && ratio < 3.4, `ratio ${ratio}`);
  });

  test('the order depends on seed and epoch only', async () => {
    const seqs = async (seed: number, epoch: number) => {
      const o = new SampleOrder(infos, { size: 15, initial: 5 }, seed, epoch);
      const out = [];
      for (let i = 0; i < 40; i++) out.push(`${(await o.next()).shard}:${(await o.next()).index}`);
      return out.join(',');
    };
    assert.equal(await seqs(1, 0), await seqs(1, 0));
    assert.notEqual(await seqs(1, 0), await seqs(2, 0));
    assert.notEqual(await seqs(1, 0), await seqs(1, 1));
  });

  test('buffers are cut to the pool size for small pools', () => {
    assert.deepEqual(effectiveShuffle({ size: 5000, initial: 1000 }, 300), { size: 300, initial: 300 });
    assert.deepEqual(effectiveShuffle({ size: 5000, initial: 1000 }, 1_000_000), { size: 5000, initial: 1000 });
  });
});

describe('training loader', () => {
  test('same seed → the same batches; another seed → others; bounded buffer; drops reported', async () => {
    const drops: string[] = [];
    const a = new TrainLoader({ ...options(11), onDrop: (key, _shard, reason) => drops.push(`${key}: ${reason}`) });
    const batchesA = await take(a, 30);
    const batchesB = await take(new TrainLoader(options(11)), 30);
    const batchesC = await take(new TrainLoader(options(12)), 2);
    for (const [i, b] of batchesA.entries()) {
      assert.equal(b.images.length, 16 * 3 * 24 * 24);
      assert.equal(b.texts.length, 16);
      assert.deepEqual(b.keys, batchesB[i]!.keys);
      assert.deepEqual(b.images, batchesB[i]!.images);
      assert.deepEqual(b.position, { epoch: 0, step: i + 1, emitted: b.position.emitted });
    }
    assert.notDeepEqual(batchesA[0]!.keys, batchesC[0]!.keys);
    // 480 samples handed out from a pool of 177: the buffer holds at most the pool's size
    assert.ok(a.maxBuffered <= 177, `buffer held ${a.maxBuffered}`);
    // normalised pixels lie in CLIP's range
    const lo = Math.min(...CLIP_MEAN.map((m, c) => -m / CLIP_STD[c]!));
    const hi = Math.max(...CLIP_MEAN.map((m, c) => (1 - m) / CLIP_STD[c]!));
    for (const v of batchesA[0]!.images) assert.ok(v >= lo - 1e-6 && v <= hi + 1e-6);
    // the broken samples were met (30 batches of 16 visit every shard several times) and dropped, never batched
    assert.ok(drops.some((d) => d.startsWith('nocaption: no caption')), `drops: ${drops.join('; ')}`);
    assert.ok(drops.some((d) => d.startsWith('brokenjpg: ')), drops.join('\n'));
    assert.ok(batchesA.every((b) => !b.keys.includes('nocaption') && !b.keys.includes('brokenjpg')));
    assert.equal(a.dropped, drops.length);
  });

  test('resuming from a position gives exactly the batches that followed it', async () => {
    const full = await take(new TrainLoader(options(5)), 9);
    for (const at of [1, 4, 7]) {
      const resumed = await take(new TrainLoader({ ...options(5), start: full[at - 1]!.position }), 9 - at);
      assert.deepEqual(resumed.map((b) => b.keys), full.slice(at).map((b) => b.keys), `resume after step ${at}`);
      assert.deepEqual(resumed.map((b) => b.images), full.slice(at).map((b) => b.images));
      assert.deepEqual(resumed.at(-1)!.position, full.at(-1)!.position);
    }
    // two calls on one loader continue where the first stopped
    const loader = new TrainLoader(options(5));
    const split = [...(await take(loader, 3)), ...(await take(loader, 6))];
    assert.deepEqual(split.map((b) => b.keys), full.map((b) => b.keys));
    // another epoch is another order
    const epoch1 = await take(new TrainLoader({ ...options(5), start: { epoch: 1, step: 0, emitted: 0 } }), 1);
    assert.notDeepEqual(epoch1[0]!.keys, full[0]!.keys);
  });
});

describe('image transforms', () => {
  function readPpm(path: string): Pixels {
    const b = readFileSync(path);
    const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(b.subarray(0, 64).toString('latin1'))!;
    return { width: +m[1]!, height: +m[2]!, channels: 3, data: new Uint8Array(b.subarray(m[0].length)) };
  }

  test('bicubic resize agrees with ImageMagick\'s Catrom (Keys a = −0.5, antialiased) within ±1 almost everywhere', () => {
    const fix = join(ROOT, 'test/fixtures/eval/resize');
    const src = readPpm(join(fix, 'src.ppm'));
    for (const size of ['24x19', '32x32', '13x40', '61x20', '100x77', '7x5']) {
      const expected = readPpm(join(fix, `catrom-${size}.ppm`));
      const out = resampleBicubic(src, expected.width, expected.height);
      let within1 = 0;
      let sum = 0;
      for (let i = 0; i < out.data.length; i++) {
        const d = Math.abs(out.data[i]! - expected.data[i]!);
        if (d <= 1) within1++;
        sum += d;
      }
      // ImageMagick rounds once, in 16 bits, and may run the passes in the other order; Pillow rounds to 8 bits
      // after each pass. Differences beyond 1 are rare clipping effects at the hard edges of the test picture.
      assert.ok(within1 / out.data.length > 0.99, `${size}: ${within1}/${out.data.length} within ±1`);
      assert.ok(sum / out.data.length < 0.6, `${size}: mean difference ${sum / out.data.length}`);
    }
    // a no-op resize is a copy; a constant image stays constant
    assert.deepEqual(resampleBicubic(src, src.width, src.height).data, src.data);
    const flat: Pixels = { width: 9, height: 7, channels: 3, data: new Uint8Array(9 * 7 * 3).fill(77) };
    assert.ok(resampleBicubic(flat, 4, 11).data.every((v) => v === 77));
  });

  test('Resize/CenterCrop sizes as torchvision; RandomResizedCrop boxes inside the image with scale and ratio in range', () => {
    assert.deepEqual(shortSideSize(64, 48, 32), [42, 32]);
    assert.deepEqual(shortSideSize(30, 100, 24), [24, 80]);
    assert.deepEqual(centerCropOffsets(42, 32, 32), [0, 5]);
    assert.deepEqual(centerCropOffsets(35, 32, 32), [0, 2]); // round(1.5) = 2, Python's half-to-even
    assert.deepEqual(centerCropOffsets(37, 32, 32), [0, 2]); // round(2.5) = 2
    assert.equal(pyRound(0.5), 0);
    assert.equal(pyRound(3.5), 4);
    const rng = new Rng(9);
    for (let i = 0; i < 500; i++) {
      const w = 20 + rng.int(200);
      const h = 20 + rng.int(200);
      const box = randomResizedCropBox(w, h, rng);
      assert.ok(box.top >= 0 && box.left >= 0 && box.top + box.height <= h && box.left + box.width <= w);
      // near-square images always find a box in 10 tries: area ≥ 0.9 (less rounding), ratio within [3/4, 4/3] (± rounding)
      if (w / h > 0.8 && w / h < 1.25) {
        const area = box.width * box.height;
        assert.ok(area >= 0.88 * w * h && area <= w * h, `${w}×${h} → ${box.width}×${box.height}`);
        assert.ok(box.width / box.height > 0.7 && box.width / box.height < 1.4);
      }
    }
    // an extreme aspect ratio falls back to the centre crop of ratio 4/3
    assert.deepEqual(randomResizedCropBox(400, 20, new Rng(1)), { top: 0, left: 186, height: 20, width: 27 });
  });

  test('evaluation transform of a real test picture: 24×24, white maps to (1 − mean) / std in float32', async () => {
    const tar = join(dir, 'eval/emoji_group/test/0.tar');
    let first: WdsSample | undefined;
    for await (const s of readSamples(fileReadStream(tar), tar)) {
      first = s;
      break;
    }
    const image = await codec.decode(first!.files.get('png')!, 'png');
    const out = new Float32Array(3 * 24 * 24);
    evalTransformInto(image, 24, out);
    // the picture's corner is white background: after resize it stays 255
    for (let c = 0; c < 3; c++) {
      const white = Math.fround(Math.fround(Math.fround(1) - Math.fround(CLIP_MEAN[c]!)) / Math.fround(CLIP_STD[c]!));
      assert.equal(out[c * 576], white);
    }
  });
});
