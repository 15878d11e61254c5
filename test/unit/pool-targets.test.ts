// image_based on a pool scored by its own scorer: `dcw pool targets` writes the scorer's zero-shot classifier
// rows (one per class of each classification task of the suite), `dcw cluster` clusters the pool's npz l14_img,
// and `dcw filter --name image_based` with those files keeps only rows whose nearest centroid (brute force here)
// is the nearest centroid of some target.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadTokenizer } from '../../server/cli/commands/tokenize.ts';
import { scorePoolDir } from '../../server/pool/score.ts';
import { parseTasklist } from '../../src/core/eval/tasklist.ts';
import { float16ToFloat32, readNpy } from '../../src/core/formats/npy.ts';
import { readNpz } from '../../src/core/formats/npz.ts';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { decodeSubset } from '../../src/core/formats/uid.ts';
import { SCALES, type ScaleConfig } from '../../src/core/train/scales.ts';
import { dcw } from '../helpers/cli.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';

const SCALE: ScaleConfig = { ...SCALES['scorer-cpu'], batchSize: 32, trainNumSamples: 128, warmup: 1 };
let dir: string;

before(async () => {
  if (BPE_SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'dcw-targets-'));
  const build = dcw(['pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { timeoutMs: 120_000 });
  assert.equal(build.status, 0, build.stderr);
  await scorePoolDir({ pool: join(dir, 'pool'), scale: SCALE, seed: 0, tokenizer: await loadTokenizer(BPE_PATH), gpu: 'opengles', batchSize: 64 });
});
after(() => dir && rmSync(dir, { recursive: true, force: true }));

function matrix(bytes: Uint8Array, name: string): { rows: number; dim: number; data: Float32Array } {
  const a = readNpy(new Uint8Array(bytes), name);
  return { rows: a.shape[0]!, dim: a.shape[1]!, data: a.data as Float32Array };
}
function argmax(x: Float32Array, xi: number, c: { rows: number; dim: number; data: Float32Array }): number {
  let best = -Infinity;
  let at = 0;
  for (let k = 0; k < c.rows; k++) {
    let s = 0;
    for (let d = 0; d < c.dim; d++) s += x[xi * c.dim + d]! * c.data[k * c.dim + d]!;
    if (s > best) [best, at] = [s, k];
  }
  return at;
}

test('pool targets → cluster → image_based on the scored embedded pool', { skip: BPE_SKIP }, async () => {
  const pool = join(dir, 'pool');
  const run = dcw(['pool', 'targets', '--pool', pool, '--eval', join(dir, 'eval'), '--bpe', BPE_PATH, '--gpu', 'opengles']);
  assert.equal(run.status, 0, run.stderr);
  // one row per class of each classification task, in tasklist order, each of unit length
  const tasks = parseTasklist(readFileSync(join(dir, 'eval/tasklist.yml'), 'utf8'), 'tasklist.yml');
  const classes: string[] = [];
  for (const t of tasks) {
    const folder = join(dir, 'eval', t.key);
    if (readdirSync(folder).includes('classnames.txt')) classes.push(...readFileSync(join(folder, 'classnames.txt'), 'utf8').split('\n').filter((l) => l.trim()));
  }
  const targets = matrix(readFileSync(join(pool, 'scorer/targets.npy')), 'targets.npy');
  assert.equal(targets.rows, classes.length);
  assert.equal(targets.dim, 64);
  for (let r = 0; r < targets.rows; r++) {
    let ss = 0;
    for (let d = 0; d < targets.dim; d++) ss += targets.data[r * targets.dim + d]! ** 2;
    assert.ok(Math.abs(ss - 1) < 1e-4, `row ${r}: |w|² = ${ss}`);
  }
  const described = JSON.parse(readFileSync(join(pool, 'scorer/targets.json'), 'utf8')) as { rows: { classname: string }[] };
  assert.deepEqual(described.rows.map((r) => r.classname), classes);
  assert.match(run.stdout, /^wrote \d+ targets \(64-d\) from \d+ classification tasks .*left out: .*retrieval/);

  process.env.DCW_GPU_BACKEND = 'opengles';
  const cluster = dcw(['cluster', '--metadata_dir', join(pool, 'metadata'), '--num_clusters', '8', '--save_path', join(dir, 'centroids.npy')]);
  assert.equal(cluster.status, 0, cluster.stderr);
  const filter = dcw(['filter', '--name', 'image_based', '--centroids', join(dir, 'centroids.npy'), '--image_targets', join(pool, 'scorer/targets.npy'),
    '--metadata_dir', join(pool, 'metadata'), '--save_path', join(dir, 'ib.npy')]);
  assert.equal(filter.status, 0, filter.stderr);
  const kept = decodeSubset(readFileSync(join(dir, 'ib.npy')), 'ib.npy');
  assert.ok(kept.length > 0, 'image_based kept nothing');

  // brute force: the target clusters S, and every kept row's nearest centroid is in S
  const centroids = matrix(readFileSync(join(dir, 'centroids.npy')), 'centroids.npy');
  const S = new Set(Array.from({ length: targets.rows }, (_, r) => argmax(targets.data, r, centroids)));
  const stem = readdirSync(join(pool, 'metadata')).find((n) => n.endsWith('.parquet'))!.slice(0, -'.parquet'.length);
  const img = readNpz(new Uint8Array(readFileSync(join(pool, 'metadata', `${stem}.npz`))), 'npz', { only: ['l14_img'] }).l14_img!;
  assert.equal(img.dtype, '<f2');
  const f32 = float16ToFloat32(img.data as Uint16Array);
  const uids = (await (await ParquetFile.open(readFileSync(join(pool, 'metadata', `${stem}.parquet`)), 'meta')).read({ columns: ['uid'] })).getChild('uid')!;
  const inS = new Set<string>();
  for (let r = 0; r < img.shape[0]!; r++) if (S.has(argmax(f32, r, centroids))) inS.add(String(uids.get(r)));
  for (const uid of kept) assert.ok(inS.has(uid), `${uid} is kept but its cluster is not a target's`);
  assert.ok(inS.size < img.shape[0]!, 'every cluster is a target cluster: the test shows nothing');
});
