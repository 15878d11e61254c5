/**
 * Curation rules of filter recipes beyond keep/drop: duplicate removal and MetaCLIP-style balancing (a subset
 * each), and repetition of chosen uids in the result (the resharder writes a uid as often as it occurs).
 *
 * - dedup "sha256": one row per distinct metadata `sha256` (the same downloaded bytes): the first in pool order
 *   (metadata files in the listed order, rows in file order) among the candidate rows.
 * - dedup "embedding": rows whose npz image embeddings have cosine ≥ threshold are duplicates, transitively
 *   (connected groups, src/core/filters/dedup.ts); again the first row in pool order of each group stays.
 * - balance: MetaCLIP's balancing (Xu et al., 2023) over one key per row — the nearest k-means centroid of the
 *   row's image embedding ("clusters"), or a numeric expression over the metadata: a row of a key held by n
 *   candidate rows stays with probability min(1, max_per_group / n). Rows without a key (null) are dropped, as
 *   MetaCLIP drops pairs that match no entry. The draw is a hash of (seed, uid), so the result depends on the
 *   pool's rows, not on their order or on anything else in the recipe.
 * Candidates are the whole pool, or the rows of an earlier subset of the recipe (`of`).
 */
import { uidCount } from '../formats/uid.ts';
import { FormatError } from '../formats/errors.ts';
import type { Engine } from '../gpu/engine.ts';
import { SubsetIndex } from '../reshard/plan.ts';
import { float16ToFloat32 } from '../formats/npy.ts';
import { checkedUids, stringsOf, textAt, uidWordsColumn, UidWordList } from './columns.ts';
import { groupByEmbedding, normalizeRows } from './dedup.ts';
import type { CompiledExpression } from './expr.ts';
import { assignNearest, type Embeddings } from './kmeans.ts';
import { scanMetadata, type MetadataFile } from './scan.ts';
import { sortUids } from './sort.ts';

export type DedupRule = { dedup: 'sha256' | 'embedding'; threshold?: number; of?: string };
export type BalanceRule = { balance: string; max_per_group: number; seed?: number; centroids?: string; of?: string };

/** What curation needs from the caller: the pool's embeddings, a GPU for cluster assignment, the centroids. */
export interface CurateInputs {
  /** The image embeddings of a metadata file (all rows, aligned with the parquet), e.g. its npz `l14_img`. */
  embeddings?: (file: MetadataFile) => Promise<Embeddings>;
  engine?: Engine;
  /** Reads a file a rule names (centroids). */
  readFile?: (path: string) => Promise<Embeddings>;
}

export interface CurateResult {
  words: Uint32Array;
  rowsRead: number;
  /** dedup: groups of two or more; balance: distinct keys among the candidates. */
  groups: number;
}

/** Largest embedding matrix near-duplicate search holds at once (floats): 1 GiB. */
const MAX_EMBEDDING_FLOATS = 1 << 28;

function candidateTest(of: Uint32Array | undefined): (words: Uint32Array, i: number) => boolean {
  if (!of) return () => true;
  const index = new SubsetIndex(of);
  return (words, i) => index.count(words.subarray(i * 4, i * 4 + 4)) > 0;
}

export async function runDedup(files: readonly MetadataFile[], rule: DedupRule, of: Uint32Array | undefined, inputs: CurateInputs, where: string,
  onProgress?: (rows: number, file: string) => void): Promise<CurateResult> {
  const isCandidate = candidateTest(of);
  const kept = new UidWordList();
  let rowsRead = 0;
  if (rule.dedup === 'sha256') {
    const seen = new Map<string, number>();
    let groups = 0;
    for await (const chunk of scanMetadata(files, ['uid', 'sha256'])) {
      checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow);
      const words = uidWordsColumn(chunk.column('uid'), chunk.file, chunk.firstRow);
      const sha = stringsOf(chunk.column('sha256'), chunk.file, 'sha256');
      for (let i = 0; i < chunk.rows; i++) {
        if (!isCandidate(words, i)) continue;
        const key = textAt(sha, i);
        // a row without a hash has nothing to be a duplicate of: it stays
        if (key === null || key === '') {
          kept.push(words, i);
          continue;
        }
        const n = seen.get(key);
        if (n === undefined) kept.push(words, i);
        else if (n === 1) groups++;
        seen.set(key, (n ?? 0) + 1);
      }
      rowsRead += chunk.rows;
      onProgress?.(rowsRead, chunk.file);
    }
    return { words: sortUids(kept.finish()), rowsRead, groups };
  }
  if (!inputs.embeddings) throw new FormatError(where, 'dedup "embedding" needs the pool\'s npz image embeddings, and none are available here');
  const threshold = rule.threshold ?? 0.95;
  // the candidates' uids and vectors, in pool order
  const uidRows = new UidWordList();
  const parts: Float32Array[] = [];
  let dim = 0;
  for (const file of files) {
    const x = await inputs.embeddings(file);
    const vectors = toFloat32(x);
    let fileRows = 0;
    for await (const chunk of scanMetadata([file], ['uid'])) {
      checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow);
      const words = uidWordsColumn(chunk.column('uid'), chunk.file, chunk.firstRow);
      for (let i = 0; i < chunk.rows; i++) {
        if (!isCandidate(words, i)) continue;
        const row = chunk.firstRow + i;
        if (row >= x.rows) throw new FormatError(file.name, `has more rows than its embeddings (${x.rows})`);
        uidRows.push(words, i);
        parts.push(vectors.subarray(row * x.dim, (row + 1) * x.dim));
      }
      fileRows += chunk.rows;
      rowsRead += chunk.rows;
      onProgress?.(rowsRead, chunk.file);
    }
    if (fileRows !== x.rows) throw new FormatError(file.name, `has ${fileRows} rows, its embeddings ${x.rows}`);
    if (dim && x.dim !== dim) throw new FormatError(file.name, `embeddings of ${x.dim} dimensions, earlier files ${dim}`);
    dim = x.dim;
    if (uidRows.length * dim > MAX_EMBEDDING_FLOATS) throw new FormatError(where, `near-duplicate search over more than ${MAX_EMBEDDING_FLOATS / dim} rows is not supported: restrict it with "of"`);
  }
  const matrix = new Float32Array(parts.length * dim);
  parts.forEach((p, r) => matrix.set(p, r * dim));
  normalizeRows(matrix, dim);
  const grouped = groupByEmbedding(matrix, dim, threshold);
  const words = uidRows.finish();
  for (let r = 0; r < parts.length; r++) {
    const g = grouped.groupOf[r]!;
    // groups list members ascending: the first is the earliest in pool order
    if (g < 0 || grouped.groups[g]![0] === r) kept.push(words, r);
  }
  return { words: sortUids(kept.finish()), rowsRead, groups: grouped.groups.length };
}

function toFloat32(x: Embeddings): Float32Array {
  return x.data instanceof Float32Array ? x.data : float16ToFloat32(x.data);
}

/** A uniform draw in [0, 1) from a uid's four words and a seed (murmur3's 32-bit mixing and finaliser). */
export function uidDraw(words: Uint32Array, i: number, seed: number): number {
  const mix = (h: number) => {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  let h = mix(seed >>> 0);
  for (let k = 0; k < 4; k++) h = mix((h ^ words[i * 4 + k]!) >>> 0);
  // a second, differently seeded word for the low bits, so the draw has 53 bits
  const l = mix((h ^ 0x27d4eb2f) >>> 0);
  return (h * 2 ** 21 + (l >>> 11)) / 2 ** 53;
}

export async function runBalance(files: readonly MetadataFile[], rule: BalanceRule, key: CompiledExpression | undefined, of: Uint32Array | undefined,
  inputs: CurateInputs, where: string, onProgress?: (rows: number, file: string) => void): Promise<CurateResult> {
  if (!(Number.isInteger(rule.max_per_group) && rule.max_per_group >= 1)) throw new FormatError(where, 'max_per_group must be a positive integer');
  const isCandidate = candidateTest(of);
  const seed = rule.seed ?? 0;
  let centroids: Embeddings | undefined;
  if (rule.balance === 'clusters') {
    if (!rule.centroids) throw new FormatError(where, 'balance "clusters" needs "centroids": a .npy or .pt of k-means centroids (dcw cluster writes one)');
    if (!inputs.readFile || !inputs.embeddings || !inputs.engine) throw new FormatError(where, 'balance "clusters" needs the pool\'s npz embeddings and a GPU, and they are not available here');
    centroids = await inputs.readFile(rule.centroids);
  }
  // pass 1: each candidate's key (a float64; NaN = none) and uid, in pool order
  const uidRows = new UidWordList();
  const keys: number[] = [];
  let rowsRead = 0;
  for (const file of files) {
    let labels: Int32Array | undefined;
    if (centroids) {
      const x = await inputs.embeddings!(file);
      if (x.dim !== centroids.dim) throw new FormatError(file.name, `embeddings of ${x.dim} dimensions, the centroids ${centroids.dim}`);
      labels = await assignNearest(inputs.engine!, centroids, x);
    }
    for await (const chunk of scanMetadata([file], ['uid', ...(key?.columns ?? [])])) {
      checkedUids(chunk.column('uid'), chunk.file, chunk.firstRow);
      const words = uidWordsColumn(chunk.column('uid'), chunk.file, chunk.firstRow);
      const values = key ? (await key.evaluate(chunk)) as Float64Array : undefined;
      for (let i = 0; i < chunk.rows; i++) {
        if (!isCandidate(words, i)) continue;
        uidRows.push(words, i);
        const row = chunk.firstRow + i;
        if (labels && row >= labels.length) throw new FormatError(file.name, `has more rows than its embeddings (${labels.length})`);
        keys.push(labels ? labels[row]! : values![i]!);
      }
      rowsRead += chunk.rows;
      onProgress?.(rowsRead, chunk.file);
    }
  }
  const counts = new Map<number, number>();
  for (const k of keys) if (k === k) counts.set(k, (counts.get(k) ?? 0) + 1);
  const words = uidRows.finish();
  const kept = new UidWordList();
  for (let r = 0; r < keys.length; r++) {
    const k = keys[r]!;
    if (k !== k) continue;
    const n = counts.get(k)!;
    if (n <= rule.max_per_group || uidDraw(words, r, seed) < rule.max_per_group / n) kept.push(words, r);
  }
  return { words: sortUids(kept.finish()), rowsRead, groups: counts.size };
}

/** Each uid of `words` (sorted) as many times as its first matching repeat says (multiplied with its own count). */
export function applyRepeats(words: Uint32Array, repeats: readonly { members: Uint32Array; times: number }[]): Uint32Array {
  if (!repeats.length) return words;
  const indexes = repeats.map((r) => ({ index: new SubsetIndex(r.members), times: r.times }));
  const out = new UidWordList();
  const n = uidCount(words);
  for (let i = 0; i < n; i++) {
    const key = words.subarray(i * 4, i * 4 + 4);
    const match = indexes.find((r) => r.index.count(key) > 0);
    for (let t = 0; t < (match?.times ?? 1); t++) out.push(words, i);
  }
  return out.finish();
}
