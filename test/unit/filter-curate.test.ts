// Curation in recipes: dedup by sha256 and by embedding cosine, MetaCLIP-style balancing over a metadata key and
// over k-means clusters of the npz embeddings, and repeats — through `dcw filter --recipe` on a DuckDB-written pool
// with planted duplicates, against brute-force answers computed here (all pairs, argmax over every centroid).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { uidDraw } from '../../src/core/filters/curate.ts';
import { encodeNpy, float16ToFloat32, float32ToFloat16, readNpy } from '../../src/core/formats/npy.ts';
import { encodeNpz } from '../../src/core/formats/npz.ts';
import { decodeSubset, uidsToWords } from '../../src/core/formats/uid.ts';
import { Rng } from '../../src/core/util/random.ts';
import { dcw } from '../helpers/cli.ts';

const ROWS = [400, 300];
const DIM = 8;
let dir: string;
/** Per file: uids, sha256s, widths, embeddings (float32 of what the float16 npz holds). */
const pool: { uid: string; sha: string | null; width: number; vec: Float32Array }[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dcw-curate-'));
  mkdirSync(join(dir, 'metadata'));
  const duck = await DuckDBInstance.create(':memory:');
  const conn = await duck.connect();
  const rng = new Rng(7);
  let offset = 0;
  for (const [f, rows] of ROWS.entries()) {
    const stem = join(dir, 'metadata', `${f}00000000000000000000000000000000`.slice(0, 32));
    // sha256: every 5th row repeats an earlier row's hash (possibly across files); some rows have none
    await conn.run(`COPY (SELECT md5((i + ${offset})::VARCHAR) AS uid, 'caption ' || i AS text,
      (64 * (1 + (i * 7) % 9))::BIGINT AS original_width, 256::BIGINT AS original_height,
      CASE WHEN i % 37 = 0 THEN NULL WHEN (i + ${offset}) % 5 = 0 THEN md5(((i + ${offset}) // 10)::VARCHAR) ELSE md5('s' || (i + ${offset})::VARCHAR) END AS sha256
      FROM range(${rows}) t(i) ORDER BY i) TO '${stem}.parquet' (FORMAT parquet)`);
    const rowsRead = (await conn.runAndReadAll(`SELECT uid, sha256, original_width FROM '${stem}.parquet'`)).getRows() as [string, string | null, bigint][];
    const bits = new Uint16Array(rows * DIM);
    for (let r = 0; r < rows; r++) {
      const v = new Float32Array(DIM);
      // every 7th row is a near copy of the row before it
      if (r % 7 === 6) for (let d = 0; d < DIM; d++) v[d] = pool[pool.length - 1]!.vec[d]! + (rng.next() - 0.5) * 0.01;
      else for (let d = 0; d < DIM; d++) v[d] = rng.next() * 2 - 1;
      let n = 0;
      for (let d = 0; d < DIM; d++) n += v[d]! ** 2;
      // the vectors as the float16 npz holds them
      const half = float32ToFloat16(v.map((x) => x / Math.sqrt(n)));
      bits.set(half, r * DIM);
      v.set(float16ToFloat32(half));
      pool.push({ uid: rowsRead[r]![0], sha: rowsRead[r]![1], width: Number(rowsRead[r]![2]), vec: v });
    }
    writeFileSync(`${stem}.npz`, encodeNpz({ l14_img: { dtype: '<f2', shape: [rows, DIM], data: bits } }));
    offset += rows;
  }
  conn.closeSync();
  const centroids = new Float32Array(4 * DIM);
  for (let i = 0; i < centroids.length; i++) centroids[i] = rng.next() * 2 - 1;
  writeFileSync(join(dir, 'centroids.npy'), encodeNpy({ dtype: '<f4', shape: [4, DIM], data: centroids }));
  process.env.DCW_GPU_BACKEND = 'opengles';
});
after(() => rmSync(dir, { recursive: true, force: true }));

function run(recipe: object, name: string): string[] {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify({ recipe: 1, ...recipe }));
  const out = join(dir, `${name}.npy`);
  const r = dcw(['filter', '--recipe', join(dir, `${name}.json`), '--metadata_dir', join(dir, 'metadata'), '--save_path', out]);
  assert.equal(r.status, 0, r.stderr);
  return decodeSubset(readFileSync(out), out);
}
const sorted = (uids: Iterable<string>) => [...uids].sort();
const cos = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

test('dedup "sha256": the first row in pool order of each hash; rows without a hash stay', () => {
  const seen = new Set<string>();
  const want: string[] = [];
  for (const p of pool) {
    if (p.sha === null) want.push(p.uid);
    else if (!seen.has(p.sha)) {
      seen.add(p.sha);
      want.push(p.uid);
    }
  }
  assert.ok(want.length < pool.length - 50, 'the fixture should plant duplicates');
  assert.deepEqual(run({ subsets: { u: { dedup: 'sha256' } }, result: 'u' }, 'sha'), sorted(want));
});

test('dedup "embedding": connected groups at cosine ≥ 0.99, the earliest row of each stays (all pairs here)', () => {
  const parent = pool.map((_, i) => i);
  const find = (x: number): number => (parent[x] === x ? x : (parent[x] = find(parent[x]!)));
  for (let a = 0; a < pool.length; a++) for (let b = a + 1; b < pool.length; b++) if (cos(pool[a]!.vec, pool[b]!.vec) >= 0.99) parent[Math.max(find(a), find(b))] = Math.min(find(a), find(b));
  const want = pool.filter((_, i) => find(i) === i).map((p) => p.uid);
  assert.ok(want.length < pool.length - 50 && want.length > pool.length - 150, `${pool.length - want.length} near copies`);
  assert.deepEqual(run({ subsets: { n: { dedup: 'embedding', threshold: 0.99 } }, result: 'n' }, 'emb'), sorted(want));
});

test('balance over a metadata key among an earlier subset: min(1, t/n) by a seeded uid draw; repeat doubles a subset', () => {
  const wide = pool.filter((p) => p.width >= 192);
  const counts = new Map<number, number>();
  for (const p of wide) counts.set(p.width, (counts.get(p.width) ?? 0) + 1);
  const t = 20;
  const keep = wide.filter((p) => {
    const n = counts.get(p.width)!;
    return n <= t || uidDraw(uidsToWords([p.uid]), 0, 3) < t / n;
  }).map((p) => p.uid);
  const got = run({
    subsets: { wide: { where: 'original_width >= 192' }, bal: { balance: 'original_width', max_per_group: t, seed: 3, of: 'wide' }, first: { where: 'original_width == 192' } },
    result: 'bal', repeat: [{ subset: 'first', times: 2 }],
  }, 'bal');
  const expected = sorted(keep.flatMap((u) => (pool.find((p) => p.uid === u)!.width === 192 ? [u, u] : [u])));
  assert.deepEqual(got, expected);
  // each group ends near t: the draw is uniform
  for (const [w, n] of counts) {
    const k = keep.filter((u) => pool.find((p) => p.uid === u)!.width === w).length;
    if (n > t) assert.ok(Math.abs(k - t) <= 12, `width ${w}: ${k} of ${n} kept, want about ${t}`);
  }
});

test('balance "clusters": each row keyed by its nearest centroid (argmax inner product) of the npz embedding', () => {
  const c = readNpy(new Uint8Array(readFileSync(join(dir, 'centroids.npy'))), 'centroids.npy').data as Float32Array;
  const label = (v: Float32Array) => {
    let best = -Infinity;
    let at = 0;
    for (let k = 0; k < 4; k++) {
      const s = cos(v, c.subarray(k * DIM, (k + 1) * DIM));
      if (s > best) [best, at] = [s, k];
    }
    return at;
  };
  const labels = pool.map((p) => label(p.vec));
  const counts = [0, 0, 0, 0];
  for (const l of labels) counts[l]!++;
  const t = 60;
  const want = pool.filter((p, i) => counts[labels[i]!]! <= t || uidDraw(uidsToWords([p.uid]), 0, 0) < t / counts[labels[i]!]!).map((p) => p.uid);
  assert.deepEqual(run({ subsets: { b: { balance: 'clusters', centroids: 'centroids.npy', max_per_group: t } }, result: 'b' }, 'clusters'), sorted(want));
});

test('bad curation rules: one-line errors naming the rule', () => {
  for (const [recipe, message] of [
    [{ subsets: { d: { dedup: 'md5' } }, result: 'd' }, /subsets\.d\.dedup: "sha256" \(same image bytes\) or "embedding"/],
    [{ subsets: { b: { balance: 'clusters', max_per_group: 5 } }, result: 'b' }, /subsets\.b\.centroids: balance "clusters" needs the path/],
    [{ subsets: { b: { balance: 'original_width', max_per_group: 0 } }, result: 'b' }, /subsets\.b\.max_per_group: must be a positive integer/],
    [{ subsets: { b: { balance: 'original_width', max_per_group: 5, of: 'later' }, later: { where: 'true' } }, result: 'b' }, /subsets\.b\.of: must name a subset defined before "b"/],
    [{ subsets: { a: { where: 'original_width > 0' } }, result: 'a', repeat: [{ subset: 'a', times: 0 }] }, /repeat\[0\]\.times: a whole number from 1 to 1000/],
  ] as const) {
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ recipe: 1, ...recipe }));
    const r = dcw(['filter', '--recipe', join(dir, 'bad.json'), '--metadata_dir', join(dir, 'metadata'), '--save_path', join(dir, 'bad.npy')]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  }
});
