// image_based and image_based_intersect_clip_score on a metadata fixture (DuckDB parquets + numpy npz +
// torch-layout .pt assets) give the bytes the independent numpy reference (test/fixtures/image-based/reference.py)
// np.save'd; the nearest-centroid search runs on the WebGPU engine (Dawn, GL ES compatibility adapter).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openDawn } from '../../server/gpu/dawn.ts';
import { listMetadataFiles } from '../../server/filters/metadata-dir.ts';
import { checkBaselineSpec, runBaseline, subsetBytes, type BaselineSpec } from '../../src/core/filters/baselines.ts';
import { concatRows, fastTextTokenCount, npzPathFor, readFeatureMatrix, type ImageBasedInputs } from '../../src/core/filters/image-based.ts';
import type { MetadataFile } from '../../src/core/filters/scan.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { readNpz } from '../../src/core/formats/npz.ts';
import { Engine } from '../../src/core/gpu/engine.ts';
import { tableDetector } from '../../src/core/text/langid.ts';
import { fastTextAvailable } from '../../server/filters/langid-fasttext.ts';
import { dcw } from '../helpers/cli.ts';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';

const FIX = join(import.meta.dirname, '../fixtures/image-based');
const langs = JSON.parse(readFileSync(join(FIX, '../filters/langs.json'), 'utf8')) as { detector: string; labels: Record<string, string> };
const detector = tableDetector('fasttext-lid.176 (recorded labels)', langs.detector, new Map(Object.entries(langs.labels)));
const bytes = (name: string) => new Uint8Array(readFileSync(join(FIX, name)));

async function l14(file: MetadataFile) {
  const npz = npzPathFor(file.name);
  const a = readNpz(new Uint8Array(readFileSync(npz)), npz, { only: ['l14_img'] }).l14_img!;
  return { rows: a.shape[0]!, dim: a.shape[1]!, data: a.data as Uint16Array };
}

let engine: Engine;
let inputs: ImageBasedInputs;
before(async () => {
  engine = new Engine(await openDawn({ backend: 'opengles' }));
  inputs = {
    engine,
    centroids: readFeatureMatrix(bytes('centroids.pt'), 'centroids.pt'),
    targets: concatRows([0, 1].map((i) => readFeatureMatrix(bytes(`targets_${i}.pt`), `targets_${i}.pt`)), 'targets'),
    embeddings: l14,
    batchSize: 16,
  };
});
after(() => engine.destroy());

const cases: [string, BaselineSpec][] = [
  ['image_based', { name: 'image_based' }],
  ['intersect_l14_f0.3', { name: 'image_based_intersect_clip_score', arch: 'l14', fraction: 0.3 }],
  ['intersect_b32_t0.27', { name: 'image_based_intersect_clip_score', arch: 'b32', threshold: 0.27 }],
];

describe('image_based baselines on the metadata fixture', () => {
  for (const [out, spec] of cases) {
    test(`${out}: byte-identical to the numpy reference`, async () => {
      const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
      try {
        const result = await runBaseline(files, spec, { detector, imageBased: inputs });
        const expected = bytes(`expected/${out}.npy`);
        const got = subsetBytes(result);
        assert.equal((got.length - 128) / 16, (expected.length - 128) / 16, 'uid count');
        assert.deepEqual(got, expected);
        assert.equal(result.rows, 127);
        assert.equal(result.targetClusters, 4);
      } finally {
        await close();
      }
    });
  }

  test('targets and centroids from .npy files give the same subset as the .pt files', async () => {
    const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
    try {
      const viaNpy = { ...inputs, centroids: readFeatureMatrix(bytes('centroids.npy'), 'centroids.npy'), targets: readFeatureMatrix(bytes('targets.npy'), 'targets.npy') };
      const result = await runBaseline(files, { name: 'image_based' }, { detector, imageBased: viaNpy });
      assert.deepEqual(subsetBytes(result), bytes('expected/image_based.npy'));
    } finally {
      await close();
    }
  });

  test('an npz whose rows do not match its parquet is a one-line error naming the npz', async () => {
    const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
    try {
      const short = { ...inputs, embeddings: async (f: MetadataFile) => ({ ...(await l14(f)), rows: 3, data: (await l14(f)).data.slice(0, 48) }) };
      await assert.rejects(runBaseline(files, { name: 'image_based' }, { detector, imageBased: short }), (err: unknown) => {
        assert.ok(err instanceof FormatError);
        assert.match(err.message, /\.npz: has 3 rows of l14_img, its parquet 37$/);
        return true;
      });
    } finally {
      await close();
    }
  });

  test('option checks: image_based takes no clip flags; both need their inputs', async () => {
    assert.throws(() => checkBaselineSpec({ name: 'image_based', arch: 'l14' }), /only used for clip_score/);
    assert.throws(() => checkBaselineSpec({ name: 'image_based_intersect_clip_score', fraction: 0.3 }), /--arch/);
    checkBaselineSpec({ name: 'image_based' });
    checkBaselineSpec({ name: 'image_based_intersect_clip_score', arch: 'l14', fraction: 0.3 });
    await assert.rejects(runBaseline([], { name: 'image_based' }, { detector }), /needs the pool centroids/);
  });
});

describe('caption_filter token count', () => {
  test('len(fasttext.tokenize(t)) as the reference simulates fastText readWord (newlines add "</s>")', () => {
    const want = JSON.parse(readFileSync(join(FIX, 'expected/tokens.json'), 'utf8')) as Record<string, number>;
    for (const [text, n] of Object.entries(want)) assert.equal(fastTextTokenCount(text), n, JSON.stringify(text));
    assert.equal(fastTextTokenCount('a\nb'), 3);
    assert.equal(fastTextTokenCount('a\u00a0b'), 1, 'NBSP is not a fastText separator');
  });
});

describe('dcw filter / dcw cluster (real fastText lid.176, GL ES adapter)', { skip: fastTextAvailable() ? false : 'npm package fasttext.wasm.js is not installed' }, () => {
  const M = join(FIX, 'metadata');
  test('filter writes the reference bytes from .pt assets and from .npy ones; missing assets and npz are one-line errors', () => {
    process.env.DCW_GPU_BACKEND = 'opengles';
    const dir = mkdtempSync(join(tmpdir(), 'dcw-ib-'));
    try {
      let run = dcw(['filter', '--name', 'image_based', '--metadata_dir', M, '--save_path', join(dir, 'a.npy'),
        '--centroids', join(FIX, 'centroids.pt'), '--image_targets', join(FIX, 'targets_0.pt'), join(FIX, 'targets_1.pt'), '--batch_size', '8']);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'a.npy'))), bytes('expected/image_based.npy'));
      run = dcw(['filter', '--name', 'image_based_intersect_clip_score', '--arch', 'b32', '--threshold', '0.27', '--metadata_dir', M,
        '--save_path', join(dir, 'b.npy'), '--centroids', join(FIX, 'centroids.npy'), '--image_targets', join(FIX, 'targets.npy')]);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'b.npy'))), bytes('expected/intersect_b32_t0.27.npy'));
      process.env.DCW_ASSETS = join(dir, 'none');
      run = dcw(['filter', '--name', 'image_based', '--image_based_scale', 'small', '--metadata_dir', M, '--save_path', join(dir, 'c.npy')]);
      assert.equal(run.status, 1);
      assert.match(run.stderr, /^dcw: filter: small_centroids_l14\.pt not found in .*: give --centroids FILE or set DCW_ASSETS/m);
      run = dcw(['filter', '--name', 'image_based', '--metadata_dir', join(FIX, '../filters/metadata'), '--save_path', join(dir, 'd.npy'),
        '--centroids', join(FIX, 'centroids.npy'), '--image_targets', join(FIX, 'targets.npy')]);
      assert.equal(run.status, 1);
      assert.match(run.stderr, /^dcw: .*0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e\.npz: missing: the image-based filters read l14_img/m);
      run = dcw(['filter', '--name', 'basic_filter', '--image_based_scale', 'small', '--metadata_dir', M, '--save_path', join(dir, 'e.npy')]);
      assert.match(run.stderr, /only used for image_based baselines/);
      for (const f of ['c.npy', 'd.npy', 'e.npy']) assert.ok(!existsSync(join(dir, f)), `${f} must not be written`);
    } finally {
      delete process.env.DCW_ASSETS;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('cluster writes float32 centroids that dcw filter reads', () => {
    process.env.DCW_GPU_BACKEND = 'opengles';
    const dir = mkdtempSync(join(tmpdir(), 'dcw-cluster-'));
    try {
      let run = dcw(['cluster', '--metadata_dir', M, '--save_path', join(dir, 'c.npy'), '--num_clusters', '6', '--niter', '4']);
      assert.equal(run.status, 0, run.stderr);
      const c = readFeatureMatrix(new Uint8Array(readFileSync(join(dir, 'c.npy'))), 'c.npy');
      assert.deepEqual([c.rows, c.dim], [6, 16]);
      run = dcw(['filter', '--name', 'image_based', '--metadata_dir', M, '--save_path', join(dir, 'f.npy'), '--centroids', join(dir, 'c.npy'), '--image_targets', join(FIX, 'targets.npy')]);
      assert.equal(run.status, 0, run.stderr);
      run = dcw(['cluster', '--metadata_dir', M, '--save_path', join(dir, 'x.npy'), '--num_clusters', '1000']);
      assert.equal(run.status, 1);
      assert.match(run.stderr, /^dcw: cluster: Number of training points \(\d+\) should be at least as large as number of clusters \(1000\)$/m);
      assert.ok(!existsSync(join(dir, 'x.npy')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
