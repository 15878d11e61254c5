// `dcw uids` and `dcw inspect` against files written by numpy and GNU tar.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { dcw, REPO } from '../helpers/cli.ts';

const UIDS = join(REPO, 'test/fixtures/numpy/uids');
const work = mkdtempSync(join(tmpdir(), 'dcw-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

for (const name of ['uids_0', 'uids_1', 'uids_2dup', 'uids_100', 'uids_1000']) {
  test(`uids encode of ${name}.txt is byte-identical to numpy's np.save (duplicates kept)`, () => {
    const out = join(work, `${name}.npy`);
    const run = dcw(['uids', 'encode', '--in', join(UIDS, `${name}.txt`), '--out', out]);
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(readFileSync(out), readFileSync(join(UIDS, `${name}.npy`)));
  });

  test(`uids decode of numpy's ${name}.npy gives the sorted uids`, () => {
    const run = dcw(['uids', 'decode', join(UIDS, `${name}.npy`)]);
    assert.equal(run.status, 0, run.stderr);
    const expected = readFileSync(join(UIDS, `${name}.txt`), 'utf8').split('\n').filter(Boolean).sort();
    assert.deepEqual(run.stdout.split('\n').filter(Boolean), expected);
  });
}

test('uids decode reads the raw headerless form the official resharder also accepts', () => {
  const raw = dcw(['uids', 'decode', join(UIDS, 'uids_100.raw')]);
  const npy = dcw(['uids', 'decode', join(UIDS, 'uids_100.npy')]);
  assert.equal(raw.status, 0, raw.stderr);
  assert.equal(raw.stdout, npy.stdout);
});

test('uids encode reads stdin and refuses a bad line with one line naming it, writing nothing', () => {
  const out = join(work, 'bad.npy');
  const run = dcw(['uids', 'encode', '--in', '-', '--out', out], { input: '139e4a9b22a614771f06c700a8ebe150\nnot-a-uid\n' });
  assert.equal(run.status, 1);
  assert.equal(run.stderr.trim(), 'dcw: stdin: line 2: "not-a-uid" is not a uid (32 hex digits)');
  assert.equal(existsSync(out), false);
  assert.deepEqual(readdirSync(work).filter((f) => f.includes('bad')), [], 'no partial file is left behind');
  const ok = dcw(['uids', 'encode', '--in', '-', '--out', out], { input: '139E4A9B22A614771F06C700A8EBE150\n' });
  assert.equal(ok.status, 0, ok.stderr);
  // The facts file's worked example: f0 = 0x139e4a9b22a61477 little-endian, then f1.
  assert.equal(Buffer.from(readFileSync(out).subarray(128)).toString('hex'), '7714a6229b4a9e1350e1eba800c7061f');
});

test('uids decode of a truncated subset file fails in one line', () => {
  const bad = join(work, 'truncated.npy');
  writeFileSync(bad, readFileSync(join(UIDS, 'uids_100.npy')).subarray(0, 200));
  const run = dcw(['uids', 'decode', bad]);
  assert.equal(run.status, 1);
  assert.equal(run.stderr.trim().split('\n').length, 1);
  assert.match(run.stderr, /^dcw: .*truncated\.npy: /);
});

test('inspect describes a tar written by GNU tar, sample by sample', () => {
  const run = dcw(['inspect', join(REPO, 'test/fixtures/tar/shard.tar')]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /tar: 14 members \(13 file, 1 directory\)/);
  assert.match(run.stdout, /webdataset samples: 4/);
  assert.match(run.stdout, /^ {2}\.jpg +3 members/m);
});

test('inspect describes npy, npz and subset files written by numpy', () => {
  const run = dcw([
    'inspect',
    join(REPO, 'test/fixtures/numpy/npy/f4_3x4.npy'),
    join(REPO, 'test/fixtures/numpy/npz/embeddings_f2_compressed.npz'),
    join(UIDS, 'uids_1000.npy'),
  ]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /npy 1\.0 {2}<f4 {2}shape \(3, 4\)/);
  assert.match(run.stdout, /l14_img {2}<f2 {2}\(2, 768\) {2}deflated/);
  assert.match(run.stdout, /1000 uids \(950 distinct\) {2}sorted/);
});

test('inspect describes parquet (DuckDB) and safetensors (numpy-written) files', () => {
  const run = dcw(['inspect', join(REPO, 'test/fixtures/parquet/commonpool-50.zstd.parquet'), ...safetensorsFixtures()]);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /parquet: 50 rows in 1 row groups, ZSTD, written by DuckDB/);
  assert.match(run.stdout, /^ {2}face_bboxes +List<List<Float64>> +LIST<LIST<DOUBLE>>/m);
  assert.match(run.stdout, /safetensors: 2 tensors, metadata \{"format":"pt"\}/);
  assert.match(run.stdout, /^ {2}visual\.proj +F32 +\[2, 3\]$/m);
  assert.match(run.stdout, /^ {2}10 parameters$/m);
});

/** A small safetensors file packed by Python (struct + json + numpy), not by our writer. */
function safetensorsFixtures(): string[] {
  const out = join(work, 'model.safetensors');
  const script = [
    'import json, struct, sys, numpy as np',
    "a = np.arange(6, dtype='<f4').reshape(2, 3); b = np.ones(4, dtype='<f2')",
    "header = {'visual.proj': {'dtype': 'F32', 'shape': [2, 3], 'data_offsets': [0, 24]}, 'logit_scale': {'dtype': 'F16', 'shape': [4], 'data_offsets': [24, 32]}, '__metadata__': {'format': 'pt'}}",
    "h = json.dumps(header).encode(); h += b' ' * (-len(h) % 8)",
    "open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + a.tobytes() + b.tobytes())",
  ].join('\n');
  const run = spawnSync('python3', ['-c', script, out], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return [out];
}

test('inspect refuses files it does not know, and missing files, in one line each', () => {
  const junk = join(work, 'junk.bin');
  writeFileSync(junk, 'hello');
  const run = dcw(['inspect', junk]);
  assert.equal(run.status, 1);
  assert.equal(run.stderr.trim(), `dcw: ${junk}: not a file dcw knows (tar, npy, npz, parquet, safetensors)`);
  const missing = dcw(['inspect', join(work, 'nope.tar')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr.trim(), /^dcw: .*nope\.tar: no such file or directory/);
});
