/**
 * A small real pool for the ingest and UI tests: `dcw pool build --fraction F` (the embedded pool, from the
 * shared render cache), with its one shard re-cut into shards of `shardSize` samples (still CommonPool's
 * layout: `shards/{:08d}.tar` + `{:08d}_stats.json`), so resuming between shards can be tested on a few
 * hundred samples.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readSamples, writeSamples, type WdsSample } from '../../src/core/formats/webdataset.ts';
import { fileReadStream, writeFileAtomic } from '../../server/io/streams.ts';

const REPO = resolve(import.meta.dirname, '../..');

export interface SmallPool {
  /** The pool in CommonPool's layout, re-cut into small shards. */
  poolDir: string;
  samples: number;
  shards: number;
  metadataFiles: string[];
}

export async function buildSmallPool(dir: string, options: { fraction?: string; shardSize?: number } = {}): Promise<SmallPool> {
  const built = join(dir, 'built');
  const run = spawnSync(process.execPath, [join(REPO, 'bin/dcw.js'), 'pool', 'build', '--fraction', options.fraction ?? '0.01', '--out', join(built, 'pool'), '--eval-out', join(built, 'eval')], {
    cwd: REPO, encoding: 'utf8', env: { ...process.env, CI: 'true' }, timeout: 180_000,
  });
  if (run.status !== 0) throw new Error(`dcw pool build failed:\n${run.stderr}`);
  const poolDir = join(dir, 'pool');
  mkdirSync(join(poolDir, 'shards'), { recursive: true });
  cpSync(join(built, 'pool', 'metadata'), join(poolDir, 'metadata'), { recursive: true });
  cpSync(join(built, 'pool', 'ground_truth'), join(poolDir, 'ground_truth'), { recursive: true });
  const samples: WdsSample[] = [];
  for (const name of readdirSync(join(built, 'pool', 'shards')).filter((n) => n.endsWith('.tar')).sort()) {
    for await (const s of readSamples(fileReadStream(join(built, 'pool', 'shards', name)), name)) samples.push(s);
  }
  const size = options.shardSize ?? 100;
  let shards = 0;
  for (let start = 0; start < samples.length; start += size, shards++) {
    const part = samples.slice(start, start + size);
    const stem = String(shards).padStart(8, '0');
    await writeFileAtomic(join(poolDir, 'shards', `${stem}.tar`), writeSamples(part));
    writeFileSync(join(poolDir, 'shards', `${stem}_stats.json`), JSON.stringify({ count: part.length, successes: part.length, failed_to_download: 0, failed_to_resize: 0 }, null, 4));
  }
  return { poolDir, samples: samples.length, shards, metadataFiles: readdirSync(join(poolDir, 'metadata')).sort() };
}
