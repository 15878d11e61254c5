/**
 * resharder.py's face-box lookup for --blur-metadata-map: the map file `{k: {"parquet": p, "shards": [...]}}`
 * names, per input shard, the metadata parquet holding its samples' `face_bboxes`; a worker keeps one
 * parquet loaded at a time (the official `lru_cache(1)`), sorted by uid, and finds a sample's boxes by binary
 * search on its 128-bit uid.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Vector } from 'apache-arrow';
import { ParquetFile } from '../../src/core/formats/parquet.ts';
import { SubsetIndex } from '../../src/core/reshard/plan.ts';
import { UserError } from '../cli/errors.ts';
import { openRangedFile } from '../io/ranged-file.ts';

/** Per input shard name, its parquet (resharder.py's load_parquet_metadata). */
export async function loadBlurMetadataMap(mapFile: string, inputDir: string): Promise<Map<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(mapFile, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UserError(`reshard: --blur-metadata-map ${mapFile}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UserError(`reshard: ${mapFile}: expected an object {key: {"parquet": path, "shards": [paths]}}`);
  const table = new Map<string, string>();
  for (const [k, entry] of Object.entries(parsed as Record<string, unknown>)) {
    const e = entry as { parquet?: unknown; shards?: unknown };
    if (!e || typeof e.parquet !== 'string' || !Array.isArray(e.shards) || !e.shards.every((s) => typeof s === 'string')) {
      throw new UserError(`reshard: ${mapFile}: entry ${JSON.stringify(k)} needs "parquet" (a path) and "shards" (a list of paths)`);
    }
    for (const shard of e.shards as string[]) {
      // as the official script: only shards of the input directory count, keyed by file name
      if (resolve(dirname(shard)) !== resolve(inputDir)) continue;
      table.set(basename(shard), e.parquet);
    }
  }
  return table;
}

export type BlurLookup = { boxes: number[][] } | { error: string; skip: boolean } | undefined;

/** One parquet's uids (sorted, as 4 words each) and face boxes. */
interface LoadedBoxes {
  keys: Uint32Array[];
  boxes: Vector;
}

/** The boxes of one sample, as get_blur_bboxes_for_img finds them; keeps the last parquet loaded. */
export class BlurBoxFinder {
  private cached: { file: string; loaded: LoadedBoxes | undefined } | undefined;

  async find(parquet: string, uid: Uint32Array, uidText: string, shardPath: string): Promise<BlurLookup> {
    if (this.cached?.file !== parquet) this.cached = { file: parquet, loaded: await loadBoxes(parquet) };
    const loaded = this.cached.loaded;
    // the official code logs, then fails unpacking None: the sample is dropped with an error
    if (!loaded) return { error: `failed to find parquet for ${shardPath}`, skip: true };
    let lo = 0;
    let hi = loaded.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareKeys(loaded.keys[mid]!, uid) < 0) lo = mid + 1;
      else hi = mid;
    }
    // np.searchsorted past the end, then uids[i]: an IndexError, so the sample is dropped
    if (lo === loaded.keys.length) return { error: `${shardPath}: uid ${uidText} is past the last uid of ${parquet}`, skip: true };
    if (compareKeys(loaded.keys[lo]!, uid) !== 0) return { error: `failed to find blur bboxes for ${shardPath}, ${uidText.padStart(32, '0')}`, skip: false };
    const cell = loaded.boxes.get(lo) as Vector | null;
    if (!cell) return undefined;
    const boxes: number[][] = [];
    for (let i = 0; i < cell.length; i++) {
      const box = cell.get(i) as Vector | null;
      boxes.push(box ? Array.from(box.toArray() as Float64Array, Number) : []);
    }
    return { boxes };
  }
}

function compareKeys(a: Uint32Array, b: Uint32Array): number {
  // words: hi low 32, hi high 32, lo low 32, lo high 32 (SubsetIndex.parseUid)
  for (const i of [1, 0, 3, 2]) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

async function loadBoxes(file: string): Promise<LoadedBoxes | undefined> {
  let source;
  try {
    source = await openRangedFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const table = await (await ParquetFile.open(source, file)).read({ columns: ['uid', 'face_bboxes'] });
    const uids = table.getChild('uid')!;
    const order: { key: Uint32Array; row: number }[] = [];
    for (let row = 0; row < uids.length; row++) {
      const text = uids.get(row) as string | null;
      // the official lpad to 32 with '0' then int(…, 16); an unparsable uid sorts nowhere
      const key = text === null ? undefined : SubsetIndex.parseUid(text.padStart(32, '0'));
      if (key) order.push({ key, row });
    }
    order.sort((a, b) => compareKeys(a.key, b.key));
    const column = table.getChild('face_bboxes')!;
    const rows = order.map((o) => o.row);
    return { keys: order.map((o) => o.key), boxes: { length: rows.length, get: (i: number) => column.get(rows[i]!) } as unknown as Vector };
  } finally {
    await source.close();
  }
}
