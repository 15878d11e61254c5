/**
 * Sorting filter results: uid words (4 a uid: f0 low, f0 high, f1 low, f1 high) into numpy's order of
 * the u8,u8 records, (f0, f1) unsigned — the same result as sortUidWords in formats/uid.ts, faster on the
 * millions of uids a filter keeps: one most-significant-digit pass on the top 16 bits spreads random uids
 * into buckets of a few hundred, which are then sorted by byte (MSD, recursing only where keys still tie)
 * and finished by insertion sort while they are small and in cache. Equal keys are equal records, so no
 * stability is needed.
 */
import { isSortedWords, uidCount } from '../formats/uid.ts';

/** Key words from most to least significant: f0 high, f0 low, f1 high, f1 low. */
const ORDER = [1, 0, 3, 2] as const;
const SMALL = 32;

function less(w: Uint32Array, a: number, b: number): boolean {
  for (let k = 0; k < 4; k++) {
    const x = w[a * 4 + ORDER[k]!]!;
    const y = w[b * 4 + ORDER[k]!]!;
    if (x !== y) return x < y;
  }
  return false;
}

/** Insertion sort of records [lo, hi) in place. */
function insertion(w: Uint32Array, lo: number, hi: number): void {
  for (let i = lo + 1; i < hi; i++) {
    if (!less(w, i, i - 1)) continue;
    const r0 = w[i * 4]!, r1 = w[i * 4 + 1]!, r2 = w[i * 4 + 2]!, r3 = w[i * 4 + 3]!;
    let j = i - 1;
    while (j >= lo) {
      const b = j * 4;
      const y0 = w[b]!, y1 = w[b + 1]!, y2 = w[b + 2]!, y3 = w[b + 3]!;
      // does the held record sort before record j?
      if (!(r1 !== y1 ? r1 < y1 : r0 !== y0 ? r0 < y0 : r3 !== y3 ? r3 < y3 : r2 < y2)) break;
      w[b + 4] = y0; w[b + 5] = y1; w[b + 6] = y2; w[b + 7] = y3;
      j--;
    }
    const o = (j + 1) * 4;
    w[o] = r0; w[o + 1] = r1; w[o + 2] = r2; w[o + 3] = r3;
  }
}

const hist = new Uint32Array(2049);

/**
 * Sorts records [lo, hi), which agree on every key word before ORDER[k] and on the top `known` bits of
 * ORDER[k], by the rest of that word (LSD radix, 11-bit digits, ping-ponging through tmp), then sorts
 * each run that ties on the whole word by the next word: small runs by insertion sort, long ones (shared
 * prefixes, duplicates) recursively.
 */
function byWord(w: Uint32Array, tmp: Uint32Array, lo: number, hi: number, k: number, known: number): void {
  const n = hi - lo;
  if (n <= SMALL) {
    insertion(w, lo, hi);
    return;
  }
  const word = ORDER[k]!;
  let src = w;
  let dst = tmp;
  for (let low = 0; low < 32 - known; low += 11) {
    const bits = Math.min(11, 32 - known - low);
    const mask = (1 << bits) - 1;
    hist.fill(0, 0, (1 << bits) + 1);
    for (let i = lo; i < hi; i++) hist[((src[i * 4 + word]! >>> low) & mask) + 1]!++;
    if (hist[((src[lo * 4 + word]! >>> low) & mask) + 1] === n) continue; // one digit for all: nothing moves
    hist[0] = lo;
    for (let b = 1; b <= mask; b++) hist[b]! += hist[b - 1]!;
    for (let i = lo; i < hi; i++) {
      const s = i * 4;
      const o = hist[(src[s + word]! >>> low) & mask]!++ * 4;
      dst[o] = src[s]!; dst[o + 1] = src[s + 1]!; dst[o + 2] = src[s + 2]!; dst[o + 3] = src[s + 3]!;
    }
    const t = src;
    src = dst;
    dst = t;
  }
  if (src !== w) w.set(src.subarray(lo * 4, hi * 4), lo * 4);
  if (k === 3) return;
  // runs that tie on this word: sorted by the next one
  let runStart = lo;
  for (let i = lo + 1; i <= hi; i++) {
    if (i < hi && w[i * 4 + word] === w[runStart * 4 + word]) continue;
    if (i - runStart > 1) byWord(w, tmp, runStart, i, k + 1, 0);
    runStart = i;
  }
}

/** Top-level digit: 11 bits keeps the first scatter's write streams few enough for the caches and TLB. */
const TOP_BITS = 11;

/** Sorts uid words in place into numpy's order (duplicates kept) and returns them. */
export function sortUids(words: Uint32Array): Uint32Array {
  const n = uidCount(words);
  if (n < 2 || isSortedWords(words)) return words;
  const tmp = new Uint32Array(words.length);
  if (n <= 1 << 14) {
    byWord(words, tmp, 0, n, 0, 0);
    return words;
  }
  // first pass on the top bits, into tmp, then back bucket by bucket
  const buckets = 1 << TOP_BITS;
  const shift = 32 - TOP_BITS;
  const count = new Uint32Array(buckets + 1);
  for (let i = 0; i < n; i++) count[(words[i * 4 + 1]! >>> shift) + 1]!++;
  for (let b = 1; b <= buckets; b++) count[b]! += count[b - 1]!;
  const next = count.slice(0, buckets);
  for (let i = 0; i < n; i++) {
    const s = i * 4;
    const o = next[words[s + 1]! >>> shift]!++ * 4;
    tmp[o] = words[s]!; tmp[o + 1] = words[s + 1]!; tmp[o + 2] = words[s + 2]!; tmp[o + 3] = words[s + 3]!;
  }
  words.set(tmp);
  for (let b = 0; b < buckets; b++) {
    const a = count[b]!;
    const z = count[b + 1]!;
    if (z - a > 1) byWord(words, tmp, a, z, 0, TOP_BITS);
  }
  return words;
}
