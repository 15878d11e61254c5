// Duplicate groups and "more like this" (src/core/filters/dedup.ts, src/core/pool/embeddings.ts) against
// brute-force references that numpy computes on data numpy builds: float16 embeddings in .npz files as
// CommonPool ships them, sha256-like keys, and pixel arrays for the picture fingerprints.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { readNpy } from '../../src/core/formats/npy.ts';
import { encodeNpz } from '../../src/core/formats/npz.ts';
import { groupByEmbedding, groupByFingerprint, groupByKey, groupSizes, rankBySimilarity, type DuplicateGroups } from '../../src/core/filters/dedup.ts';
import { fingerprint, findMatches } from '../../src/core/pool/contamination.ts';
import { embeddingMatrix, embeddingPair, npzPathFor } from '../../src/core/pool/embeddings.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-dedup-'));
let numpy: string | null = null;

// numpy builds the data and the brute-force answers:
//   part0.npz / part1.npz   l14_img, l14_txt, b32_img, b32_txt: float16 (2500 and 1500 rows) × 64, L2-normalised,
//                           clusters with noise at many levels (chains, exact copies, missing rows as NaN); no
//                           pair's cosine lies within 1e-4 of a tested threshold, so float rounding cannot flip one
//   expected.json           connected components of cos >= t (float64, all pairs) for each threshold, on all rows
//                           and on a subset; rankings by cosine (image, and the mean of image and text); exact
//                           groups of sha256-like keys
//   pixels.npy              small RGB pictures for fingerprints (copies shifted, re-tinted, noisy, and others)
const SCRIPT = String.raw`
import json, sys, hashlib
import numpy as np
out = sys.argv[1]
rng = np.random.default_rng(7)
n, d = 4000, 64
T = [0.95, 0.9, 0.99]
bases = rng.standard_normal((260, d))
bases /= np.linalg.norm(bases, axis=1, keepdims=True)
which = rng.integers(0, len(bases), n)
sigma = rng.choice([0.0, 0.02, 0.05, 0.08, 0.12, 0.2, 0.4, 1.0], n)
x = bases[which] + sigma[:, None] * rng.standard_normal((n, d)) / np.sqrt(d)
# exact copies: the same vector again
for a, b in rng.integers(0, n, (60, 2)):
    x[b] = x[a]
def unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)
def f16(v):
    return unit(v).astype(np.float16)
def cosines(h):
    v = h.astype(np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T
# move rows away from the thresholds: any row in a pair within 1e-4 of one gets a fresh random direction
for _ in range(50):
    img = f16(x)
    c = cosines(img)
    np.fill_diagonal(c, -1)
    bad = np.zeros(n, bool)
    for t in T:
        close = np.abs(c - t) < 1e-4
        bad |= close.any(axis=1)
    if not bad.any():
        break
    x[bad] = rng.standard_normal((bad.sum(), d))
else:
    raise SystemExit('could not keep pairs away from the thresholds')
img = f16(x)
txt = f16(img.astype(np.float64) + 0.6 * rng.standard_normal((n, d)) / np.sqrt(d))
missing = rng.choice(n, 25, replace=False)
img[missing] = np.nan
c = cosines(img)
def components(rows, t):
    parent = {r: r for r in rows}
    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    sub = c[np.ix_(rows, rows)]
    ii, jj = np.nonzero(np.triu(sub >= t, 1))
    for i, j in zip(ii, jj):
        ra, rb = find(rows[i]), find(rows[j])
        if ra != rb:
            parent[rb] = ra
    groups = {}
    for r in rows:
        groups.setdefault(find(r), []).append(int(r))
    gs = [sorted(g) for g in groups.values() if len(g) > 1]
    return sorted(gs, key=lambda g: (-len(g), g[0]))
rows_all = [r for r in range(n) if r not in set(missing.tolist())]
subset = sorted(rng.choice(n, 1500, replace=False).tolist())
subset_valid = [r for r in subset if r not in set(missing.tolist())]
expected = {'thresholds': T, 'groups': {str(t): components(rows_all, t) for t in T}, 'subset': subset,
            'subset_groups': components(subset_valid, 0.95), 'missing': sorted(missing.tolist())}
vt = txt.astype(np.float64); vt /= np.linalg.norm(vt, axis=1, keepdims=True)
vi = img.astype(np.float64); vi /= np.linalg.norm(vi, axis=1, keepdims=True)
ranks = []
for q in [q for q in [0, 17, 1234, 2500, 3999, 5, 900] if q not in set(missing.tolist())][:4]:
    s = vi @ vi[q]
    st = (s + vt @ vt[q]) / 2
    def order(sc):
        rest = [r for r in range(n) if r != q]
        rest.sort(key=lambda r: (np.isnan(sc[r]), -sc[r] if not np.isnan(sc[r]) else 0, r))
        return [q] + rest
    ranks.append({'query': q, 'image': order(s), 'image_scores': np.nan_to_num(s, nan=-9).tolist(),
                  'both': order(st), 'both_scores': np.nan_to_num(st, nan=-9).tolist()})
expected['ranks'] = ranks
# sha256-like keys: 300 rows, a quarter of them copies of another row's key, some without a key
keys = [hashlib.sha256(str(rng.integers(0, 2**40)).encode()).hexdigest() for _ in range(300)]
for a, b in rng.integers(0, 300, (75, 2)):
    keys[b] = keys[a]
for i in rng.choice(300, 10, replace=False):
    keys[i] = None if i % 2 else ''
groups = {}
for i, k in enumerate(keys):
    if k:
        groups.setdefault(k, []).append(i)
expected['keys'] = keys
expected['key_groups'] = sorted([g for g in groups.values() if len(g) > 1], key=lambda g: (-len(g), g[0]))
np.savez(f'{out}/part0.npz', b32_img=img[:2500], b32_txt=txt[:2500], l14_img=img[:2500], l14_txt=txt[:2500])
np.savez_compressed(f'{out}/part1.npz', b32_img=img[2500:], b32_txt=txt[2500:], l14_img=img[2500:], l14_txt=txt[2500:])
np.savez(f'{out}/b32only.npz', b32_img=img[:10])
np.savez(f'{out}/flat.npz', l14_img=img[:10].reshape(-1))
# pictures: 40 originals (blocks of colour on white), each with copies shifted, re-tinted or noisy
pics = []
for k in range(40):
    p = np.full((48, 48, 3), 255, np.uint8)
    for _ in range(4):
        y, x0 = rng.integers(4, 36, 2)
        h, w = rng.integers(4, 12, 2)
        p[y:y + h, x0:x0 + w] = rng.integers(0, 200, 3)
    pics.append(p)
    if k % 3 == 0:
        pics.append(np.roll(p, (2, -1), axis=(0, 1)))
    if k % 4 == 0:
        q = p.copy()
        q[(q == 255).all(axis=2)] = [235, 240, 230]
        pics.append(q)
    if k % 5 == 0:
        pics.append(np.clip(p.astype(int) + rng.integers(-6, 7, p.shape), 0, 255).astype(np.uint8))
np.save(f'{out}/pixels.npy', np.stack(pics))
json.dump(expected, open(f'{out}/expected.json', 'w'))
`;

interface Expected {
  thresholds: number[];
  groups: Record<string, number[][]>;
  subset: number[];
  subset_groups: number[][];
  missing: number[];
  ranks: { query: number; image: number[]; image_scores: number[]; both: number[]; both_scores: number[] }[];
  keys: (string | null)[];
  key_groups: number[][];
}
let expected: Expected;

before(() => {
  const run = spawnSync('python3', ['-c', SCRIPT, tmp], { encoding: 'utf8', timeout: 300_000 });
  if (run.error || run.status !== 0) {
    numpy = `python3 with numpy is needed to build the reference data: ${run.error?.message ?? run.stderr.trim().split('\n').pop()}`;
    return;
  }
  expected = JSON.parse(readFileSync(join(tmp, 'expected.json'), 'utf8')) as Expected;
});

after(() => rmSync(tmp, { recursive: true, force: true }));

const plain = (g: DuplicateGroups) => g.groups.map((m) => [...m]);
const file = (name: string) => new Uint8Array(readFileSync(join(tmp, name)));

function pool() {
  return embeddingMatrix([
    { file: 'metadata/part0.npz', rows: 2500, npz: file('part0.npz') },
    { file: 'metadata/part1.npz', rows: 1500, npz: file('part1.npz') },
  ], 'l14_img');
}

test('near duplicates by embedding cosine equal numpy\'s all-pairs connected components, at every threshold', (t) => {
  if (numpy) return t.skip(numpy);
  const m = pool();
  assert.equal(m.dim, 64);
  assert.equal(m.valid, 4000 - expected.missing.length);
  for (const missing of expected.missing) assert.ok(Number.isNaN(m.vectors[missing * 64]!));
  for (const threshold of expected.thresholds) {
    const want = expected.groups[String(threshold)]!;
    const got = groupByEmbedding(m.vectors, m.dim, threshold);
    assert.ok(want.length > 20 && want.some((g) => g.length > 3), `the data has groups at ${threshold}`);
    assert.deepEqual(plain(got), want, `threshold ${threshold}`);
    for (const [i, g] of want.entries()) for (const r of g) assert.equal(got.groupOf[r], i);
    const sizes = groupSizes(got);
    assert.equal(sizes.reduce((a, b) => a + b, 0), 4000 - want.reduce((a, g) => a + g.length, 0) + want.reduce((a, g) => a + g.length ** 2, 0));
  }
  // a subset: pairs outside it are not looked at, and rows outside it have no size
  const subset = groupByEmbedding(m.vectors, m.dim, 0.95, { rows: expected.subset });
  assert.deepEqual(plain(subset), expected.subset_groups);
  const sizes = groupSizes(subset, expected.subset);
  const inSubset = new Set(expected.subset);
  for (let r = 0; r < 4000; r++) assert.equal(Number.isNaN(sizes[r]!), !inSubset.has(r), `row ${r}`);
});

test('more like this ranks every row by cosine as numpy does (image alone, and image with text), the sample first', (t) => {
  if (numpy) return t.skip(numpy);
  const image = pool();
  const text = embeddingMatrix([
    { file: 'metadata/part0.npz', rows: 2500, npz: file('part0.npz') },
    { file: 'metadata/part1.npz', rows: 1500, npz: file('part1.npz') },
  ], 'l14_txt');
  for (const r of expected.ranks) {
    for (const [mode, order, scores] of [['image', r.image, r.image_scores], ['both', r.both, r.both_scores]] as const) {
      const got = rankBySimilarity(image.vectors, image.dim, r.query, mode === 'both' ? { vectors: text.vectors, dim: text.dim } : undefined);
      assert.equal(got.order[0], r.query, 'the sample itself comes first');
      // Same order, except between rows whose scores numpy finds equal to within rounding.
      for (let i = 0; i < order.length; i++) {
        if (got.order[i] === order[i]) continue;
        assert.ok(Math.abs(scores[got.order[i]!]! - scores[order[i]!]!) < 1e-6, `${mode} query ${r.query}: position ${i} is row ${got.order[i]}, numpy has ${order[i]}`);
      }
      for (let row = 0; row < 4000; row++) {
        const want = scores[row]!;
        if (want === -9) assert.ok(Number.isNaN(got.scores[row]!));
        else assert.ok(Math.abs(got.scores[row]! - want) < 1e-5, `${mode} score of row ${row}`);
      }
      assert.deepEqual([...got.order.slice(-expected.missing.length)].sort((a, b) => a - b), expected.missing, 'rows without an embedding rank last');
    }
  }
  assert.throws(() => rankBySimilarity(image.vectors, image.dim, expected.missing[0]!), /has no image embedding/);
});

test('exact duplicates group equal keys; rows without a key are never duplicates', (t) => {
  if (numpy) return t.skip(numpy);
  const got = groupByKey(expected.keys);
  assert.deepEqual(plain(got), expected.key_groups);
  expected.keys.forEach((k, i) => {
    if (!k) assert.equal(got.groupOf[i], -1);
  });
  // on a subset, only its rows count
  const half = expected.keys.map((_, i) => i).filter((i) => i % 2 === 0);
  const sub = groupByKey(expected.keys, half);
  for (const g of sub.groups) for (const r of g) assert.equal(r % 2, 0);
  const byKey = new Map<string, number[]>();
  for (const i of half) if (expected.keys[i]) byKey.set(expected.keys[i]!, [...(byKey.get(expected.keys[i]!) ?? []), i]);
  assert.equal(sub.groups.length, [...byKey.values()].filter((g) => g.length > 1).length);
});

test('near duplicates by picture fingerprint are the components of the contamination check\'s brute-force matches', (t) => {
  if (numpy) return t.skip(numpy);
  const pixels = readNpy(file('pixels.npy'), 'pixels.npy');
  const [count, h, w] = pixels.shape as [number, number, number];
  const data = pixels.data as Uint8Array;
  const fps = Array.from({ length: count }, (_, i) => fingerprint(data.subarray(i * h * w * 3, (i + 1) * h * w * 3), w, h, 3));
  const withMissing = [...fps, null];
  const got = groupByFingerprint(withMissing);
  // reference: every matching pair (findMatches compares all pairs), joined transitively
  const pairs = findMatches(fps, fps).filter((m) => m.pool < m.eval);
  const label = fps.map((_, i) => i);
  const root = (x: number): number => (label[x] === x ? x : (label[x] = root(label[x]!)));
  for (const p of pairs) label[root(p.eval)] = root(p.pool);
  const comps = new Map<number, number[]>();
  fps.forEach((_, i) => comps.set(root(i), [...(comps.get(root(i)) ?? []), i]));
  const want = [...comps.values()].filter((g) => g.length > 1).sort((a, b) => b.length - a.length || a[0]! - b[0]!);
  assert.ok(want.length >= 10, `${want.length} groups of copies in the pictures`);
  assert.deepEqual(plain(got), want);
  assert.equal(got.groupOf[count], -1, 'a row without a picture has no group');
});

test('embedding files: the L/14 pair when present, else B/32; rows and widths checked against the parquet', (t) => {
  if (numpy) return t.skip(numpy);
  assert.deepEqual(embeddingPair(file('part0.npz'), 'p0.npz'), { image: 'l14_img', text: 'l14_txt' });
  assert.deepEqual(embeddingPair(file('b32only.npz'), 'b.npz'), { image: 'b32_img', text: null });
  assert.equal(npzPathFor('metadata/0123abcd.parquet'), 'metadata/0123abcd.npz');
  const wrongRows = () => embeddingMatrix([{ file: 'metadata/part0.npz', rows: 2499, npz: file('part0.npz') }], 'l14_img');
  assert.throws(wrongRows, (e: unknown) => e instanceof FormatError && e.file === 'metadata/part0.npz' && /2500 rows, its metadata parquet 2499/.test(e.message));
  assert.throws(() => embeddingMatrix([{ file: 'f.npz', rows: 640, npz: file('flat.npz') }], 'l14_img'), /shape \(640\), not \(rows, width\)/);
  const narrow = encodeNpz({ l14_img: { dtype: '<f4', shape: [2, 3], data: new Float32Array(6).fill(1) } });
  assert.throws(() => embeddingMatrix([
    { file: 'a.npz', rows: 2500, npz: file('part0.npz') },
    { file: 'b.npz', rows: 2, npz: narrow },
  ], 'l14_img'), /3 wide, the pool's other files 64/);
  assert.throws(() => embeddingMatrix([{ file: 'b.npz', rows: 10, npz: file('b32only.npz') }], 'l14_img'), /has no array 'l14_img'/);
});

test('the pruned embedding search is exact on vectors that do not cluster, and on one row or none', () => {
  // Uniform random directions defeat the pruning (every cluster is wide): the answer must still be exact.
  let seed = 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const dim = 8;
  const n = 600;
  const v = Float32Array.from({ length: n * dim }, rand);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += v[r * dim + k]! ** 2;
    for (let k = 0; k < dim; k++) v[r * dim + k]! /= Math.sqrt(s);
  }
  for (const threshold of [0.9, 0.97]) {
    const label = [...Array(n).keys()];
    const root = (x: number): number => (label[x] === x ? x : (label[x] = root(label[x]!)));
    for (let a = 0; a < n; a++) {
      for (let b = a + 1; b < n; b++) {
        let s = 0;
        for (let k = 0; k < dim; k++) s += v[a * dim + k]! * v[b * dim + k]!;
        if (s >= threshold) label[root(b)] = root(a);
      }
    }
    const comps = new Map<number, number[]>();
    for (let i = 0; i < n; i++) comps.set(root(i), [...(comps.get(root(i)) ?? []), i]);
    const want = [...comps.values()].filter((g) => g.length > 1).sort((a, b) => b.length - a.length || a[0]! - b[0]!);
    assert.ok(want.length > 5);
    assert.deepEqual(plain(groupByEmbedding(v, dim, threshold)), want);
  }
  assert.deepEqual(plain(groupByEmbedding(v.slice(0, dim), dim, 0.9)), []);
  assert.deepEqual(plain(groupByEmbedding(new Float32Array(0), dim, 0.9)), []);
  assert.throws(() => groupByEmbedding(v, dim, 1.5), /between -1 and 1/);
});
