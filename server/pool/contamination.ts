/**
 * `dcw contamination --pool DIR --eval DIR`: finds test pictures in a pool, pixel-level (fingerprints of
 * src/core/pool/contamination.ts), for any pool in the CommonPool shard layout and any evaluation set in the
 * clip_benchmark layout (one task folder, or a folder of task folders).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { readSamples } from '../../src/core/formats/webdataset.ts';
import { fingerprint, findMatches, type Fingerprint, type Match, type MatchOptions } from '../../src/core/pool/contamination.ts';
import { UserError } from '../cli/errors.ts';
import { fileReadStream } from '../io/streams.ts';

const IMAGE_EXTS = ['jpg', 'jpeg', 'png', 'webp'];

export interface Picture {
  /** `shards/00000000.tar:000000000012` or `emoji_group/test/0.tar:s0000003`. */
  where: string;
  /** The sample's uid (pool samples with a json), '' otherwise. */
  uid: string;
  fp: Fingerprint;
}

function tarsUnder(dir: string, kind: 'pool' | 'eval'): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`contamination: ${dir}: no such folder`);
  const out: string[] = [];
  const walk = (d: string, depth: number) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        if (depth < 3) walk(p, depth + 1);
      } else if (name.endsWith('.tar') && !name.startsWith('.')) out.push(p);
    }
  };
  walk(dir, 0);
  if (!out.length) throw new UserError(`contamination: ${dir}: no ${kind === 'pool' ? 'shard' : 'evaluation'} .tar files found`);
  return out;
}

async function decode(bytes: Uint8Array, where: string): Promise<Fingerprint> {
  try {
    const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
    return fingerprint(data, info.width, info.height, info.channels);
  } catch (err) {
    throw new UserError(`contamination: ${where}: cannot decode the picture (${(err as Error).message})`);
  }
}

/** Fingerprints of every picture in the tars under `dir`. */
export async function readPictures(dir: string, kind: 'pool' | 'eval', onProgress?: (n: number) => void): Promise<Picture[]> {
  const out: Picture[] = [];
  const pending: Promise<void>[] = [];
  for (const tar of tarsUnder(dir, kind)) {
    const rel = tar.slice(dir.length).replace(/^\/+/, '');
    for await (const sample of readSamples(fileReadStream(tar), tar)) {
      const ext = IMAGE_EXTS.find((e) => sample.files.has(e));
      if (!ext) continue;
      const where = `${rel}:${sample.__key__}`;
      let uid = '';
      const json = sample.files.get('json');
      if (json) {
        try {
          uid = String((JSON.parse(new TextDecoder().decode(json)) as { uid?: string }).uid ?? '');
        } catch {
          uid = '';
        }
      }
      const slot = out.length;
      out.push({ where, uid, fp: { hash: [0, 0], thumb: new Uint8Array(0) } });
      pending.push(decode(sample.files.get(ext)!, where).then((fp) => {
        out[slot]!.fp = fp;
      }));
      if (pending.length >= 16) {
        await Promise.all(pending.splice(0));
        onProgress?.(out.length);
      }
    }
  }
  await Promise.all(pending);
  onProgress?.(out.length);
  return out;
}

export interface ContaminationReport {
  pool: number;
  eval: number;
  matches: (Match & { poolWhere: string; uid: string; evalWhere: string })[];
  /** Distinct pool uids that match a test picture. */
  offenders: string[];
  /** Distinct test pictures found in the pool. */
  testPicturesInPool: number;
}

export async function checkContamination(poolDir: string, evalDir: string, options: MatchOptions & { onProgress?: (stage: string, n: number) => void } = {}): Promise<ContaminationReport> {
  const evalPics = await readPictures(evalDir, 'eval', (n) => options.onProgress?.('eval', n));
  const poolPics = await readPictures(poolDir, 'pool', (n) => options.onProgress?.('pool', n));
  const matches = findMatches(poolPics.map((p) => p.fp), evalPics.map((p) => p.fp), options).map((m) => ({
    ...m, poolWhere: poolPics[m.pool]!.where, uid: poolPics[m.pool]!.uid, evalWhere: evalPics[m.eval]!.where,
  }));
  const offenders = [...new Set(matches.map((m) => m.uid || m.poolWhere))].sort();
  return { pool: poolPics.length, eval: evalPics.length, matches, offenders, testPicturesInPool: new Set(matches.map((m) => m.eval)).size };
}

export function describeEvalDir(dir: string): string {
  return basename(dir);
}
