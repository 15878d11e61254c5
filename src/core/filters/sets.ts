/** Set algebra on sorted uid words (4 words a uid, numpy's (f0, f1) order), merging in one pass. */
import { uidCount } from '../formats/uid.ts';

function compareAt(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (const k of [1, 0, 3, 2]) {
    const x = a[i * 4 + k]!;
    const y = b[j * 4 + k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Sorted words without repeats. */
export function uniqueSorted(words: Uint32Array): Uint32Array {
  const n = uidCount(words);
  const out = new Uint32Array(words.length);
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (m > 0 && compareAt(words, i, out, m - 1) === 0) continue;
    out.set(words.subarray(i * 4, i * 4 + 4), m++ * 4);
  }
  return out.slice(0, m * 4);
}

function merge(a: Uint32Array, b: Uint32Array, keepA: boolean, keepB: boolean, keepBoth: boolean): Uint32Array {
  const na = uidCount(a);
  const nb = uidCount(b);
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let m = 0;
  const put = (src: Uint32Array, k: number) => out.set(src.subarray(k * 4, k * 4 + 4), m++ * 4);
  while (i < na || j < nb) {
    const c = i >= na ? 1 : j >= nb ? -1 : compareAt(a, i, b, j);
    if (c < 0) { if (keepA) put(a, i); i++; }
    else if (c > 0) { if (keepB) put(b, j); j++; }
    else { if (keepBoth) put(a, i); i++; j++; }
  }
  return out.slice(0, m * 4);
}

/** a ∩ b (both sorted and distinct). */
export const intersectSorted = (a: Uint32Array, b: Uint32Array) => merge(a, b, false, false, true);
/** a ∪ b (both sorted and distinct). */
export const unionSorted = (a: Uint32Array, b: Uint32Array) => merge(a, b, true, true, true);
/** a − b (both sorted and distinct). */
export const subtractSorted = (a: Uint32Array, b: Uint32Array) => merge(a, b, true, false, false);
