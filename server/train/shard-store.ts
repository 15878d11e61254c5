/**
 * Shards on disk for the training loader: every `*.tar` in one or more directories (DataComp's
 * `--data_dir a::b`, with `--data_weights` as open_clip's upsampling factors), sizes from the
 * `{stem}_stats.json` "successes" the downloader and the resharder write, else counted by reading the tar.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError } from '../../src/core/formats/errors.ts';
import { describeTar } from '../../src/core/formats/webdataset.ts';
import type { ShardInfo, ShardStore } from '../../src/core/train/loader.ts';
import { UserError } from '../cli/errors.ts';
import { fileReadStream } from '../io/streams.ts';

export class FileShardStore implements ShardStore {
  private readonly dirs: string[];
  private readonly weights: number[];

  /** `dirs`: one directory, or several joined by "::"; `weights`: one per directory ("::"-joined or an array). */
  constructor(dirs: string | readonly string[], weights?: string | readonly number[]) {
    this.dirs = typeof dirs === 'string' ? dirs.split('::') : [...dirs];
    const w = weights === undefined ? this.dirs.map(() => 1) : typeof weights === 'string' ? weights.split('::').map(Number) : [...weights];
    if (w.length !== this.dirs.length || !w.every((x) => Number.isFinite(x) && x >= 0)) {
      throw new UserError(`--data_weights needs one non-negative number per data directory (${this.dirs.length}), got ${JSON.stringify(weights)}`);
    }
    this.weights = w;
  }

  async listShards(): Promise<ShardInfo[]> {
    const out: ShardInfo[] = [];
    for (const [i, dir] of this.dirs.entries()) {
      const names = (await readdir(dir)).filter((n) => n.endsWith('.tar')).sort();
      if (!names.length) throw new UserError(`${dir}: no .tar shards`);
      for (const name of names) {
        const path = join(dir, name);
        out.push({ name: path, samples: await shardSize(path), weight: this.weights[i]! });
      }
    }
    return out;
  }

  async openShard(name: string): Promise<ReadableStream<Uint8Array>> {
    return fileReadStream(name);
  }
}

/** Samples in a shard: `_stats.json` "successes" when present, else a header-only count of the tar. */
export async function shardSize(tarPath: string): Promise<number> {
  const statsPath = tarPath.replace(/\.tar$/, '_stats.json');
  let text: string | undefined;
  try {
    text = await readFile(statsPath, 'utf8');
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    let stats: unknown;
    try {
      stats = JSON.parse(text);
    } catch {
      throw new FormatError(statsPath, 'not valid JSON');
    }
    const n = (stats as { successes?: unknown }).successes;
    if (!(typeof n === 'number' && Number.isInteger(n) && n >= 0)) throw new FormatError(statsPath, '"successes" is not a non-negative integer');
    return n;
  }
  return (await describeTar(fileReadStream(tarPath), tarPath)).samples;
}
