// A recipe can take a subset someone else made ({"subset": "file.npy"}, read relative to the recipe): it
// joins the set algebra like any rule, an unsorted file is sorted, the record names the file's sha256, and a
// missing or broken file is a one-line error that writes nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { decodeSubset } from '../../src/core/formats/uid.ts';
import { dcw } from '../helpers/cli.ts';

const FIX = join(import.meta.dirname, '../fixtures/filters');
const tmp = mkdtempSync(join(tmpdir(), 'dcw-recipe-subset-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function filter(recipe: object, name: string) {
  writeFileSync(join(tmp, `${name}.json`), JSON.stringify(recipe));
  const out = join(tmp, `${name}.npy`);
  return { run: dcw(['filter', '--recipe', join(tmp, `${name}.json`), '--metadata_dir', join(FIX, 'metadata'), '--save_path', out]), out };
}

test('a subset file in the set algebra: theirs ∩ (L/14 top 30%) − (B/32 ≥ 0.29), against sets computed here', () => {
  copyFileSync(join(FIX, 'expected/clip_b32_f0.5.npy'), join(tmp, 'theirs.npy'));
  const { run, out } = filter({
    recipe: 1,
    subsets: { theirs: { subset: 'theirs.npy' }, l14: { baseline: 'clip_score', arch: 'l14', fraction: 0.3 }, b32: { baseline: 'clip_score', arch: 'b32', threshold: 0.29 } },
    result: 'theirs & l14 - b32',
  }, 'algebra');
  assert.equal(run.status, 0, run.stderr);
  const read = (f: string) => new Set(decodeSubset(readFileSync(join(FIX, 'expected', f)), f));
  const theirs = read('clip_b32_f0.5.npy');
  const l14 = read('clip_l14_f0.3.npy');
  const b32 = read('clip_b32_t0.29.npy');
  const expected = [...theirs].filter((u) => l14.has(u) && !b32.has(u)).sort();
  assert.ok(expected.length > 0, 'the fixture should leave something');
  assert.deepEqual(decodeSubset(readFileSync(out), out), expected);
  const record = JSON.parse(readFileSync(`${out}.recipe.json`, 'utf8'));
  assert.equal(record.subsets.theirs.sha256, createHash('sha256').update(readFileSync(join(tmp, 'theirs.npy'))).digest('hex'));
  assert.equal(record.subsets.theirs.uids, decodeSubset(readFileSync(join(tmp, 'theirs.npy')), 'theirs').length);
  assert.equal(record.subsets.theirs.rows_read, 0);
});

test('an unsorted subset file is taken sorted; alone as the result it keeps its duplicates', () => {
  const sorted = readFileSync(join(FIX, 'expected/clip_l14_f0.3.npy'));
  const records = [];
  for (let at = 128; at < sorted.length; at += 16) records.push(sorted.subarray(at, at + 16));
  records.reverse();
  records.push(records[records.length - 1]!);
  // np.save's v1.0 header for this many u8,u8 records: the dict, space-padded, newline-terminated, 128 bytes
  const dict = `{'descr': [('f0', '<u8'), ('f1', '<u8')], 'fortran_order': False, 'shape': (${records.length},), }`;
  const header = Buffer.concat([Buffer.from('\x93NUMPY\x01\x00\x76\x00', 'latin1'), Buffer.from(dict.padEnd(117, ' ') + '\n', 'latin1')]);
  assert.equal(header.length, 128);
  writeFileSync(join(tmp, 'unsorted.npy'), Buffer.concat([header, ...records]));
  const { run, out } = filter({ recipe: 1, subsets: { theirs: { subset: 'unsorted.npy' } }, result: 'theirs' }, 'unsorted');
  assert.equal(run.status, 0, run.stderr);
  const uids = decodeSubset(readFileSync(out), out);
  const want = decodeSubset(sorted, 'sorted');
  assert.deepEqual(uids, [want[0]!, ...want]);
});

test('a missing or broken subset file: one line naming it, nothing written', () => {
  writeFileSync(join(tmp, 'broken.npy'), 'not numpy');
  for (const [file, problem] of [['missing.npy', /missing\.npy: no such file/], ['broken.npy', /broken\.npy: .*/]] as const) {
    const { run, out } = filter({ recipe: 1, subsets: { theirs: { subset: file } }, result: 'theirs' }, `bad-${file}`);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /^dcw: .*bad-.*\.json: subsets\.theirs: /);
    assert.match(run.stderr, problem);
    assert.equal(run.stderr.trim().split('\n').length, 1);
    assert.equal(existsSync(out), false);
  }
  const bad = filter({ recipe: 1, subsets: { theirs: { subset: 3 } }, result: 'theirs' }, 'bad-type');
  assert.match(bad.run.stderr, /^dcw: .*bad-type\.json: subsets\.theirs\.subset: must be the path of a uid \.npy file\n$/);
});
