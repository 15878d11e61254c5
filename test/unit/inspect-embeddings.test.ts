// A pool in CommonPool's layout with embeddings, made by external tools (DuckDB writes the metadata parquet,
// numpy the same-stem .npz, GNU tar the shard), served with directory indexes: the ingest finds and stores the
// npz beside its parquet, and the Inspect table (workers/pool-table.ts) with core's embedding matrix gives
// numpy's exact groups, group-size column and cosine ranking.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { groupByKey, groupSizes, rankBySimilarity } from '../../src/core/filters/dedup.ts';
import { embeddingMatrix, embeddingPair, npzPathFor } from '../../src/core/pool/embeddings.ts';
import { HttpPoolSource, ingestPool } from '../../src/core/pool/ingest.ts';
import { MemoryPoolStore } from '../../src/core/pool/store.ts';
import { startAppServer } from '../../server/http/app-server.ts';
import { buildTable, runQuery, setDerivedColumn, wantedColumns } from '../../workers/pool-table.ts';

const tmp = mkdtempSync(join(tmpdir(), 'dcw-inspect-emb-'));
const poolDir = join(tmp, 'pool');
const STEMS = ['0a1b2c3d4e5f60718293a4b5c6d7e8f9', 'f9e8d7c6b5a4938271605f4e3d2c1b0a'];
const ROWS = [40, 25];
let server: Server | undefined;
let base = '';
let skip: string | null = null;
let expected: { ranking: number[]; scores: number[]; query: number };

before(async () => {
  mkdirSync(join(poolDir, 'metadata'), { recursive: true });
  mkdirSync(join(poolDir, 'shards'), { recursive: true });
  // Rows: uid = 32 hex; sha256 repeats every 7th row's value 3 rows later (exact copies); row 5 has no sha256.
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  let at = 0;
  const uids: string[] = [];
  for (const [f, stem] of STEMS.entries()) {
    const n = ROWS[f]!;
    await c.run(`copy (
      select lpad(printf('%x', ${at} + i), 32, '0') as uid, 'caption ' || (${at} + i) as text,
        cast(64 + i as bigint) as original_width, cast(64 as bigint) as original_height,
        cast(null as float) as clip_b32_similarity_score, cast(null as float) as clip_l14_similarity_score,
        case when ${at} + i = 5 then null else sha256(cast(case when (${at} + i) % 7 = 3 then ${at} + i - 3 else ${at} + i end as varchar)) end as sha256
      from range(${n}) t(i)) to '${join(poolDir, 'metadata', `${stem}.parquet`)}' (format parquet)`);
    for (let i = 0; i < n; i++) uids.push((at + i).toString(16).padStart(32, '0'));
    at += n;
  }
  c.closeSync();
  // one shard with every sample (json carries the uid), by GNU tar
  const members = join(tmp, 'members');
  mkdirSync(members);
  const names: string[] = [];
  uids.forEach((uid, i) => {
    const key = String(i).padStart(9, '0');
    writeFileSync(join(members, `${key}.json`), JSON.stringify({ uid, key }));
    writeFileSync(join(members, `${key}.txt`), `caption ${i}`);
    names.push(`${key}.json`, `${key}.txt`);
  });
  const tar = spawnSync('tar', ['--format=gnu', '-cf', join(poolDir, 'shards', '00000000.tar'), '-C', members, ...names]);
  assert.equal(tar.status, 0, String(tar.stderr));
  writeFileSync(join(poolDir, 'shards', '00000000_stats.json'), JSON.stringify({ successes: uids.length }));
  const py = spawnSync('python3', ['-c', String.raw`
import json, sys
import numpy as np
out, stems, rows = sys.argv[1], sys.argv[2].split(','), [int(r) for r in sys.argv[3].split(',')]
rng = np.random.default_rng(5)
n = sum(rows)
img = rng.standard_normal((n, 16)); img /= np.linalg.norm(img, axis=1, keepdims=True); img = img.astype(np.float16)
txt = rng.standard_normal((n, 16)); txt /= np.linalg.norm(txt, axis=1, keepdims=True); txt = txt.astype(np.float16)
at = 0
for stem, k in zip(stems, rows):
    np.savez_compressed(f'{out}/metadata/{stem}.npz', l14_img=img[at:at+k], l14_txt=txt[at:at+k], b32_img=img[at:at+k], b32_txt=txt[at:at+k])
    at += k
v = img.astype(np.float64); v /= np.linalg.norm(v, axis=1, keepdims=True)
q = 50
s = v @ v[q]
order = [q] + sorted((r for r in range(n) if r != q), key=lambda r: (-s[r], r))
json.dump({'ranking': order, 'scores': s.tolist(), 'query': q}, open(f'{out}/expected.json', 'w'))
`, poolDir, STEMS.join(','), ROWS.join(',')], { encoding: 'utf8' });
  if (py.error || py.status !== 0) {
    skip = `python3 with numpy writes the npz: ${py.error?.message ?? py.stderr.trim().split('\n').pop()}`;
    return;
  }
  expected = JSON.parse(readFileSync(join(poolDir, 'expected.json'), 'utf8'));
  rmSync(join(poolDir, 'expected.json'));
  server = await startAppServer({ appDir: tmp, poolDir, host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('the ingest stores each parquet\'s same-stem npz; the table groups equal sha256s and ranks by numpy\'s cosine', async (t) => {
  if (skip) return t.skip(skip);
  const source = new HttpPoolSource({ baseUrl: `${base}/pool/` });
  const listing = await source.list();
  assert.deepEqual(listing.extras.map((e) => e.path), STEMS.map((s) => `metadata/${s}.npz`));
  const store = new MemoryPoolStore();
  await ingestPool(source, store);
  const parts = [];
  const npz = [];
  for (const [f, stem] of STEMS.entries()) {
    const path = `metadata/${stem}.parquet`;
    const file = await ParquetFile.open((await store.openFile(path))!, path);
    parts.push({ file: path, table: await file.read({ columns: wantedColumns(file.schema.fields) }) });
    const stored = (await store.openFile(npzPathFor(path)))!;
    const bytes = await stored.slice(0, stored.byteLength);
    assert.deepEqual(bytes, new Uint8Array(readFileSync(join(poolDir, 'metadata', `${stem}.npz`))), 'stored byte for byte');
    npz.push({ file: npzPathFor(path), rows: ROWS[f]!, npz: bytes });
  }
  const table = buildTable(parts);

  // exact groups from the metadata's sha256: row r with r % 7 == 3 repeats row r - 3's (in a file and across the two);
  // row 5 has none, so row 8 has no copy
  const groups = groupByKey(table.sha256!);
  const want = [...Array(65).keys()].filter((r) => r % 7 === 3 && r - 3 !== 5).map((r) => [r - 3, r]);
  assert.deepEqual(groups.groups.map((g) => [...g]), want);
  assert.equal(groups.groupOf[5], -1);
  setDerivedColumn(table, 'duplicate_group_size', groupSizes(groups), 'samples in its duplicate group');
  const sorted = runQuery(table, { sort: { column: 'duplicate_group_size', descending: true } });
  assert.deepEqual([...sorted.slice(0, want.length * 2)].sort((a, b) => a - b), want.flat().sort((a, b) => a - b));
  assert.equal(table.columns.find((c) => c.name === 'duplicate_group_size')!.max, 2);
  assert.throws(() => setDerivedColumn(table, 'original_width', new Float64Array(65), 'x'), /is a metadata column/);

  // the embeddings, aligned with the table's rows over both files
  assert.deepEqual(embeddingPair(npz[0]!.npz, npz[0]!.file), { image: 'l14_img', text: 'l14_txt' });
  const m = embeddingMatrix(npz, 'l14_img');
  const ranking = rankBySimilarity(m.vectors, m.dim, expected.query);
  ranking.order.forEach((row, i) => {
    const w = expected.ranking[i]!;
    assert.ok(row === w || Math.abs(expected.scores[row]! - expected.scores[w]!) < 1e-6, `position ${i}`);
  });
});

test('a pool without npz files lists no extras from its directory index', async (t) => {
  if (skip) return t.skip(skip);
  const bare = join(tmp, 'bare');
  mkdirSync(join(bare, 'metadata'), { recursive: true });
  mkdirSync(join(bare, 'shards'), { recursive: true });
  writeFileSync(join(bare, 'metadata', `${STEMS[0]}.parquet`), readFileSync(join(poolDir, 'metadata', `${STEMS[0]}.parquet`)));
  // an npz without its parquet is not the embeddings of anything listed
  writeFileSync(join(bare, 'metadata', `${STEMS[1]}.npz`), readFileSync(join(poolDir, 'metadata', `${STEMS[1]}.npz`)));
  writeFileSync(join(bare, 'shards', '00000000.tar'), readFileSync(join(poolDir, 'shards', '00000000.tar')));
  const s = await startAppServer({ appDir: tmp, poolDir: bare, host: '127.0.0.1', port: 0 });
  try {
    const listing = await new HttpPoolSource({ baseUrl: `http://127.0.0.1:${(s.address() as AddressInfo).port}/pool/` }).list();
    assert.deepEqual(listing.extras, []);
    assert.equal(listing.metadata.length, 1);
  } finally {
    s.close();
  }
});
