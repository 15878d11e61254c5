/**
 * The pure parts of resharder.py (facts §4): shard names from Python format strings, the shard-count
 * search, the split of shards over workers, and the subset lookup (np.searchsorted right − left).
 */
import { uidCount } from '../formats/uid.ts';

/**
 * Python `fmt.format(n)` for the shard name formats: `{}`, `{:d}`, `{:08d}`, `{:8d}`, `{0:08d}`, with
 * `{{`/`}}` escapes. Anything else is a RangeError naming the format.
 */
export function formatShardName(fmt: string, n: number): string {
  let out = '';
  let fields = 0;
  for (let i = 0; i < fmt.length; i++) {
    const c = fmt[i]!;
    if (c === '{' && fmt[i + 1] === '{') { out += '{'; i++; continue; }
    if (c === '}' && fmt[i + 1] === '}') { out += '}'; i++; continue; }
    if (c === '}') throw new RangeError(`format ${JSON.stringify(fmt)}: single '}'`);
    if (c !== '{') { out += c; continue; }
    const end = fmt.indexOf('}', i);
    if (end < 0) throw new RangeError(`format ${JSON.stringify(fmt)}: unclosed '{'`);
    const m = /^0?(?::(0?)(\d*)d?)?$/.exec(fmt.slice(i + 1, end));
    if (!m) throw new RangeError(`format ${JSON.stringify(fmt)}: only integer fields like {:08d} are supported`);
    const width = m[2] ? Number(m[2]) : 0;
    const digits = String(Math.abs(n));
    const sign = n < 0 ? '-' : '';
    out += m[1] ? sign + digits.padStart(width - sign.length, '0') : (sign + digits).padStart(width, ' ');
    fields++;
    i = end;
  }
  if (fields === 0) throw new RangeError(`format ${JSON.stringify(fmt)} has no {} field for the shard number`);
  return out;
}

/**
 * `guess_num_shards`: doubles n while shard `first + n − 1` exists, then bisects in [n/2, n) with the
 * same probes as Python's bisect_right, so a folder with gaps gives the same count as the official script.
 */
export async function guessNumShards(exists: (shard: number) => Promise<boolean>, firstShard: number): Promise<number> {
  const present = (i: number) => exists(firstShard + i - 1);
  let n = 1;
  let rounds = 0;
  for (; rounds < 40; rounds++) {
    if (!(await present(n))) break;
    n *= 2;
  }
  if (rounds === 40) throw new Error(`found too many shards (at least ${n})`);
  if (n === 1) throw new Error('did not find any shards');
  // bisect_right(range(n//2, n), False, key=lambda i: not present(i))
  let lo = 0;
  let hi = n - n / 2;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (!(await present(n / 2 + mid))) hi = mid;
    else lo = mid + 1;
  }
  return n / 2 + lo - 1;
}

export interface Shard {
  shardId: number;
  /** Samples before this shard (over the shards found). */
  dataStart: number;
  size: number;
}

/** `plan_tasks`: contiguous runs of shards, balanced by sample count. Returns the shards of each worker. */
export function planTasks(shards: readonly Shard[], numWorkers: number): Shard[][] {
  const last = shards[shards.length - 1]!;
  const total = last.dataStart + last.size;
  const step = Math.ceil(total / numWorkers) || 1;
  const starts = shards.map((s) => s.dataStart);
  const chunks: number[] = [];
  for (let i = 0; i < total; i += step) chunks.push(searchLeft(starts, i));
  chunks.push(shards.length);
  const tasks: Shard[][] = [];
  for (let w = 0; w + 1 < chunks.length; w++) if (chunks[w] !== chunks[w + 1]) tasks.push(shards.slice(chunks[w], chunks[w + 1]));
  if (total === 0) tasks.push([...shards]);
  return tasks;
}

function searchLeft(values: readonly number[], x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The sorted subset, searched as the resharder does: a uid occurs `count` times (0 = not selected).
 * Words are compared as unsigned (f0, f1) pairs, numpy's order for u8,u8 records.
 */
export class SubsetIndex {
  readonly size: number;
  constructor(private readonly words: Uint32Array) {
    this.size = uidCount(words);
  }

  /** `divmod(int(uid, 16), 2**64)` → words, or undefined if the text is not a hex number below 2^128. */
  static parseUid(text: string): Uint32Array | undefined {
    // Python's int(s, 16) also allows surrounding whitespace, "0x", "_" between digits and a sign
    let s = text.trim().replace(/(?<=[0-9a-fA-F])_(?=[0-9a-fA-F])/g, '');
    if (/^\+/.test(s)) s = s.slice(1);
    if (/^0[xX]/.test(s)) s = s.slice(2);
    if (!/^[0-9a-fA-F]+$/.test(s)) return undefined;
    const v = BigInt('0x' + s);
    if (v >> 128n) return undefined;
    const w = new Uint32Array(4);
    const hi = v >> 64n;
    const lo = v & 0xffffffffffffffffn;
    w[0] = Number(hi & 0xffffffffn);
    w[1] = Number(hi >> 32n);
    w[2] = Number(lo & 0xffffffffn);
    w[3] = Number(lo >> 32n);
    return w;
  }

  private compare(i: number, key: Uint32Array): number {
    const w = this.words;
    for (const k of [1, 0, 3, 2]) {
      const a = w[i * 4 + k]!;
      const b = key[k]!;
      if (a !== b) return a < b ? -1 : 1;
    }
    return 0;
  }

  /** searchsorted(side) of the key. */
  search(key: Uint32Array, side: 'left' | 'right'): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.compare(mid, key);
      if (c < 0 || (side === 'right' && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  count(key: Uint32Array): number {
    const a = this.search(key, 'left');
    if (a === this.size || this.compare(a, key) !== 0) return 0;
    return this.search(key, 'right') - a;
  }
}
