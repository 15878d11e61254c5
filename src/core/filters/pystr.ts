/**
 * Python `str` semantics the official filters depend on, for JavaScript strings (UTF-16).
 *
 * - `len(s)` counts code points: an emoji outside the BMP is 1, not 2.
 * - `s.split()` (no argument) splits on runs of Unicode whitespace as `str.isspace()` defines it
 *   (bidirectional class WS/B/S or category Zs): that is not JavaScript's `\s` (which has U+FEFF and
 *   lacks U+001C–U+001F and U+0085). The set below is Python 3.8–3.12's (Unicode ≥ 6.3, so not U+180E).
 */

const PY_SPACE = new Set<number>([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

/** Python's `chr(c).isspace()`. (No whitespace code point lies outside the BMP.) */
export function isPySpace(codeUnit: number): boolean {
  return codeUnit <= 0x20 ? PY_SPACE.has(codeUnit) : codeUnit >= 0x85 && PY_SPACE.has(codeUnit);
}

/** Python's `len(s)`: code points. A lone surrogate counts as one, as Python's surrogateescape text would. */
export function pyLen(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** Python's `len(s.split())`: the number of maximal runs of non-whitespace. */
export function pyWordCount(s: string): number {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const space = isPySpace(s.charCodeAt(i));
    if (!space && !inWord) words++;
    inWord = !space;
  }
  return words;
}

/** Python's `s.split()`. */
export function pySplit(s: string): string[] {
  const out: string[] = [];
  let start = -1;
  for (let i = 0; i <= s.length; i++) {
    const space = i === s.length || isPySpace(s.charCodeAt(i));
    if (space && start >= 0) {
      out.push(s.slice(start, i));
      start = -1;
    } else if (!space && start < 0) start = i;
  }
  return out;
}
