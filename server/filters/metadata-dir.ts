/**
 * The metadata files of a pool folder, as the official scripts find them: `fs.ls(dir)`, keeping every
 * name that contains ".parquet" (so "x.parquet.tmp" counts and "x.PARQUET" does not, exactly as there),
 * opened for range reads.
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { MetadataFile } from '../../src/core/filters/scan.ts';
import { openRangedFile, type RangedFile } from '../io/ranged-file.ts';
import { UserError } from '../cli/errors.ts';

export interface MetadataListing {
  dir: string;
  files: MetadataFile[];
  close(): Promise<void>;
}

export async function listMetadataFiles(dir: string): Promise<MetadataListing> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw new UserError(`--metadata_dir ${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
  // sorted so that runs are reproducible (the result is sorted anyway; the order only shows in progress)
  const picked = names.filter((n) => n.includes('.parquet')).sort();
  const opened: RangedFile[] = [];
  const files: MetadataFile[] = [];
  for (const name of picked) {
    const path = join(dir, name);
    if (!(await stat(path)).isFile()) continue;
    const file = await openRangedFile(path);
    opened.push(file);
    files.push({ name: path, source: file });
  }
  if (!files.length) throw new UserError(`--metadata_dir ${dir}: no file whose name contains ".parquet"`);
  return { dir, files, close: async () => void (await Promise.all(opened.map((f) => f.close()))) };
}

/**
 * Identity of a pool's metadata for recipes: per file its name, size and the sha256 of its last 64 KiB
 * (the parquet footer: schema, row counts, column statistics), and one digest over them all. Cheap to
 * compute on a 3 GB pool, and it changes when any file is replaced.
 */
export async function poolIdentity(files: readonly MetadataFile[]): Promise<{ digest: string; files: { name: string; bytes: number; tail_sha256: string }[] }> {
  const out: { name: string; bytes: number; tail_sha256: string }[] = [];
  for (const f of files) {
    const src = f.source as RangedFile;
    const tail = await src.slice(Math.max(0, src.byteLength - 65536), src.byteLength);
    out.push({ name: f.name.split('/').pop()!, bytes: src.byteLength, tail_sha256: createHash('sha256').update(tail).digest('hex') });
  }
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const digest = createHash('sha256').update(JSON.stringify(out)).digest('hex');
  return { digest, files: out };
}
