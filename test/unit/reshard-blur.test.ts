// resharder.py's blur options: the blur (img2dataset's BoundingBoxBlurrer) against an independent numpy
// reference (test/fixtures/blur/reference.py, its outputs in cases.json), and `dcw reshard
// --blur-metadata-map --apply-blur --inject-blur-metadata` on shards whose face boxes a DuckDB-written
// parquet holds: blurred samples become webp, boxes go into the json as json.dumps writes them, a uid the
// parquet lacks is written unblurred with the official error, and meta.json counts the blurs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import sharp from 'sharp';
import { encodeSubset } from '../../src/core/formats/uid.ts';
import { readSamples, writeSamples } from '../../src/core/formats/webdataset.ts';
import { pyJsonDumps } from '../../src/core/eval/pyjson.ts';
import { blurBoundingBoxes, gaussianKernel, reflect101 } from '../../src/core/reshard/blur.ts';
import { dcw } from '../helpers/cli.ts';

const FIX = join(import.meta.dirname, '../fixtures/blur');
const fixture = JSON.parse(readFileSync(join(FIX, 'cases.json'), 'utf8')) as {
  cases: { name: string; width: number; height: number; boxes: number[][]; input: number[]; expected: number[] }[];
};

function rgba(rgb: readonly number[], width: number, height: number) {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    data.set([rgb[i * 3]!, rgb[i * 3 + 1]!, rgb[i * 3 + 2]!, 255], i * 4);
  }
  return { width, height, data };
}

for (const c of fixture.cases) {
  test(`blur: ${c.name} — the numpy reference's pixels (±1 where float rounding order differs)`, () => {
    const out = blurBoundingBoxes(rgba(c.input, c.width, c.height), c.boxes);
    let differ = 0;
    for (let i = 0; i < c.width * c.height; i++) {
      for (let ch = 0; ch < 3; ch++) {
        const d = Math.abs(out.data[i * 4 + ch]! - c.expected[i * 3 + ch]!);
        assert.ok(d <= 1, `pixel ${i} channel ${ch}: ${out.data[i * 4 + ch]} vs ${c.expected[i * 3 + ch]}`);
        if (d) differ++;
      }
      assert.equal(out.data[i * 4 + 3], 255);
    }
    assert.ok(differ <= c.width * c.height * 3 * 0.01, `${differ} values off by one`);
    const unchanged = Array.from(out.data).every((v, i) => v === rgba(c.input, c.width, c.height).data[i]);
    // the official quirks: a grown box starting left of 0 is a numpy slice from the far edge (empty), and a
    // zero-size box blurs with a 1-tap kernel; both leave the picture as it was
    const quirk = c.name.startsWith('box at the left edge') || c.name.startsWith('a zero-size box');
    assert.equal(unchanged, quirk || !c.boxes.length, unchanged ? 'the blur changed nothing' : 'the blur changed the picture');
  });
}

test("cv2's kernel and border: normalised weights, REFLECT_101 also for kernels longer than the row", () => {
  const k = gaussianKernel(5, 1.1);
  assert.ok(Math.abs(k.reduce((a, b) => a + b, 0) - 1) < 1e-6);
  assert.equal(k[0], k[4]);
  assert.deepEqual([-3, -2, -1, 0, 1, 2, 3, 4, 5, 6].map((p) => reflect101(p, 3)), [1, 2, 1, 0, 1, 2, 1, 0, 1, 2]);
  assert.deepEqual([-1, 0, 1].map((p) => reflect101(p, 1)), [0, 0, 0]);
});

let tmp: string;
const UID_A = '1a'.padEnd(32, '0');
const UID_C = '5c'.padEnd(32, '0');
const UID_B = '9b'.padEnd(32, '0');

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'dcw-reshard-blur-'));
  const input = join(tmp, 'in');
  mkdirSync(input);
  const samples = [];
  for (const [i, uid] of [UID_A, UID_C, UID_B].entries()) {
    const c = fixture.cases[0]!;
    const jpg = await sharp(Buffer.from(c.input.map((v) => (v + i * 40) % 256)), { raw: { width: c.width, height: c.height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
    const json = `{\n    "uid": "${uid}",\n    "caption": "caf\\u00e9 ${i}",\n    "width": ${c.width},\n    "height": ${c.height},\n    "score": 1.0\n}`;
    samples.push({ __key__: String(i).padStart(12, '0'), files: { jpg: new Uint8Array(jpg), json: new TextEncoder().encode(json), txt: new TextEncoder().encode(`café ${i}`) } });
  }
  const tar = new Uint8Array(await new Response(writeSamples(samples)).arrayBuffer());
  writeFileSync(join(input, '00000000.tar'), tar);
  writeFileSync(join(input, '00000000_stats.json'), '{"successes": 3}');
  // face boxes as CommonPool stores them (list<list<double>>), written by DuckDB; UID_C is not in the parquet
  const duck = await DuckDBInstance.create(':memory:');
  const conn = await duck.connect();
  await conn.run(`COPY (SELECT * FROM (VALUES ('${UID_B}', []::DOUBLE[][]), ('${UID_A}', [[0.25, 0.25, 0.75, 0.75], [0.0, 0.5, 0.1, 0.9]]::DOUBLE[][])) t(uid, face_bboxes)) TO '${join(tmp, 'faces.parquet')}' (FORMAT parquet)`);
  conn.closeSync();
  writeFileSync(join(tmp, 'map.json'), JSON.stringify({ a: { parquet: join(tmp, 'faces.parquet'), shards: [join(input, '00000000.tar')] } }));
  writeFileSync(join(tmp, 'subset.npy'), encodeSubset([UID_A, UID_C, UID_B, UID_B]));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test('dcw reshard --blur-metadata-map --apply-blur --inject-blur-metadata', async () => {
  const out = join(tmp, 'out');
  const run = dcw(['reshard', '-i', join(tmp, 'in'), '-o', out, '-s', join(tmp, 'subset.npy'), '-j', '1',
    '--blur-metadata-map', join(tmp, 'map.json'), '--apply-blur', '--inject-blur-metadata']);
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, new RegExp(`failed to find blur bboxes for .*00000000\\.tar, ${UID_C}`));
  const tarList = spawnSync('tar', ['-tf', join(out, '00000000.tar')], { encoding: 'utf8' });
  assert.equal(tarList.status, 0, tarList.stderr);
  assert.deepEqual(tarList.stdout.trim().split('\n'), [
    `${UID_A}-0.json`, `${UID_A}-0.txt`, `${UID_A}-0.webp`,
    `${UID_C}-0.jpg`, `${UID_C}-0.json`, `${UID_C}-0.txt`,
    `${UID_B}-0.jpg`, `${UID_B}-0.json`, `${UID_B}-0.txt`,
    `${UID_B}-1.jpg`, `${UID_B}-1.json`, `${UID_B}-1.txt`,
  ]);
  const input = new Map<string, Map<string, Uint8Array>>();
  for await (const s of readSamples(new Blob([readFileSync(join(tmp, 'in/00000000.tar'))]).stream(), 'in')) input.set(JSON.parse(new TextDecoder().decode(s.files.get('json')!)).uid, s.files);
  const output = new Map<string, Map<string, Uint8Array>>();
  for await (const s of readSamples(new Blob([readFileSync(join(out, '00000000.tar'))]).stream(), 'out')) output.set(s.__key__, s.files);
  // the blurred sample: json re-dumped by json.dumps (ints stay ints, floats keep .0, non-ASCII escaped)
  const json = new TextDecoder().decode(output.get(`${UID_A}-0`)!.get('json')!);
  assert.equal(json, pyJsonDumps(new Map<string, never>([['uid', UID_A as never], ['caption', 'café 0' as never], ['width', 48n as never], ['height', 32n as never], ['score', 1 as never],
    ['face_bboxes', [[0.25, 0.25, 0.75, 0.75], [0, 0.5, 0.1, 0.9]] as never]])));
  assert.match(json, /"caption": "caf\\u00e9 0", "width": 48, "height": 32, "score": 1\.0, "face_bboxes": \[\[0\.25, 0\.25, 0\.75, 0\.75\], \[0\.0, 0\.5, 0\.1, 0\.9\]\]\}$/);
  // its picture: the blur of the decoded jpg, through lossy webp q100
  const webp = output.get(`${UID_A}-0`)!.get('webp')!;
  const decoded = await sharp(webp).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([decoded.info.width, decoded.info.height, decoded.info.format], [48, 32, 'raw']);
  const source = await sharp(input.get(UID_A)!.get('jpg')!).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const expected = blurBoundingBoxes({ width: 48, height: 32, data: new Uint8ClampedArray(source.data) }, [[0.25, 0.25, 0.75, 0.75], [0, 0.5, 0.1, 0.9]]);
  let err = 0;
  let changed = 0;
  for (let i = 0; i < 48 * 32; i++) {
    for (let c = 0; c < 3; c++) {
      err += Math.abs(decoded.data[i * decoded.info.channels + c]! - expected.data[i * 4 + c]!);
      changed += Math.abs(expected.data[i * 4 + c]! - source.data[i * 4 + c]!);
    }
  }
  assert.ok(err / (48 * 32 * 3) < 2, `webp q100 should keep the blurred pixels: mean error ${err / (48 * 32 * 3)}`);
  assert.ok(changed / (48 * 32 * 3) > 2, 'the blur should change the picture');
  // no boxes (B) and no parquet row (C): the files as they were
  for (const [key, uid] of [[`${UID_B}-1`, UID_B], [`${UID_C}-0`, UID_C]] as const) {
    for (const ext of ['jpg', 'json', 'txt']) assert.deepEqual(output.get(key)!.get(ext), input.get(uid)!.get(ext), `${key}.${ext}`);
  }
  const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(meta.blur_count, 1);
  assert.equal(meta.apply_blur, 'True');
  assert.equal(meta.inject_blur_metadata, 'True');
  assert.equal(meta.blur_metadata_map, join(tmp, 'map.json'));
  assert.equal(meta.output_count, 4);
  assert.equal(meta.processed_count, 3);
});

test('--inject-blur-metadata alone keeps the jpg; a bad map or quality is a one-line error before anything is written', () => {
  const out = join(tmp, 'inject');
  const run = dcw(['reshard', '-i', join(tmp, 'in'), '-o', out, '-s', join(tmp, 'subset.npy'), '-j', '1', '--blur-metadata-map', join(tmp, 'map.json'), '--inject-blur-metadata']);
  assert.equal(run.status, 0, run.stderr);
  const names = spawnSync('tar', ['-tf', join(out, '00000000.tar')], { encoding: 'utf8' }).stdout;
  assert.match(names, new RegExp(`${UID_A}-0\\.jpg`));
  assert.doesNotMatch(names, /\.webp/);
  writeFileSync(join(tmp, 'bad-map.json'), '{"a": {"parquet": 3}}');
  for (const [args, message] of [
    [['--blur-metadata-map', join(tmp, 'bad-map.json')], /^dcw: reshard: .*bad-map\.json: entry "a" needs "parquet" \(a path\) and "shards" \(a list of paths\)\n$/],
    [['--blur-metadata-map', join(tmp, 'nope.json')], /^dcw: reshard: --blur-metadata-map .*nope\.json: no such file\n$/],
    [['--reencode-webp-quality', 'best'], /^dcw: reshard: --reencode-webp-quality must be a whole number from 0 to 100, got best\n$/],
  ] as const) {
    const dir = join(tmp, `bad-${Math.random().toString(16).slice(2)}`);
    const bad = dcw(['reshard', '-i', join(tmp, 'in'), '-o', dir, '-s', join(tmp, 'subset.npy'), ...args]);
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, message);
    assert.equal(spawnSync('ls', [dir]).status, 2, 'the output directory should not exist');
  }
});
