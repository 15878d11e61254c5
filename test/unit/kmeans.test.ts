// k-means and nearest-centroid assignment on the WebGPU engine (Dawn, GL ES compatibility and SwiftShader
// adapters) against the independent numpy reference of faiss's algorithm in test/fixtures/kmeans/reference.py.
// Same seed → same faiss permutations → same sample and starting centroids; with the same assignments the
// centroid update is bit-identical, so the final centroids must equal the reference's exactly.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { mergeBest } from '../../src/core/gpu/kernels/kmeans.ts';
import { assignNearest, kmeans, Mt19937, randPerm, splitClusters, uniqueLabels, type Embeddings } from '../../src/core/filters/kmeans.ts';
import { readNpy } from '../../src/core/formats/npy.ts';
import { cpuEngines } from '../helpers/engines.ts';

const FIX = join(import.meta.dirname, '../fixtures/kmeans');
const cases = JSON.parse(readFileSync(join(FIX, 'cases.json'), 'utf8')) as Record<string, { k: number; niter?: number; seed?: number; max_points_per_centroid?: number; splits: number[] }>;

function load(name: string): Embeddings {
  const a = readNpy(new Uint8Array(readFileSync(join(FIX, `${name}.npy`))), name);
  return { rows: a.shape[0]!, dim: a.shape[1]!, data: a.data as Float32Array | Uint16Array };
}

const engines = cpuEngines();

describe('faiss RandomGenerator', () => {
  test('mt19937 gives the C++ standard values (seed 5489: first 3499211612, 10000th 4123659995)', () => {
    const mt = new Mt19937(5489);
    assert.equal(mt.next(), 3499211612);
    let last = 0;
    for (let i = 1; i < 10000; i++) last = mt.next();
    assert.equal(last, 4123659995);
  });

  test('rand_perm is a permutation and depends on the seed', () => {
    const a = randPerm(1000, 1);
    assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
    assert.notDeepEqual(a, randPerm(1000, 2));
    assert.deepEqual(a, randPerm(1000, 1));
  });
});

describe('k-means against the numpy reference of faiss', () => {
  for (const name of ['blobs', 'split', 'subsample', 'blobs16']) {
    test(`${name}: the same centroids, bit for bit (both adapters)`, async () => {
      const c = cases[name]!;
      const x = load(`${name}-x`);
      const want = load(`${name}-centroids`).data as Float32Array;
      for (const engine of [engines.gl, engines.swiftshader]) {
        const splits: number[] = [];
        const r = await kmeans(engine, x, c.k, {
          niter: c.niter ?? 20, seed: c.seed ?? 0, maxPointsPerCentroid: c.max_points_per_centroid ?? 10_000_000,
          onIteration: (s) => splits.push(s.splits),
          chunkRows: name === 'blobs' ? 128 : undefined, // several chunks: sums carried across them in order
        });
        assert.deepEqual(splits, c.splits, `${name}: splits per iteration`);
        assert.deepEqual(r.centroids, want, `${name} on ${engine.info.description}`);
        if (name === 'subsample') assert.equal(r.trainingRows, 200);
      }
    });
  }

  test('the objective never increases on well-separated data', async () => {
    const x = load('blobs-x');
    const r = await kmeans(engines.gl, x, 8, { niter: 10 });
    for (let i = 1; i < r.iterations.length; i++) assert.ok(r.iterations[i]!.objective <= r.iterations[i - 1]!.objective * (1 + 1e-6));
    assert.deepEqual(r.warnings, []);
    const few = await kmeans(engines.gl, load('split-x'), 6, { niter: 1 });
    assert.ok(few.warnings.length === 1 && /please provide at least 234 training points/.test(few.warnings[0]!), 'faiss warns below 39 points per centroid');
  });

  test('given starting centroids and no iterations, they come back unchanged; n == k copies the points', async () => {
    const x = load('split-x');
    const init = new Float32Array(6 * 8).map((_, i) => i / 7);
    assert.deepEqual((await kmeans(engines.gl, x, 6, { niter: 0, initialCentroids: init })).centroids, init);
    const few: Embeddings = { rows: 3, dim: 8, data: (x.data as Float32Array).slice(0, 24) };
    assert.deepEqual((await kmeans(engines.gl, few, 3)).centroids, few.data);
  });

  test('bad input: fewer points than clusters, NaN, wrong shapes', async () => {
    const x = load('split-x');
    await assert.rejects(kmeans(engines.gl, { rows: 2, dim: 8, data: new Float32Array(16) }, 3), /at least as large as number of clusters/);
    const nan = new Float32Array(x.data as Float32Array);
    nan[5] = NaN;
    await assert.rejects(kmeans(engines.gl, { ...x, data: nan }, 3), /NaN/);
    await assert.rejects(kmeans(engines.gl, { rows: 5, dim: 8, data: new Float32Array(39) }, 3), /do not make 5 rows of 8/);
  });
});

describe('split_clusters', () => {
  test('an empty cluster takes half of a drawn donor, perturbed by ±1/1024 on alternating dimensions', () => {
    const c = new Float32Array([1, 2, 3, 4, 0, 0, 0, 0]);
    const h = new Float32Array([10, 0]);
    assert.equal(splitClusters(c, h, 2, 4, 10), 1);
    const up = Math.fround(1 + 1 / 1024);
    assert.deepEqual([...c.slice(4)], [1, 2, 3, 4].map((v, j) => Math.fround(v * (j % 2 ? 1 - 1 / 1024 : 1 + 1 / 1024))));
    assert.deepEqual([...c.slice(0, 4)], [1, 2, 3, 4].map((v, j) => Math.fround(v * (j % 2 ? 1 + 1 / 1024 : 1 - 1 / 1024))));
    assert.deepEqual([...h], [5, 5]);
    assert.ok(up > 1);
  });
});

describe('nearest centroid by inner product (image_based)', () => {
  test('labels equal numpy argmax of x·cᵀ, NaN rows included, in any batch size (both adapters)', async () => {
    const x = load('assign-x');
    const c = load('assign-centroids');
    const want = readNpy(new Uint8Array(readFileSync(join(FIX, 'assign-labels.npy'))), 'labels').data as BigInt64Array;
    for (const engine of [engines.gl, engines.swiftshader]) {
      for (const batchRows of [1024, 7]) {
        const got = await assignNearest(engine, c, x, { batchRows });
        assert.deepEqual([...got], [...want].map(Number), `batch ${batchRows} on ${engine.info.description}`);
      }
    }
    assert.equal((await assignNearest(engines.gl, c, x, { rows: Int32Array.from([11, 7]) })).join(), `5,${Number(want[7])}`);
  });

  test('ties go to the lowest centroid, in every kernel form and across centroid blocks', async () => {
    // 5 rows × 70 columns of scores with repeated maxima
    const n = 5;
    const kb = 70;
    const scores = new Float32Array(n * kb).map((_, i) => (i * 7919) % 13);
    for (const form of ['thread', 'workgroup'] as const) {
      for (const mode of ['ip', 'l2'] as const) {
        const s = engines.gl.tensor(scores, [n * kb]);
        const cn = engines.gl.tensor(new Float32Array(kb).fill(1), [kb]);
        const best = engines.gl.empty([n]);
        const idx = engines.gl.empty([n], 'u32');
        mergeBest(engines.gl, mode, s, cn, best, idx, n, 35, 0, true, form);
        const got = (await engines.gl.read(idx)) as Uint32Array;
        for (let r = 0; r < n; r++) {
          const row = [...scores.slice(r * 35, r * 35 + 35)].map((v) => (mode === 'ip' ? v : 1 - 2 * v));
          const target = mode === 'ip' ? Math.max(...row) : Math.min(...row);
          assert.equal(got[r], row.indexOf(target), `${form} ${mode} row ${r}`);
        }
        for (const t of [s, cn, best, idx]) t.dispose();
      }
    }
    assert.deepEqual([...uniqueLabels(Int32Array.from([5, 3, 5, 0, 3]))], [0, 3, 5]);
  });
});
