// The embedded pool: a small real build (a few hundred samples from the real packages), twice, byte-identical;
// its layout read back with the project's readers; noise counts equal to the documented quotas; an interrupted
// build that finishes with the same bytes; renderer crashes isolated; contamination found when planted.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { readCommonPoolMetadata, readParquet } from '../../src/core/formats/parquet.ts';
import { decodeSubset } from '../../src/core/formats/uid.ts';
import { readSamples, writeSamples } from '../../src/core/formats/webdataset.ts';
import { CAPTION_QUOTAS, IMAGE_QUOTAS } from '../../src/core/pool/plan.ts';
import { computeKey, poolUid, pythonJsonDumps, TRUTH_COLUMNS } from '../../src/core/pool/schema.ts';
import { sha256Hex } from '../../src/core/pool/sha256.ts';
import { writeFileAtomic } from '../../server/io/streams.ts';
import { checkContamination } from '../../server/pool/contamination.ts';
import { renderAll } from '../../server/pool/render-pool.ts';
import { fileReadStream } from '../../server/io/streams.ts';

const REPO = join(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/dcw.js');
const FRACTION = '0.004';
const tmp = mkdtempSync(join(tmpdir(), 'dcw-pool-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function build(name: string, cache: string, extra: string[] = []) {
  const out = join(tmp, name, 'pool');
  const evalOut = join(tmp, name, 'eval');
  const run = spawnSync(process.execPath, [CLI, 'pool', 'build', '--out', out, '--eval-out', evalOut, '--cache', cache, '--fraction', FRACTION, '--json', ...extra], {
    cwd: REPO, encoding: 'utf8', env: { ...process.env, CI: 'true' }, timeout: 120_000,
  });
  assert.equal(run.status, 0, run.stderr);
  return { out, evalOut, report: JSON.parse(run.stdout) as { samples: number; counts: Record<string, Record<string, number>>; skipped: unknown[]; droppedAsTestDuplicates: unknown[] } };
}

function hashes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

describe('pool schema', () => {
  test('sha256 matches node:crypto', () => {
    for (const s of ['', 'abc', 'é'.repeat(40), 'x'.repeat(1000)]) assert.equal(sha256Hex(s), createHash('sha256').update(s).digest('hex'));
  });
  test('keys, uids and json follow img2dataset', () => {
    assert.equal(computeKey(0, 0), '000000000000');
    assert.equal(computeKey(3, 42), '000000030042');
    assert.match(poolUid('npm:openmoji@17.0.0/color/svg/1F436.svg'), /^[0-9a-f]{32}$/);
    assert.notEqual(poolUid('npm:a@1/x.svg'), poolUid('npm:a@1/x.svg#2'));
    assert.equal(pythonJsonDumps({ a: 'é😀"', b: null, c: [], d: [1.5] }), '{\n    "a": "\\u00e9\\ud83d\\ude00\\"",\n    "b": null,\n    "c": [],\n    "d": [\n        1.5\n    ]\n}');
  });
});

describe('pool build', () => {
  let a: ReturnType<typeof build>;
  let b: ReturnType<typeof build>;
  before(() => {
    a = build('a', join(tmp, 'cache-a'));
    b = build('b', join(tmp, 'cache-b'));
  });

  test('two builds (separate render caches) give identical bytes for every file', () => {
    const ha = hashes(a.out);
    const hb = hashes(b.out);
    assert.deepEqual([...ha.keys()], [...hb.keys()]);
    assert.deepEqual(ha, hb);
    assert.deepEqual(hashes(a.evalOut), hashes(b.evalOut));
    assert.ok(ha.size >= 8);
  });

  test('the pool is laid out like CommonPool and reads back with the project readers', async () => {
    const metaFiles = readdirSync(join(a.out, 'metadata'));
    assert.ok(metaFiles.length >= 1);
    const uids = new Map<string, { url: string; text: string; sha256: string }>();
    for (const f of metaFiles) {
      assert.match(f, /^[0-9a-f]{32}\.parquet$/);
      const table = await readCommonPoolMetadata(readFileSync(join(a.out, 'metadata', f)), f);
      for (let i = 0; i < table.numRows; i++) {
        const row = table.get(i)!.toJSON() as Record<string, unknown>;
        assert.match(String(row.uid), /^[0-9a-f]{32}$/);
        assert.match(String(row.url), /^npm:(@[a-z0-9-]+\/)?[a-z0-9.-]+@\d+\.\d+\.\d+\//);
        assert.equal(row.clip_b32_similarity_score, null);
        assert.equal(typeof row.original_width, 'bigint');
        uids.set(String(row.uid), { url: String(row.url), text: String(row.text), sha256: String(row.sha256) });
      }
    }
    assert.equal(uids.size, a.report.samples);
    const tars = readdirSync(join(a.out, 'shards')).filter((f) => f.endsWith('.tar'));
    let seen = 0;
    for (const [s, tar] of tars.entries()) {
      assert.equal(tar, `${String(s).padStart(8, '0')}.tar`);
      let idx = 0;
      for await (const sample of readSamples(fileReadStream(join(a.out, 'shards', tar)), tar)) {
        assert.deepEqual([...sample.files.keys()].sort(), ['jpg', 'json', 'txt']);
        assert.equal(sample.__key__, computeKey(s, idx++));
        const json = JSON.parse(new TextDecoder().decode(sample.files.get('json')!)) as Record<string, unknown>;
        assert.deepEqual(Object.keys(json), ['uid', 'face_bboxes', 'caption', 'url', 'key', 'status', 'error_message', 'width', 'height', 'original_width', 'original_height', 'exif', 'sha256']);
        const meta = uids.get(String(json.uid))!;
        assert.ok(meta, `uid ${json.uid} of ${tar} is in the metadata`);
        assert.equal(new TextDecoder().decode(sample.files.get('txt')!), meta.text);
        assert.equal(json.sha256, createHash('sha256').update(sample.files.get('jpg')!).digest('hex'));
        assert.equal(json.sha256, meta.sha256);
        const img = await sharp(sample.files.get('jpg')!).metadata();
        assert.equal(img.format, 'jpeg');
        assert.deepEqual([img.width, img.height], [json.width, json.height]);
        seen++;
      }
      const stats = JSON.parse(readFileSync(join(a.out, 'shards', `${String(s).padStart(8, '0')}_stats.json`), 'utf8'));
      assert.equal(stats.successes, idx);
      const shardTable = await readParquet(readFileSync(join(a.out, 'shards', `${String(s).padStart(8, '0')}.parquet`)), tar);
      assert.equal(shardTable.numRows, idx);
      assert.deepEqual(shardTable.schema.fields.map((f) => f.name).slice(0, 5), ['uid', 'face_bboxes', 'caption', 'url', 'key']);
    }
    assert.equal(seen, a.report.samples);
    assert.ok(readFileSync(join(a.out, 'NOTICE'), 'utf8').includes('openmoji@17.0.0'));
  });

  test('ground truth: one row per uid, outside metadata/, counts as reported and as the quotas say', async () => {
    const truth = await readParquet(readFileSync(join(a.out, 'ground_truth', 'truth.parquet')), 'truth.parquet');
    assert.deepEqual(truth.schema.fields.map((f) => f.name), [...TRUTH_COLUMNS]);
    assert.equal(truth.numRows, a.report.samples);
    const rows = truth.toArray().map((r) => r.toJSON() as Record<string, string>);
    const count = (pred: (r: Record<string, string>) => boolean) => rows.filter(pred).length;
    for (const [kind, n] of Object.entries(a.report.counts.caption_kind!)) assert.equal(count((r) => r.caption_kind === kind), n);
    for (const [kind, n] of Object.entries(a.report.counts.image_kind!)) assert.equal(count((r) => r.image_kind === kind), n);
    // exact quotas, per component (no row was skipped or dropped in this small build)
    assert.equal(a.report.skipped.length + a.report.droppedAsTestDuplicates.length, 0);
    for (const component of ['emoji', 'icon'] as const) {
      const n = count((r) => r.component === component);
      for (const kind of ['identifier', 'mismatched', 'generic'] as const) {
        assert.equal(count((r) => r.component === component && r.caption_kind === kind), Math.round(CAPTION_QUOTAS[component][kind]! * n), `${component} ${kind}`);
      }
    }
    const originals = count((r) => r.image_kind !== 'exact_duplicate' && r.image_kind !== 'near_duplicate' && r.image_kind !== 'package_copy');
    for (const kind of ['tiny', 'odd_aspect', 'exact_duplicate', 'near_duplicate'] as const) {
      assert.equal(count((r) => r.image_kind === kind), Math.round(IMAGE_QUOTAS[kind] * originals), kind);
    }
    // ground truth per row: a duplicate has a caption (and a language) of its own
    for (const r of rows) {
      if (r.caption_kind === 'identifier') assert.equal(r.language, 'zxx');
      if (r.caption_kind === 'clean') assert.equal(r.language, 'en');
      if (r.caption_kind === 'other_language') assert.ok(!r.language.startsWith('en'));
    }
  });

  test('original sizes: never below the stored picture, shared by exact duplicates, and size rules keep most clean rows', async () => {
    const truth = await readParquet(readFileSync(join(a.out, 'ground_truth', 'truth.parquet')), 'truth.parquet');
    const kindOf = new Map(truth.toArray().map((r) => [String(r.uid), { kind: String(r.image_kind), of: String(r.duplicate_of) }]));
    const original = new Map<string, [number, number]>();
    const rows: { uid: string; kind: string; of: string; stored: [number, number]; orig: [number, number] }[] = [];
    for (const tar of readdirSync(join(a.out, 'shards')).filter((f) => f.endsWith('.tar'))) {
      for await (const sample of readSamples(fileReadStream(join(a.out, 'shards', tar)), tar)) {
        const json = JSON.parse(new TextDecoder().decode(sample.files.get('json')!));
        const t = kindOf.get(json.uid)!;
        rows.push({ uid: json.uid, ...t, stored: [json.width, json.height], orig: [json.original_width, json.original_height] });
        original.set(json.uid, [json.original_width, json.original_height]);
      }
    }
    for (const r of rows) {
      assert.ok(r.orig[0] >= r.stored[0] && r.orig[1] >= r.stored[1], `${r.uid}: original ${r.orig} below stored ${r.stored}`);
      if (r.kind === 'tiny' || r.kind === 'package_copy') assert.deepEqual(r.orig, r.stored, r.kind);
      if (r.kind === 'exact_duplicate' && original.has(r.of)) assert.deepEqual(r.orig, original.get(r.of), 'an exact duplicate reports its source\'s size');
    }
    // basic_filter's size rules (min side >= 200, aspect <= 3) act on real-looking sizes: most clean rows pass, no tiny one does.
    const passes = (r: (typeof rows)[number]) => Math.min(...r.orig) >= 200 && Math.max(...r.orig) / Math.min(...r.orig) <= 3;
    const clean = rows.filter((r) => r.kind === 'clean');
    const share = clean.filter(passes).length / clean.length;
    assert.ok(share > 0.5 && share < 0.95, `share of clean rows passing the size rules: ${share}`);
    assert.equal(rows.filter((r) => r.kind === 'tiny' && passes(r)).length, 0);
    assert.equal(rows.filter((r) => r.kind === 'odd_aspect' && passes(r)).length, 0);
  });

  test('the evaluation suite is in the clip_benchmark layout, with a DataComp-like task list', async () => {
    const yml = readFileSync(join(a.evalOut, 'tasklist.yml'), 'utf8');
    for (const key of ['emoji_group', 'emoji_subgroup', 'flag_country', 'icon_category', 'emoji_retrieval']) {
      assert.match(yml, new RegExp(`^${key}:\\n  name: .+\\n  size: \\d+\\n  main_metric: (acc1|mean_per_class_recall|mean_recall@1)`, 'm'));
      const dir = join(a.evalOut, key);
      assert.equal(readFileSync(join(dir, 'test', 'nshards.txt'), 'utf8'), '1\n');
      const retrieval = existsSync(join(dir, 'dataset_type.txt'));
      const classes = retrieval ? [] : readFileSync(join(dir, 'classnames.txt'), 'utf8').trimEnd().split('\n');
      if (!retrieval) assert.ok(readFileSync(join(dir, 'zeroshot_classification_templates.txt'), 'utf8').includes('{c}'));
      let n = 0;
      for await (const s of readSamples(fileReadStream(join(dir, 'test', '0.tar')), `${key}/0.tar`)) {
        assert.equal(s.__key__, `s${String(n++).padStart(7, '0')}`);
        assert.equal((await sharp(s.files.get('png')!).metadata()).format, 'png');
        if (retrieval) assert.ok(new TextDecoder().decode(s.files.get('txt')!).length > 0);
        else {
          const cls = Number(new TextDecoder().decode(s.files.get('cls')!));
          assert.ok(Number.isInteger(cls) && cls >= 0 && cls < classes.length);
        }
      }
      assert.ok(n > 0, key);
    }
  });

  test('contamination: no test picture in the pool; planted copies are found and listed', async () => {
    const clean = await checkContamination(join(a.out, 'shards'), a.evalOut);
    assert.equal(clean.matches.length, 0);
    assert.equal(clean.pool, a.report.samples);
    // plant: test pictures re-encoded as JPEG, every second one also padded to a banner
    const planted: { __key__: string; files: Record<string, Uint8Array> }[] = [];
    const uids: string[] = [];
    let k = 0;
    for (const task of ['emoji_group', 'icon_category', 'flag_country']) {
      for await (const s of readSamples(fileReadStream(join(a.evalOut, task, 'test', '0.tar')), task)) {
        const png = s.files.get('png')!;
        let img = sharp(png).flatten({ background: '#ffffff' });
        if (k % 2 === 1) img = img.extend({ left: 100, right: 100, background: '#ffffff' });
        const jpg = await img.jpeg({ quality: 90 }).toBuffer();
        const uid = sha256Hex(`planted ${k}`).slice(0, 32);
        uids.push(uid);
        planted.push({ __key__: computeKey(0, k), files: { jpg, json: new TextEncoder().encode(JSON.stringify({ uid })), txt: new TextEncoder().encode('x') } });
        k++;
        if (k % 2 === 0) break;
      }
    }
    const dirty = join(tmp, 'dirty');
    mkdirSync(dirty, { recursive: true });
    await writeFileAtomic(join(dirty, '00000099.tar'), writeSamples(planted));
    const report = await checkContamination(join(tmp, 'dirty'), a.evalOut);
    assert.deepEqual(report.offenders, [...uids].sort());
    // the CLI writes the offenders as a DataComp subset file
    const npy = join(tmp, 'offenders.npy');
    const run = spawnSync(process.execPath, [CLI, 'contamination', '--pool', dirty, '--eval', a.evalOut, '--write-uids', npy], { cwd: REPO, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stdout, /test pictures found in the pool \(6 pool samples match\)/);
    assert.deepEqual(decodeSubset(readFileSync(npy), npy), [...uids].sort());
  });

  test('a build killed half-way and started again finishes with the same bytes', async () => {
    const out = join(tmp, 'k', 'pool');
    const evalOut = join(tmp, 'k', 'eval');
    const cache = join(tmp, 'cache-k');
    const args = [CLI, 'pool', 'build', '--out', out, '--eval-out', evalOut, '--cache', cache, '--fraction', FRACTION];
    for (const delay of [2500, 4500]) {
      const child = spawn(process.execPath, args, { cwd: REPO, stdio: 'ignore' });
      const exited = new Promise((r) => child.once('exit', r)); // listen before the kill: it may finish first
      await new Promise((r) => setTimeout(r, delay));
      child.kill('SIGKILL');
      await exited;
    }
    const done = spawnSync(process.execPath, args, { cwd: REPO, encoding: 'utf8', timeout: 120_000 });
    assert.equal(done.status, 0, done.stderr);
    assert.deepEqual(hashes(out), hashes(a.out));
    assert.deepEqual(hashes(evalOut), hashes(a.evalOut));
  });
});

test('a renderer crash costs only the picture it was drawing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcw-render-'));
  try {
    const noto = join(REPO, 'node_modules/@svgmoji/noto/sprites/all.svg');
    const spec = { size: 32, bg: [255, 255, 255] as [number, number, number], format: 'png' as const, quality: 100 };
    const jobs = [
      { id: 1, ref: { type: 'sprite' as const, file: noto, id: '1F436' }, aspect: 1, spec, out: join(dir, 'dog.png') },
      { id: 2, ref: { type: 'sprite' as const, file: noto, id: '1F3F3-FE0F-200D-1F308' }, aspect: 1, spec, out: join(dir, 'rainbow.png') },
      { id: 3, ref: { type: 'sprite' as const, file: noto, id: '1F431' }, aspect: 1, spec, out: join(dir, 'cat.png') },
    ];
    const result = await renderAll(jobs, { workers: 1 });
    assert.deepEqual([...result.failed.keys()], [2]);
    assert.match(result.failed.get(2)!, /crash/);
    assert.equal(result.crashes, 1);
    assert.ok(existsSync(join(dir, 'dog.png')) && existsSync(join(dir, 'cat.png')) && !existsSync(join(dir, 'rainbow.png')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
