// The resharder on a small embedded pool build: repeats, keys, counters, stats, meta.json, refusal of a
// non-empty output directory, missing shards, and GNU tar reading the outputs without a warning.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Command } from 'commander';
import { encodeSubset } from '../../src/core/formats/uid.ts';
import { readSamples, writeSamples, type WdsSample } from '../../src/core/formats/webdataset.ts';
import { formatShardName, guessNumShards, planTasks, SubsetIndex } from '../../src/core/reshard/plan.ts';
import { registerReshard } from '../../server/cli/commands/reshard.ts';
import { fileReadStream, writeFileAtomic } from '../../server/io/streams.ts';
import { reshard } from '../../server/reshard/resharder.ts';

const ROOT = join(import.meta.dirname, '../..');
let dir: string;
let input: string;
const samples: WdsSample[][] = []; // per input shard
const sizes = [150, 150, 150, 84];

async function readAll(path: string): Promise<WdsSample[]> {
  const out: WdsSample[] = [];
  for await (const s of readSamples(fileReadStream(path), path)) out.push(s);
  return out;
}
const uidOf = (s: WdsSample) => (JSON.parse(new TextDecoder().decode(s.files.get('json')!)) as { uid: string }).uid;
const quiet = () => {};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dcw-reshard-'));
  const build = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.01', '--workers', '1'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(build.status, 0, build.stderr);
  // re-cut the pool's one shard into four, so the resharder sees several shards and a missing one
  const all = await readAll(join(dir, 'pool/shards/00000000.tar'));
  assert.ok(all.length >= sizes.reduce((a, b) => a + b, 0), `pool has ${all.length} samples`);
  input = join(dir, 'in');
  mkdirSync(input);
  let at = 0;
  for (let s = 0; s < sizes.length; s++) {
    const part = all.slice(at, at + sizes[s]!);
    at += sizes[s]!;
    samples.push(part);
    await writeFileAtomic(join(input, formatShardName('{:08d}.tar', s)), writeSamples(part));
    if (s !== 2) writeFileSync(join(input, formatShardName('{:08d}_stats.json', s)), JSON.stringify({ count: part.length, successes: part.length }));
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('resharder plan pieces', () => {
  test('shard names as Python str.format', () => {
    assert.equal(formatShardName('{:08d}.tar', 42), '00000042.tar');
    assert.equal(formatShardName('shard-{}.tar', 7), 'shard-7.tar');
    assert.equal(formatShardName('{0:5d}_x', 3), '    3_x');
    assert.throws(() => formatShardName('{:x}.tar', 1), RangeError);
  });
  test('guess_num_shards finds the run of present shards, as the doubling + bisect does', async () => {
    for (const n of [1, 2, 3, 5, 8, 9, 100]) assert.equal(await guessNumShards(async (i) => i >= 4 && i < 4 + n, 4), n);
    await assert.rejects(guessNumShards(async () => false, 0), /did not find any shards/);
  });
  test('plan_tasks: contiguous shard runs balanced by samples', () => {
    const shards = [0, 1, 2, 3].map((i) => ({ shardId: i, dataStart: i * 10, size: 10 }));
    assert.deepEqual(planTasks(shards, 2).map((t) => t.map((s) => s.shardId)), [[0, 1], [2, 3]]);
    assert.deepEqual(planTasks(shards, 3).map((t) => t.map((s) => s.shardId)), [[0, 1], [2], [3]]);
  });
  test('subset counts by binary search (right − left)', () => {
    const uids = ['00000000000000000000000000000001', 'ff000000000000000000000000000000', '00000000000000000000000000000001', '0000000000000000ffffffffffffffff'];
    const index = new SubsetIndex(new Uint32Array(encodeSubset(uids).buffer, 128));
    assert.equal(index.count(SubsetIndex.parseUid('00000000000000000000000000000001')!), 2);
    assert.equal(index.count(SubsetIndex.parseUid('1')!), 2); // int(uid, 16) semantics
    assert.equal(index.count(SubsetIndex.parseUid('0000000000000000FFFFFFFFFFFFFFFF')!), 1);
    assert.equal(index.count(SubsetIndex.parseUid('ff000000000000000000000000000001')!), 0);
    assert.equal(SubsetIndex.parseUid('1'.repeat(33)), undefined);
  });
});

describe('dcw reshard on a small embedded pool', () => {
  test('repeats, keys, counters, stats, sample_ids.npy, meta.json and GNU tar', async () => {
    // uid → repeats: from shards 0, 1, 3 (found), 2 (missing shard) and one not in the pool
    const want = new Map<string, number>();
    samples[0]!.slice(0, 20).forEach((s, i) => want.set(uidOf(s), 1 + (i % 3)));
    samples[1]!.slice(5, 9).forEach((s) => want.set(uidOf(s), 1));
    samples[3]!.slice(-3).forEach((s) => want.set(uidOf(s), 2));
    const lost = [uidOf(samples[2]![0]!), 'f'.repeat(32)];
    const list = [...[...want].flatMap(([u, k]) => Array(k).fill(u) as string[]), ...lost];
    const subsetFile = join(dir, 'subset.npy');
    writeFileSync(subsetFile, encodeSubset(list));
    const out = join(dir, 'out');

    const program = new Command().exitOverride();
    registerReshard(program);
    const logs: string[] = [];
    const origWrite = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (logs.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      await program.parseAsync(['node', 'dcw', 'reshard', '-i', input, '-o', out, '-s', subsetFile, '--shard-size', '7', '-j', '2']);
    } finally {
      process.stderr.write = origWrite;
    }
    assert.ok(logs.some((l) => /1 shards were missing/.test(l)), logs.join(''));
    assert.ok(logs.some((l) => /2 images in the subset were not found/.test(l)), logs.join(''));

    const expectedOut = [...want.values()].reduce((a, b) => a + b, 0);
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as Record<string, string | number>;
    assert.equal(meta.processed_count, 150 + 150 + 84);
    assert.equal(meta.output_count, expectedOut);
    assert.equal(meta.output_shard_format, '{:08d}.tar');
    assert.equal(meta.output_shard_count, Math.ceil(samplesOfWorker(want, 0) / 7) + Math.ceil(samplesOfWorker(want, 1) / 7));
    assert.equal(meta.worker_success, 2);
    assert.equal(meta.num_shards, 'None');
    assert.deepEqual(readFileSync(join(out, 'sample_ids.npy')), readFileSync(subsetFile));

    // every output sample: key {uid}-{j}, files byte-identical to the input sample
    const byUid = new Map(samples.flat().map((s) => [uidOf(s), s]));
    const seen = new Map<string, number[]>();
    let total = 0;
    for (let k = 0; k < Number(meta.output_shard_count); k++) {
      const tar = join(out, formatShardName('{:08d}.tar', k));
      const got = await readAll(tar);
      const stats = readFileSync(join(out, formatShardName('{:08d}_stats.json', k)), 'utf8');
      assert.equal(stats, `{"successes": ${got.length}}`);
      assert.ok(got.length <= 7 && got.length > 0);
      total += got.length;
      for (const s of got) {
        const m = /^([0-9a-f]{32})-(\d+)$/.exec(s.__key__);
        assert.ok(m, s.__key__);
        const source = byUid.get(m[1]!)!;
        assert.deepEqual([...s.files.keys()].sort(), [...source.files.keys()].sort());
        for (const [ext, data] of source.files) assert.deepEqual(s.files.get(ext), data);
        seen.set(m[1]!, [...(seen.get(m[1]!) ?? []), Number(m[2])]);
      }
      const gnu = spawnSync('tar', ['-tvf', tar], { encoding: 'utf8' });
      assert.equal(gnu.status, 0);
      assert.equal(gnu.stderr, '');
      assert.equal(gnu.stdout.trim().split('\n').length, got.length * 3);
    }
    assert.equal(total, expectedOut);
    assert.deepEqual(new Map([...seen].map(([u, js]) => [u, js.sort().join(',')])), new Map([...want].map(([u, k]) => [u, Array.from({ length: k }, (_, j) => j).join(',')])));
    assert.deepEqual(readdirSync(out).filter((n) => n.startsWith('.')), []); // no temporary files left

    // a non-empty output directory is refused, and left as it was
    const before = readdirSync(out).sort();
    await assert.rejects(reshard({ inputDir: input, outputDir: out, subsetFile, log: quiet }), /refusing to overwrite non-empty directory/);
    assert.deepEqual(readdirSync(out).sort(), before);

    // --overwrite with one worker: the same samples; and the same flags twice give the same bytes
    await reshard({ inputDir: input, outputDir: out, subsetFile, overwrite: true, numWorkers: 1, shardSize: 7, log: quiet });
    const once = readdirSync(out).filter((n) => n.endsWith('.tar')).map((n) => readFileSync(join(out, n)));
    await reshard({ inputDir: input, outputDir: out, subsetFile, overwrite: true, numWorkers: 1, shardSize: 7, log: quiet });
    const twice = readdirSync(out).filter((n) => n.endsWith('.tar')).map((n) => readFileSync(join(out, n)));
    assert.equal(once.length, Math.ceil(expectedOut / 7));
    assert.deepEqual(twice, once);
  });

  test('an unsorted subset file is refused before the output directory is touched', async () => {
    const bad = join(dir, 'unsorted.npy');
    const bytes = encodeSubset(['0'.repeat(32), 'f'.repeat(32)]);
    const first = bytes.slice(128, 144);
    bytes.copyWithin(128, 144, 160); // swap the two records: a valid .npy, not sorted
    bytes.set(first, 144);
    writeFileSync(bad, bytes);
    const out = join(dir, 'out-unsorted');
    await assert.rejects(reshard({ inputDir: input, outputDir: out, subsetFile: bad, log: quiet }), /not sorted/);
    assert.equal(existsSync(out), false);
  });
});

/** Output samples of worker w when two workers split the 4 shards (0,1 | 3): only for the shard count check. */
function samplesOfWorker(want: Map<string, number>, w: number): number {
  const shards = w === 0 ? [0, 1] : [3];
  let n = 0;
  for (const s of shards) for (const sample of samples[s]!) n += want.get(uidOf(sample)) ?? 0;
  return n;
}
