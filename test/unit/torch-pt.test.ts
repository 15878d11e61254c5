// The torch.save reader on files written by Python's pickle + zipfile in torch's layout
// (test/fixtures/torch/make_fixtures.py), the numpy-array form DataComp's centroid files use, and hostile files.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { readNpy } from '../../src/core/formats/npy.ts';
import { readTorchArchive, readTorchPt, type PtArray } from '../../src/core/formats/torch-pt.ts';
import { readFeatureMatrix } from '../../src/core/filters/image-based.ts';

const FIX = join(import.meta.dirname, '../fixtures/torch');
const bytes = (name: string) => new Uint8Array(readFileSync(join(FIX, name)));
const npy = (name: string) => readNpy(bytes(name), name);

describe('torch.save files', () => {
  test('a dict of tensors (the in1k_clip_vit_l14_{i}.pt layout): float16 features, a float32 view at an offset, plain values', () => {
    const archive = readTorchArchive(bytes('features.pt'), 'features.pt');
    assert.equal(archive.prefix, 'features');
    assert.deepEqual([...archive.records.keys()].sort(), ['.data/serialization_id', 'byteorder', 'data.pkl', 'data/0', 'data/1', 'version']);
    const value = readTorchPt(bytes('features.pt'), 'features.pt') as Map<string, unknown>;
    assert.ok(value instanceof Map);
    const feats = value.get('image_features') as PtArray;
    const want = npy('features-image_features.npy');
    assert.equal(feats.dtype, '<f2');
    assert.deepEqual(feats.shape, want.shape);
    assert.deepEqual([...feats.data], [...want.data as Uint16Array]);
    const window = value.get('window') as PtArray;
    assert.deepEqual(window.shape, [2, 3]);
    assert.deepEqual([...window.data], [...npy('features-window.npy').data as Float32Array]);
    assert.deepEqual(value.get('labels'), [3, 1, 4, 1, 5, 9]);
    assert.equal(value.get('name'), 'in1k');
  });

  test('readFeatureMatrix takes "image_features" from a dict, or the array a file holds', () => {
    const m = readFeatureMatrix(bytes('features.pt'), 'features.pt');
    assert.deepEqual([m.rows, m.dim], [6, 4]);
    assert.ok(m.data instanceof Uint16Array);
    assert.throws(() => readFeatureMatrix(bytes('features.pt'), 'features.pt', 'nope'), /features\.pt: has no entry "nope" \(it has: image_features, window, labels, name\)/);
    assert.throws(() => readFeatureMatrix(bytes('features.pt'), 'features.pt', 'labels'), /entry "labels" is not a tensor or array/);
    const big = readFeatureMatrix(bytes('bigendian.pt'), 'bigendian.pt');
    assert.deepEqual([...big.data], [...npy('bigendian.npy').data as Float32Array], 'a big-endian archive is byte-swapped');
    // .npy of the same arrays
    const viaNpy = readFeatureMatrix(bytes('centroids.npy'), 'centroids.npy');
    assert.deepEqual(viaNpy.data, npy('centroids.npy').data);
  });

  test('a pickled numpy array (the {scale}_centroids_l14.pt layout): numpy 2 names with protocol 4, numpy 1 names with protocol 2 in Fortran order', () => {
    const want = npy('centroids.npy').data as Float32Array;
    for (const name of ['centroids.pt', 'centroids-np1.pt']) {
      const m = readFeatureMatrix(bytes(name), name);
      assert.deepEqual([m.rows, m.dim], [5, 4], name);
      assert.deepEqual([...m.data], [...want], name);
    }
  });
});

describe('hostile .pt files: one-line errors, nothing run', () => {
  const expected: Record<string, RegExp> = {
    'global-os-system.pt': /refuses global "os\.system"/,
    'global-builtins-eval.pt': /refuses global "builtins\.eval"/,
    'storage-numel-lies.pt': /declares 1000 elements \(4000 bytes\), its record holds 16/,
    'tensor-larger-than-storage.pt': /runs past its storage of 4/,
    'tensor-huge-shape.pt': /impossibly large|runs past its storage/,
    'missing-storage.pt': /storage data\/0 is missing/,
    'binbytes8-lies.pt': /declares 1099511627776 bytes, more than the pickle holds/,
    'deep-nesting.pt': /nesting deeper than 1000 levels/,
    'deep-lists.pt': /neither a tensor\/array nor a dict/,
    'newobj.pt': /opcode 0x81 .* is not one torch\.save writes/,
    'no-stop.pt': /ends without STOP/,
    'memo-missing.pt': /memo 7 was never stored/,
    'no-data-pkl.pt': /has no data\.pkl record/,
    'legacy.pt': /legacy \(torch < 1\.6\)/,
    'random.pt': /not a torch\.save file/,
    'truncated.pt': /zip|end-of-central-directory/,
  };
  test('every hostile fixture is covered', () => {
    assert.deepEqual(readdirSync(join(FIX, 'hostile')).sort(), Object.keys(expected).sort());
  });
  for (const [name, pattern] of Object.entries(expected)) {
    test(name, () => {
      const file = `hostile/${name}`;
      assert.throws(() => readFeatureMatrix(bytes(file), file), (err: unknown) => {
        assert.ok(err instanceof FormatError, `${name}: ${String(err)}`);
        assert.match(err.message, pattern);
        assert.ok(err.message.startsWith(`${file}: `) && !err.message.includes('\n'), err.message);
        return true;
      });
    });
  }
});
