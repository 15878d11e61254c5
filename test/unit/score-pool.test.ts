// `dcw pool score` on a small embedded pool (~215 pairs): a scorer trained for a few steps on basic_filter's
// samples fills both score columns and writes the npz embeddings. numpy (python3) reads the npz and recomputes
// every score; DuckDB reads the parquet back and compares every other column with the original; two runs give
// the same bytes; a failure midway writes nothing; `dcw filter` clip_score --fraction and laion2b run on the result.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { loadTokenizer } from '../../server/cli/commands/tokenize.ts';
import { scorePoolDir, type PoolScoreOptions } from '../../server/pool/score.ts';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { separationReport } from '../../src/core/pipeline/score-pool.ts';
import type { ClipTokenizer } from '../../src/core/text/tokenizer.ts';
import { SCALES, type ScaleConfig } from '../../src/core/train/scales.ts';
import { dcw } from '../helpers/cli.ts';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';
import { buildTable, histogram, wantedColumns } from '../../workers/pool-table.ts';

// scorer-cpu's recipe, cut to 4 steps of 32
const SCALE: ScaleConfig = { ...SCALES['scorer-cpu'], batchSize: 32, trainNumSamples: 128, warmup: 1 };
const OTHER_COLUMNS = ['uid', 'url', 'text', 'original_width', 'original_height', 'face_bboxes', 'sha256'];

let dir: string;
let pristine: string;
let tokenizer: ClipTokenizer;
let db: DuckDBConnection;

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
/** sha256 of every file under a folder, by relative path. */
function tree(root: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(root, rel)).sort()) {
    const path = join(root, rel, name);
    if (statSync(path).isDirectory()) Object.assign(out, tree(root, join(rel, name)));
    else out[join(rel, name)] = sha(path);
  }
  return out;
}
function copyPool(name: string): string {
  const to = join(dir, name);
  cpSync(pristine, to, { recursive: true });
  return to;
}
const score = (pool: string, extra: Partial<PoolScoreOptions> = {}) =>
  scorePoolDir({ pool, scale: SCALE, seed: 0, tokenizer, gpu: 'opengles', batchSize: 64, logEvery: 1, ...extra });
const stems = (pool: string) => readdirSync(join(pool, 'metadata')).filter((n) => n.endsWith('.parquet')).map((n) => n.slice(0, -'.parquet'.length)).sort();
async function rows(sql: string): Promise<unknown[][]> {
  return (await db.runAndReadAll(sql)).getRows() as unknown[][];
}
function python(code: string, ...args: string[]): string {
  const run = spawnSync('python3', ['-c', code, ...args], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

before(async () => {
  if (BPE_SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'dcw-score-'));
  pristine = join(dir, 'pristine');
  const build = dcw(['pool', 'build', '--out', pristine, '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { timeoutMs: 120_000 });
  assert.equal(build.status, 0, build.stderr);
  tokenizer = await loadTokenizer(BPE_PATH);
  db = await (await DuckDBInstance.create(':memory:')).connect();
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('every row gets the dot product of its float16 npz vectors; other columns and row order are kept; deterministic', { skip: BPE_SKIP }, async () => {
  const a = copyPool('a');
  const out = await score(a);
  const [stem] = stems(a);
  assert.ok(stem && stems(a).length === 1);
  const parquet = join(a, 'metadata', `${stem}.parquet`);
  const npz = join(a, 'metadata', `${stem}.npz`);
  const original = join(pristine, 'metadata', `${stem}.parquet`);
  assert.deepEqual(out.written.sort(), [npz, parquet, join(a, 'scorer')].sort());

  // DuckDB: the same columns, types and values, in the same row order; both scores set, equal, float32
  const schema = (p: string) => rows(`select name, type, repetition_type from parquet_schema('${p}')`);
  assert.deepEqual(await schema(parquet), await schema(original));
  const cols = OTHER_COLUMNS.join(', ');
  const before = await rows(`select ${cols} from read_parquet('${original}')`);
  const after = await rows(`select ${cols} from read_parquet('${parquet}')`);
  assert.ok(before.length > 150);
  assert.deepEqual(after, before);
  const scored = await rows(`select clip_b32_similarity_score, clip_l14_similarity_score, typeof(clip_b32_similarity_score) from read_parquet('${parquet}')`);
  assert.equal(scored.length, before.length);
  assert.ok(scored.every(([b, l, t]) => typeof b === 'number' && b === l && t === 'FLOAT'), 'both columns hold the same non-null float32 score');
  assert.equal(out.result.rows, before.length);
  assert.equal(out.result.missing, 0);

  // numpy: the official keys and dtypes, rows × the scorer's width, unit vectors, and the score = img · txt
  const check = python(`
import json, sys, numpy as np
z = np.load(sys.argv[1])
print(json.dumps({
  "keys": list(z.files),
  "dtypes": [str(z[k].dtype) for k in z.files],
  "shapes": [list(z[k].shape) for k in z.files],
  "pairs_equal": bool((z["b32_img"] == z["l14_img"]).all() and (z["b32_txt"] == z["l14_txt"]).all()),
  "max_norm_error": float(max(abs(np.linalg.norm(z[k].astype(np.float64), axis=1) - 1).max() for k in ("b32_img", "b32_txt"))),
  "dots": (z["b32_img"].astype(np.float64) * z["b32_txt"].astype(np.float64)).sum(axis=1).tolist(),
}))`, npz);
  const got = JSON.parse(check) as { keys: string[]; dtypes: string[]; shapes: number[][]; pairs_equal: boolean; max_norm_error: number; dots: number[] };
  assert.deepEqual(got.keys, ['b32_img', 'b32_txt', 'l14_img', 'l14_txt']);
  assert.deepEqual(got.dtypes, ['float16', 'float16', 'float16', 'float16']);
  assert.deepEqual(got.shapes, Array(4).fill([before.length, 64]));
  assert.ok(got.pairs_equal);
  assert.ok(got.max_norm_error < 2e-3, `norms off by ${got.max_norm_error}`);
  for (const [i, [s]] of scored.entries()) assert.equal(s, Math.fround(got.dots[i]!), `row ${i}`);
  // the scores vary (a trained model, not a constant), and lie in [-1, 1]
  const values = scored.map(([s]) => s as number);
  assert.ok(Math.max(...values) - Math.min(...values) > 1e-3 && values.every((s) => Math.abs(s) <= 1.001));

  // the Inspect view's table (workers/pool-table.ts, as the table worker reads the parquet): a histogram of the scores
  const pq = await ParquetFile.open(new Uint8Array(readFileSync(parquet)), parquet);
  const table = buildTable([{ file: parquet, table: await pq.read({ columns: wantedColumns(pq.schema.fields.map((f) => ({ name: f.name, typeId: f.typeId }))) }) }]);
  const hist = histogram(table, 'clip_l14_similarity_score', {});
  assert.equal(hist.nulls, 0);
  assert.equal(hist.all.reduce((x, y) => x + y, 0), values.length);
  assert.equal(hist.min, Math.min(...values));
  assert.equal(hist.max, Math.max(...values));

  // scorer/: a dcw-evaluate-able folder and a record naming the trusted rule and its size
  const record = JSON.parse(readFileSync(join(a, 'scorer', 'scorer.json'), 'utf8'));
  assert.equal(record.trusted.rule, 'basic_filter');
  assert.equal(record.embed_dim, 64);
  assert.equal(record.train.steps, 4);
  const basic = join(dir, 'basic.npy');
  const filter = dcw(['filter', '--name', 'basic_filter', '--metadata_dir', join(pristine, 'metadata'), '--save_path', basic]);
  assert.equal(filter.status, 0, filter.stderr);
  assert.equal(record.trusted.uids, Number(python('import sys, numpy as np; print(len(np.load(sys.argv[1])))', basic)));
  assert.ok(existsSync(join(a, 'scorer', 'checkpoints', 'epoch_latest.safetensors')) && existsSync(join(a, 'scorer', 'info.json')));
  // the report counts every row under its ground-truth caption kind
  const report = JSON.parse(readFileSync(join(a, 'scorer', 'report.json'), 'utf8'));
  const truth = await rows(`select caption_kind, count(*)::INTEGER from read_parquet('${join(a, 'ground_truth', 'truth.parquet')}') group by 1`);
  assert.deepEqual(Object.fromEntries(Object.entries(report.caption_kind.byLabel).map(([k, g]) => [k, (g as { rows: number }).rows])), Object.fromEntries(truth));
  assert.equal(report.caption_kind.auc.positive, 'clean');

  // a second pool scored alike: the same bytes
  const b = copyPool('b');
  await score(b);
  assert.deepEqual(tree(join(b, 'metadata')), tree(join(a, 'metadata')));
  assert.equal(sha(join(b, 'scorer', 'checkpoints', 'epoch_latest.safetensors')), sha(join(a, 'scorer', 'checkpoints', 'epoch_latest.safetensors')));
  assert.deepEqual(readdirSync(b).sort(), readdirSync(pristine).concat('scorer').sort(), 'no staging folder left behind');

  // scored again: refused without --overwrite (one line, nothing touched), the same bytes with it
  const metadataBefore = tree(join(a, 'metadata'));
  const refused = dcw(['pool', 'score', '--pool', a, '--bpe', BPE_PATH, '--gpu', 'opengles']);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^dcw: --pool .* already has scores \(.*\); pass --overwrite to replace them\n$/);
  assert.deepEqual(tree(join(a, 'metadata')), metadataBefore);
  await score(a, { overwrite: true });
  assert.deepEqual(tree(join(a, 'metadata')), metadataBefore);

  // the official baselines that read the score columns run on the scored pool
  const top = join(dir, 'top.npy');
  const clip = dcw(['filter', '--name', 'clip_score', '--arch', 'l14', '--fraction', '0.3', '--metadata_dir', join(a, 'metadata'), '--save_path', top]);
  assert.equal(clip.status, 0, clip.stderr);
  const sorted = [...values].sort((x, y) => y - x);
  const threshold = sorted[Math.floor(values.length * 0.3)]!;
  const kept = Number(python('import sys, numpy as np; print(len(np.load(sys.argv[1])))', top));
  assert.equal(kept, values.filter((s) => s >= threshold).length);
  const laion = dcw(['filter', '--name', 'laion2b', '--metadata_dir', join(a, 'metadata'), '--save_path', join(dir, 'laion.npy')]);
  assert.equal(laion.status, 0, laion.stderr);
  assert.ok(Number(python('import sys, numpy as np; print(len(np.load(sys.argv[1])))', join(dir, 'laion.npy'))) <= values.filter((s) => s >= Math.fround(0.28)).length);
});

test('a failure midway (an unreadable picture) or samples missing writes nothing; --allow-missing scores them null', { skip: BPE_SKIP }, async () => {
  const c = copyPool('cut');
  const shard = join(c, 'shards', '00000000.tar');
  // one picture replaced by bytes no decoder reads (python's tarfile rewrites the archive): the shards cover
  // every row and the training loader drops the sample, so the error comes while embedding, after training
  python(`
import sys, tarfile
src, dst = sys.argv[1], sys.argv[1] + ".new"
with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.GNU_FORMAT) as tout:
    members = tin.getmembers()
    victim = [m.name for m in members if m.name.endswith(".jpg")][-5]
    for m in members:
        data = tin.extractfile(m).read()
        if m.name == victim:
            data = b"not a picture" * 10
            m.size = len(data)
        import io
        tout.addfile(m, io.BytesIO(data))
print(victim)`, shard);
  renameSync(`${shard}.new`, shard);
  const before = tree(c);
  const lines: string[] = [];
  await assert.rejects(score(c, { log: (l) => lines.push(l) }), (err: Error) => err.message.includes('00000000.tar'));
  assert.ok(lines.some((l) => l.startsWith('[3/4] train')), `training ran before the failure: ${lines.join(' | ')}`);
  assert.deepEqual(tree(c), before);

  // samples gone from a shard (GNU tar --delete): their rows are missing; a one-line error, nothing written
  cpSync(join(pristine, 'shards', '00000000.tar'), shard);
  const members = spawnSync('tar', ['-tf', shard], { encoding: 'utf8' }).stdout.trim().split('\n');
  const keys = [...new Set(members.map((m) => m.split('.')[0]!))].slice(-3);
  const del = spawnSync('tar', ['--delete', '-f', shard, ...members.filter((m) => keys.includes(m.split('.')[0]!))], { encoding: 'utf8' });
  assert.equal(del.status, 0, del.stderr);
  const gone = tree(c);
  const cli = dcw(['pool', 'score', '--pool', c, '--bpe', BPE_PATH, '--gpu', 'opengles']);
  assert.equal(cli.status, 1);
  const errors = cli.stderr.split('\n').filter((l) => l.startsWith('dcw:'));
  assert.equal(errors.length, 1, cli.stderr);
  assert.match(errors[0]!, /^dcw: .*\.parquet: 3 of \d+ rows have no sample with an image in the pool's shards \(first: row \d+, uid [0-9a-f]{32}\).*--allow-missing/);
  assert.deepEqual(tree(c), gone);

  // allowed: those rows score null (NaN vectors in the npz), the others as usual
  await score(c, { allowMissing: true });
  const [stem] = stems(c);
  const nulls = await rows(`select count(*)::INTEGER from read_parquet('${join(c, 'metadata', `${stem}.parquet`)}') where clip_l14_similarity_score is null`);
  assert.deepEqual(nulls, [[3]]);
  const nanRows = python('import sys, numpy as np; z = np.load(sys.argv[1]); print(int(np.isnan(z["l14_img"].astype(np.float32)).any(axis=1).sum()), int(np.isnan(z["l14_txt"].astype(np.float32)).sum()))', join(c, 'metadata', `${stem}.npz`));
  assert.equal(nanRows.trim(), '3 0');
});

test('--help says the columns hold one scorer, not OpenAI models, and to filter by fraction', () => {
  const help = dcw(['pool', 'score', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /not OpenAI CLIP models/);
  assert.match(help.stdout, /--fraction/);
  assert.match(help.stdout, /--trusted <rule>/);
});

test('separationReport: means, medians, top-fraction shares and the AUC, by hand', () => {
  const scores = [0.9, 0.8, 0.5, 0.5, 0.1, NaN];
  const labels = ['clean', 'clean', 'clean', 'mismatched', 'mismatched', 'mismatched'];
  const r = separationReport(scores, labels, { topFraction: 0.4, positive: 'clean', negative: 'mismatched' });
  assert.equal(r.rows, 5);
  assert.deepEqual(r.byLabel.clean, { rows: 3, mean: (0.9 + 0.8 + 0.5) / 3, median: 0.8, shareOfTop: 1, shareOfPool: 0.6 });
  assert.deepEqual(r.byLabel.mismatched, { rows: 2, mean: 0.3, median: 0.3, shareOfTop: 0, shareOfPool: 0.4 });
  // pairs (clean, mismatched): 0.9>0.5, 0.9>0.1, 0.8>0.5, 0.8>0.1, 0.5=0.5 (½), 0.5>0.1 → 5.5 / 6
  assert.equal(r.auc!.value, 5.5 / 6);
  assert.throws(() => separationReport([1], []), RangeError);
});
