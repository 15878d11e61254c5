// Bring your own data (src/core/pool/byod.ts) on real pictures (test/fixtures/images, made by ImageMagick):
// uids against Python's hashlib, a folder with .txt captions and a captions table, shards read back by GNU tar,
// Python's json and our reader, the metadata parquet read back by DuckDB, tars and an evaluation suite
// written by Python's tarfile, URL rows fetched from a real local HTTP server, and the contamination check.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { readSamples } from '../../src/core/formats/webdataset.ts';
import {
  buildByodPool, byodUid, describeFetchFailure, fetchUrlInputs, findContamination, folderInputs, parseCsv, prepareSamples,
  readEvalPictures, readTextTable, storedSize, tarInputs, uidCollisions, urlRows, type ByodInput, type FolderFile,
} from '../../src/core/pool/byod.ts';
import { FileEvalStore } from '../../server/eval/file-store.ts';
import { SharpImageCodec } from '../../server/io/image-codec.ts';
import { fileReadStream } from '../../server/io/streams.ts';

const IMAGES = join(import.meta.dirname, '../fixtures/images');
const codec = new SharpImageCodec();
const tmp = mkdtempSync(join(tmpdir(), 'dcw-byod-'));
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const image = (name: string) => new Uint8Array(readFileSync(join(IMAGES, name)));

after(() => rmSync(tmp, { recursive: true, force: true }));

function python(script: string, input?: string): string {
  const run = spawnSync('python3', ['-c', script], { input, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

function memoryFolder(files: Record<string, Uint8Array | string>): FolderFile[] {
  return Object.entries(files).map(([path, data]) => ({ path, read: async () => (typeof data === 'string' ? new TextEncoder().encode(data) : data) }));
}

async function readAll(stream: ReadableStream<Uint8Array>) {
  const out = [];
  for await (const s of readSamples(stream, 'shard')) out.push(s);
  return out;
}

test('a uid is the first 128 bits of sha256(sha256_hex(image) + "\\n" + caption), as the Python one-liner computes it', () => {
  const cases = [['photo-q95.jpg', 'a photo of a disc and a bar'], ['alpha.png', 'Ünïcödé caption 🐶 with "quotes"']];
  const py = JSON.parse(python(`
import hashlib, json, sys
out = []
for path, caption in json.load(sys.stdin):
    img = open(path, 'rb').read()
    out.append(hashlib.sha256(f"{hashlib.sha256(img).hexdigest()}\\n{caption}".encode()).hexdigest()[:32])
print(json.dumps(out))`, JSON.stringify(cases.map(([f, c]) => [join(IMAGES, f!), c]))));
  assert.deepEqual(cases.map(([f, c]) => byodUid(sha256(image(f!)), c!)), py);
  for (const uid of py) assert.match(uid, /^[0-9a-f]{32}$/);
});

test('a folder pairs pictures with a .txt beside them or a row of a captions table, and lists what it cannot use', async () => {
  const { inputs, problems } = await folderInputs(memoryFolder({
    'b/photo-q95.jpg': image('photo-q95.jpg'),
    'b/photo-q95.txt': 'A photo, from its .txt\n',
    'a/alpha.png': image('alpha.png'),
    'a/palette.png': image('palette.png'),
    'a/captions.csv': 'File_Name,TEXT,other\nalpha.png,"a transparent square, with ""quotes""",x\npalette.png,  a palette picture  ,y\nmissing.png,nothing,z\n',
    'uncaptioned.webp': image('alpha.webp'),
    'empty.gif': image('pattern.gif'),
    'empty.txt': '   \n',
    'notes.md': 'not a picture',
  }));
  assert.deepEqual(inputs.map((i) => [i.where, i.caption]), [
    ['a/alpha.png', 'a transparent square, with "quotes"'],
    ['a/palette.png', 'a palette picture'],
    ['b/photo-q95.jpg', 'A photo, from its .txt'],
  ]);
  assert.deepEqual(problems.map((p) => p.where).sort(), ['a/captions.csv row 4', 'empty.txt', 'uncaptioned.webp']);
  assert.match(problems.find((p) => p.where === 'uncaptioned.webp')!.problem, /no caption: put it in uncaptioned\.txt/);
  assert.match(problems.find((p) => p.where === 'a/captions.csv row 4')!.problem, /no picture "missing\.png"/);
  // A captions table without a caption column is a one-line error naming the file and the columns it has.
  await assert.rejects(folderInputs(memoryFolder({ 'x.png': image('alpha.png'), 'c.csv': 'file,label\nx.png,1\n' })), /^FormatError: c\.csv: no caption column \(looked for caption, text, any case; found "file", "label"\)$/m);
});

test('pictures are checked, stored as img2dataset stores them, and bad or repeated ones are listed, not fatal', async () => {
  // A picture larger than 512 px (numpy's pixels, PNG-encoded by sharp) is shrunk, area-averaged, to JPEG.
  const pixels = spawnSync('python3', ['-c', `
import numpy as np, sys
y, x = np.mgrid[0:300, 0:700]
rgb = np.stack([x * 255 // 699, y * 255 // 299, (x + y) % 256], -1).astype(np.uint8)
sys.stdout.buffer.write(rgb.tobytes())`]).stdout;
  const sharp = (await import('sharp')).default;
  const bigPng = new Uint8Array(await sharp(pixels, { raw: { width: 700, height: 300, channels: 3 } }).png().toBuffer());
  const inputs: ByodInput[] = [
    { where: 'photo-q95.jpg', caption: 'a photo', read: async () => image('photo-q95.jpg') },
    { where: 'alpha.png', caption: 'alpha', read: async () => image('alpha.png') },
    { where: 'big.png', caption: 'wide gradient', read: async () => bigPng },
    { where: 'again.jpg', caption: 'a photo', read: async () => image('photo-q95.jpg') },
    { where: 'fake.jpg', caption: 'not a picture', read: async () => new TextEncoder().encode('<html>404</html>') },
    { where: 'cut.jpg', caption: 'truncated', read: async () => image('photo-q95.jpg').slice(0, 900) },
  ];
  const { samples, problems } = await prepareSamples(inputs, codec);
  assert.deepEqual(samples.map((s) => s.where), ['photo-q95.jpg', 'alpha.png', 'big.png']);
  assert.deepEqual(problems.map((p) => p.where), ['again.jpg', 'fake.jpg', 'cut.jpg']);
  assert.match(problems[0]!.problem, /same picture and caption as photo-q95\.jpg/);
  assert.match(problems[1]!.problem, /not a JPEG, PNG, WebP or GIF/);
  const [jpeg, alpha, wide] = samples;
  // A JPEG that needs no shrinking is kept byte for byte; its sha256 is of the original bytes.
  assert.deepEqual(jpeg!.image, image('photo-q95.jpg'));
  assert.equal(jpeg!.sha256, sha256(image('photo-q95.jpg')));
  assert.deepEqual([jpeg!.width, jpeg!.height, jpeg!.originalWidth, jpeg!.originalHeight], [96, 64, 96, 64]);
  // A PNG with alpha becomes a JPEG on white.
  const meta = await sharp(alpha!.image).metadata();
  assert.equal(meta.format, 'jpeg');
  assert.equal(meta.hasAlpha, false);
  assert.equal(alpha!.sha256, sha256(image('alpha.png')));
  // 700×300 → longest side 512: 512×219 (Python round(300·512/700) = round(219.43)).
  assert.deepEqual(storedSize(700, 300), [512, 219]);
  assert.deepEqual([wide!.width, wide!.height, wide!.originalWidth, wide!.originalHeight], [512, 219, 700, 300]);
  const wideMeta = await sharp(wide!.image).metadata();
  assert.deepEqual([wideMeta.format, wideMeta.width, wideMeta.height], ['jpeg', 512, 219]);
  // The area average keeps the gradient: the middle column of the stored picture is about half red.
  const raw = await sharp(wide!.image).raw().toBuffer({ resolveWithObject: true });
  const red = raw.data[(100 * 512 + 256) * raw.info.channels]!;
  assert.ok(Math.abs(red - 127) < 6, `red at the middle ${red}`);
});

test('shards, stats and metadata in CommonPool\'s layout: GNU tar, Python and DuckDB read back what was written', async () => {
  const inputs: ByodInput[] = ['photo-q95.jpg', 'alpha.png', 'palette.png', 'pattern.gif', 'photo-gray.jpg'].map((f, i) => ({
    where: f, caption: `caption ${i} — ünïcödé`, url: i === 0 ? 'https://example.org/p.jpg' : null, read: async () => image(f),
  }));
  const { samples, problems } = await prepareSamples(inputs, codec);
  assert.deepEqual(problems, []);
  const build = await buildByodPool(samples, { firstShard: 7, samplesPerShard: 3 });
  assert.deepEqual(build.shards.map((s) => s.path), ['shards/00000007.tar', 'shards/00000008.tar']);
  assert.deepEqual(build.shardFiles.map((f) => f.path), ['shards/00000007_stats.json', 'shards/00000007.parquet', 'shards/00000008_stats.json', 'shards/00000008.parquet']);
  assert.match(build.metadata.path, /^metadata\/[0-9a-f]{32}\.parquet$/);
  // Deterministic: the same samples give the same bytes.
  const again = await buildByodPool(samples, { firstShard: 7, samplesPerShard: 3 });
  assert.deepEqual(again.shards.map((s) => sha256(s.tar)), build.shards.map((s) => sha256(s.tar)));
  assert.equal(sha256(again.metadata.bytes), sha256(build.metadata.bytes));

  const dir = join(tmp, 'layout');
  mkdirSync(join(dir, 'shards'), { recursive: true });
  mkdirSync(join(dir, 'metadata'), { recursive: true });
  for (const f of [...build.shards.map((s) => ({ path: s.path, bytes: s.tar })), ...build.shardFiles, build.metadata]) writeFileSync(join(dir, f.path), f.bytes);

  // GNU tar: img2dataset's member names (compute_key: shard·10^oom + index, oom of 3 samples per shard = 1) and headers.
  const list = spawnSync('tar', ['-tvf', join(dir, 'shards/00000007.tar')], { encoding: 'utf8' });
  assert.equal(list.status, 0, list.stderr);
  const names = list.stdout.trim().split('\n').map((l) => l.split(/\s+/).pop());
  assert.deepEqual(names, ['000000000070.jpg', '000000000070.json', '000000000070.txt', '000000000071.jpg', '000000000071.json', '000000000071.txt', '000000000072.jpg', '000000000072.json', '000000000072.txt']);
  assert.match(list.stdout.split('\n')[0]!, /^-r--r--r-- bigdata\/bigdata/);
  const out = join(tmp, 'extracted');
  mkdirSync(out);
  assert.equal(spawnSync('tar', ['-xf', join(dir, 'shards/00000007.tar'), '-C', out]).status, 0);
  assert.deepEqual(new Uint8Array(readFileSync(join(out, '000000000070.jpg'))), samples[0]!.image);
  assert.equal(readFileSync(join(out, '000000000071.txt'), 'utf8'), 'caption 1 — ünïcödé');

  // Python's json: the sample json is json.dumps(meta, indent=4) with img2dataset's key order.
  const jsonText = readFileSync(join(out, '000000000070.json'), 'utf8');
  const py = JSON.parse(python(`
import json, sys
text = sys.stdin.read()
d = json.loads(text)
print(json.dumps({"same": json.dumps(d, indent=4) == text, "keys": list(d)}))`, jsonText));
  assert.deepEqual(py, { same: true, keys: ['uid', 'face_bboxes', 'caption', 'url', 'key', 'status', 'error_message', 'width', 'height', 'original_width', 'original_height', 'exif', 'sha256'] });

  // Our reader: every sample, with its uid in the json.
  const read = [...await readAll(fileReadStream(join(dir, 'shards/00000007.tar'))), ...await readAll(fileReadStream(join(dir, 'shards/00000008.tar')))];
  assert.deepEqual(read.map((s) => JSON.parse(new TextDecoder().decode(s.files.get('json'))).uid), samples.map((s) => s.uid));
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'shards/00000008_stats.json'), 'utf8')), { count: 2, successes: 2, failed_to_download: 0, failed_to_resize: 0, duration: 0, start_time: 0, end_time: 0, status_dict: { success: 2 } });

  // DuckDB: the official columns and types, and the values.
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  const describe = await db.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${join(dir, build.metadata.path)}')`);
  assert.deepEqual(describe.getRowObjects().map((r) => [r.column_name, r.column_type]), [
    ['uid', 'VARCHAR'], ['url', 'VARCHAR'], ['text', 'VARCHAR'], ['original_width', 'BIGINT'], ['original_height', 'BIGINT'],
    ['clip_b32_similarity_score', 'FLOAT'], ['clip_l14_similarity_score', 'FLOAT'], ['face_bboxes', 'DOUBLE[][]'], ['sha256', 'VARCHAR'],
  ]);
  const rows = (await db.runAndReadAll(`SELECT uid, url, text, original_width::INT AS w, original_height::INT AS h, clip_b32_similarity_score IS NULL AS noscore, len(face_bboxes) AS faces, sha256 FROM read_parquet('${join(dir, build.metadata.path)}')`)).getRowObjects();
  assert.deepEqual(rows.map((r) => ({ ...r })), samples.map((s) => ({
    uid: s.uid, url: s.url, text: s.caption, w: s.originalWidth, h: s.originalHeight, noscore: true, faces: 0n, sha256: s.sha256,
  })));
  const shardRows = (await db.runAndReadAll(`SELECT key, uid, status FROM read_parquet('${join(dir, 'shards/00000008.parquet')}')`)).getRowObjects();
  assert.deepEqual(shardRows.map((r) => [r.key, r.uid, r.status]), [['000000000080', samples[3]!.uid, 'success'], ['000000000081', samples[4]!.uid, 'success']]);

  // A merge refuses uids the pool has.
  assert.deepEqual(uidCollisions(samples, new Set([samples[2]!.uid, 'f'.repeat(32)])).map((s) => s.where), ['palette.png']);
});

test('webdataset tars written by Python\'s tarfile: picture, caption and uid come from the sample, bad samples are listed', async () => {
  const tarPath = join(tmp, 'in.tar');
  python(`
import io, json, tarfile, sys
uid = "0123456789abcdef0123456789ABCDEF"
with tarfile.open(sys.argv[1] if len(sys.argv) > 1 else ${JSON.stringify(tarPath)}, "w") as t:
    def add(name, data):
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    add("a.jpg", open(${JSON.stringify(join(IMAGES, 'photo-q95.jpg'))}, "rb").read())
    add("a.json", json.dumps({"uid": uid, "url": "https://example.org/a.jpg"}).encode())
    add("a.txt", "a photo".encode())
    add("b.png", open(${JSON.stringify(join(IMAGES, 'alpha.png'))}, "rb").read())
    add("b.txt", "alpha".encode())
    add("c.txt", "no picture".encode())
    add("d.webp", open(${JSON.stringify(join(IMAGES, 'alpha.webp'))}, "rb").read())
`);
  const { inputs, problems } = await tarInputs(fileReadStream(tarPath), 'in.tar');
  assert.deepEqual(inputs.map((i) => [i.where, i.caption, i.uid, i.url]), [
    ['in.tar:a', 'a photo', '0123456789abcdef0123456789abcdef', 'https://example.org/a.jpg'],
    ['in.tar:b', 'alpha', undefined, null],
  ]);
  assert.deepEqual(problems, [{ where: 'in.tar:c', problem: 'no picture (jpg, png or webp member)' }, { where: 'in.tar:d', problem: 'no caption (txt member)' }]);
  const { samples } = await prepareSamples(inputs, codec);
  assert.equal(samples[0]!.uid, '0123456789abcdef0123456789abcdef', 'a uid the sample carries is kept');
  assert.equal(samples[1]!.uid, byodUid(sha256(image('alpha.png')), 'alpha'));
});

let server: Server;
let base: string;
before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/photo.jpg') return res.end(readFileSync(join(IMAGES, 'photo-q95.jpg')));
    if (req.url === '/page.html') return res.end('<html>not a picture</html>');
    res.writeHead(404, 'Not Found').end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server?.close());

test('a CSV or parquet of image URLs: columns found in any case, pictures fetched, each failed row listed with why', async () => {
  const csv = `URL,TEXT\n${base}/photo.jpg,"a photo, fetched"\n${base}/gone.jpg,missing\n${base}/page.html,a web page\nftp://x/y.jpg,wrong scheme\n,no url\n`;
  assert.deepEqual(parseCsv('a,"b\n""c"""\r\n1,2', 'x.csv'), [['a', 'b\n"c"'], ['1', '2']]);
  const table = await readTextTable(new TextEncoder().encode(csv), 'pairs.csv');
  const { rows, problems } = urlRows(table);
  assert.deepEqual(problems, [{ where: 'pairs.csv row 6', problem: 'no URL' }]);
  const fetched = await fetchUrlInputs(rows, { concurrency: 2 });
  assert.deepEqual(fetched.inputs.map((i) => [i.where, i.caption, i.url]), [['pairs.csv row 2', 'a photo, fetched', `${base}/photo.jpg`], ['pairs.csv row 4', 'a web page', `${base}/page.html`]]);
  assert.deepEqual(fetched.problems.map((p) => p.where), ['pairs.csv row 3', 'pairs.csv row 5']);
  assert.match(fetched.problems[0]!.problem, /gone\.jpg: HTTP 404 Not Found/);
  assert.match(fetched.problems[1]!.problem, /only http\(s\) URLs/);
  // The web page arrived but is no picture: listed when the pictures are checked.
  const prepared = await prepareSamples(fetched.inputs, codec);
  assert.deepEqual(prepared.samples.map((s) => [s.url, s.sha256]), [[`${base}/photo.jpg`, sha256(image('photo-q95.jpg'))]]);
  assert.deepEqual(prepared.problems.map((p) => p.where), ['pairs.csv row 4']);
  // A parquet written by DuckDB, with image_url/caption columns.
  const pq = join(tmp, 'pairs.parquet');
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  await db.run(`COPY (SELECT '${base}/photo.jpg' AS image_url, 'from parquet' AS Caption, 3 AS n) TO '${pq}' (FORMAT parquet)`);
  const fromParquet = urlRows(await readTextTable(new Uint8Array(readFileSync(pq)), 'pairs.parquet'));
  assert.deepEqual(fromParquet.rows, [{ where: 'pairs.parquet row 0', url: `${base}/photo.jpg`, caption: 'from parquet' }]);
  // A request another origin refuses reads as a CORS refusal, with what to do.
  assert.match(describeFetchFailure('https://images.example.com/a.jpg', new TypeError('Failed to fetch'), 'http://127.0.0.1:5173'), /^CORS: https:\/\/images\.example\.com does not let this page read .*download the pictures/);
  await assert.rejects(readTextTable(new TextEncoder().encode('name,label\n'), 't.csv').then((t) => urlRows(t)), /t\.csv: no image URL column/);
});

test('the contamination check finds copies of evaluation pictures in other formats, and nothing else', async () => {
  // An evaluation suite in the clip_benchmark layout, written by Python's tarfile: photo.png and palette.png.
  const evalDir = join(tmp, 'eval');
  mkdirSync(join(evalDir, 'demo/test'), { recursive: true });
  writeFileSync(join(evalDir, 'tasklist.yml'), 'demo:\n  name: Demo\n  size: 2\n  num_classes: 2\n');
  writeFileSync(join(evalDir, 'demo/test/nshards.txt'), '1\n');
  writeFileSync(join(evalDir, 'demo/classnames.txt'), 'photo\nsquare\n');
  python(`
import io, tarfile
with tarfile.open(${JSON.stringify(join(evalDir, 'demo/test/0.tar'))}, "w") as t:
    for key, f, cls in [("s0000000", "photo.png", 0), ("s0000001", "palette.png", 1)]:
        for name, data in [(key + ".png", open(${JSON.stringify(IMAGES)} + "/" + f, "rb").read()), (key + ".cls", str(cls).encode())]:
            info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
`);
  const evalPictures = await readEvalPictures(new FileEvalStore(evalDir), codec);
  assert.deepEqual(evalPictures.map((e) => [e.task, e.key, e.shard]), [['demo', 's0000000', 'demo/test/0.tar'], ['demo', 's0000001', 'demo/test/0.tar']]);
  const { samples } = await prepareSamples(['photo-q95.jpg', 'alpha.png', 'pattern.gif', 'animated.gif'].map((f) => ({ where: f, caption: f, read: async () => image(f) })), codec);
  const matches = findContamination(samples, evalPictures);
  // photo-q95.jpg is photo.png's picture as a JPEG; pattern.gif and animated.gif's first frame are palette.png's.
  assert.deepEqual(matches.map((m) => [m.where, m.task, m.evalKey]), [['photo-q95.jpg', 'demo', 's0000000'], ['pattern.gif', 'demo', 's0000001'], ['animated.gif', 'demo', 's0000001']]);
  assert.equal(matches[0]!.uid, samples[0]!.uid);
  assert.ok(matches[0]!.mad < 8 && matches[0]!.hamming <= 10);
  // No suite: a one-line error, never "clean".
  await assert.rejects(readEvalPictures(new FileEvalStore(join(tmp, 'nowhere')), codec), /tasklist\.yml: no evaluation suite here/);
});
