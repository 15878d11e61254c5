/**
 * CLIP's byte-level BPE tokenizer, as open_clip's SimpleTokenizer (2.16.1): clean the caption (clean.ts), split
 * it with CLIP's regex, map each piece's UTF-8 bytes to printable characters (bytes_to_unicode), merge by rank
 * with the merges of bpe_simple_vocab_16e6.txt.gz, and frame as [<start_of_text>] + ids + [<end_of_text>],
 * zero-padded to the context length (77), truncated with the end token kept last.
 *
 * Vocabulary ids: 0–255 the byte characters, 256–511 the same with '</w>', then one per merge (merge k of the
 * file's lines 1..48894 → 512 + k), then <start_of_text> = 49406, <end_of_text> = 49407.
 */
import { gunzipSync } from 'fflate';
import { FormatError } from '../formats/errors.ts';
import { cleanCaption } from './clean.ts';

export const CONTEXT_LENGTH = 77;
export const START_OF_TEXT = '<start_of_text>';
export const END_OF_TEXT = '<end_of_text>';
/** Merges open_clip reads: lines [1, 49152 − 256 − 2 + 1) of the file (line 0 is the version header). */
export const MERGE_COUNT = 49152 - 256 - 2;

/** GPT-2's reversible byte → printable character table. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table = new Array<string>(256);
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i]!)));
  return table;
}

// Special tokens first (as open_clip builds it), then CLIP's split; lowercase input makes the 'i' flag moot but
// it is kept for parity with the original pattern.
const SPLIT = /<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

export interface TokenizeOptions {
  /** Default 77 (every CLIP model). */
  contextLength?: number;
}

export class ClipTokenizer {
  readonly encoder = new Map<string, number>();
  readonly decoder: string[] = [];
  readonly sot: number;
  readonly eot: number;
  readonly vocabSize: number;
  private readonly ranks = new Map<string, number>();
  private readonly byteEncoder = bytesToUnicode();
  private readonly byteDecoder = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  private readonly utf8 = new TextEncoder();

  /** `merges`: the merge lines ("a b"), in rank order, without the header line. */
  constructor(merges: readonly string[]) {
    this.byteEncoder.forEach((c, b) => this.byteDecoder.set(c, b));
    // Python's dict order of bytes_to_unicode(): the printable bytes first, then the rest — which is the
    // order of the characters' code points.
    const bytesInOrder = [...this.byteEncoder].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    const vocab = [...bytesInOrder, ...bytesInOrder.map((c) => c + '</w>')];
    merges.forEach((line, rank) => {
      const parts = line.split(/\s+/).filter(Boolean);
      this.ranks.set(parts.join(' '), rank);
      vocab.push(parts.join(''));
    });
    vocab.push(START_OF_TEXT, END_OF_TEXT);
    // dict(zip(vocab, range)) — a repeated string keeps its last id, as in Python.
    vocab.forEach((v, i) => this.encoder.set(v, i));
    this.decoder.push(...vocab);
    this.sot = this.encoder.get(START_OF_TEXT)!;
    this.eot = this.encoder.get(END_OF_TEXT)!;
    this.vocabSize = vocab.length;
    this.cache.set(START_OF_TEXT, [START_OF_TEXT]);
    this.cache.set(END_OF_TEXT, [END_OF_TEXT]);
  }

  /** From the text of bpe_simple_vocab_16e6.txt (merges [1, 48895) of its lines, as open_clip reads them). */
  static fromText(text: string, file = 'bpe vocabulary'): ClipTokenizer {
    const lines = text.split('\n');
    const merges = lines.slice(1, MERGE_COUNT + 1);
    if (merges.length < MERGE_COUNT) throw new FormatError(file, `has ${merges.length} merges, expected ${MERGE_COUNT} (is it bpe_simple_vocab_16e6.txt?)`);
    merges.forEach((m, i) => {
      if (m.split(/\s+/).filter(Boolean).length !== 2) throw new FormatError(file, `line ${i + 2} is not a merge of two symbols`);
    });
    return new ClipTokenizer(merges);
  }

  /** From the gzipped file's bytes (bpe_simple_vocab_16e6.txt.gz) or the plain text's bytes. */
  static fromBytes(bytes: Uint8Array, file = 'bpe vocabulary'): ClipTokenizer {
    let raw = bytes;
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
      try {
        raw = gunzipSync(bytes);
      } catch (err) {
        throw new FormatError(file, `is not a valid gzip file (${(err as Error).message})`);
      }
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw new FormatError(file, 'is not UTF-8 text');
    }
    return ClipTokenizer.fromText(text, file);
  }

  /** BPE of one pre-token (already byte-encoded): its vocabulary strings. */
  bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const chars = [...token];
    let word = [...chars.slice(0, -1), chars[chars.length - 1] + '</w>'];
    if (word.length === 1) {
      this.cache.set(token, word);
      return word;
    }
    for (;;) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(word[i] + ' ' + word[i + 1]);
        if (r !== undefined && r < best) {
          best = r;
          first = word[i]!;
          second = word[i + 1]!;
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else next.push(word[i++]!);
      }
      word = next;
      if (word.length === 1) break;
    }
    this.cache.set(token, word);
    return word;
  }

  /** Token ids of a caption, without start/end tokens (SimpleTokenizer.encode). */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const m of cleanCaption(text).matchAll(SPLIT)) {
      let encoded = '';
      for (const b of this.utf8.encode(m[0])) encoded += this.byteEncoder[b];
      for (const piece of this.bpe(encoded)) ids.push(this.encoder.get(piece)!);
    }
    return ids;
  }

  /** Text of token ids (SimpleTokenizer.decode: '</w>' becomes a space; invalid UTF-8 becomes U+FFFD). */
  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    let text = '';
    const flush = () => {
      text += new TextDecoder().decode(Uint8Array.from(bytes));
      bytes.length = 0;
    };
    for (let i = 0; i < ids.length; i++) {
      const piece = this.decoder[ids[i]!];
      if (piece === undefined) continue;
      if (piece === START_OF_TEXT || piece === END_OF_TEXT) {
        flush();
        text += piece;
        continue;
      }
      const end = piece.endsWith('</w>');
      for (const c of end ? piece.slice(0, -4) : piece) bytes.push(this.byteDecoder.get(c)!);
      if (end) bytes.push(0x20);
    }
    flush();
    return text;
  }

  /** One caption framed and padded: [sot, ...ids, eot, 0…] of length contextLength, eot kept on truncation. */
  tokenizeOne(text: string, contextLength = CONTEXT_LENGTH): Int32Array {
    if (!Number.isInteger(contextLength) || contextLength < 2) throw new RangeError(`context length must be an integer ≥ 2, got ${contextLength}`);
    const tokens = [this.sot, ...this.encode(text), this.eot];
    const out = new Int32Array(contextLength);
    if (tokens.length > contextLength) {
      tokens.length = contextLength;
      tokens[contextLength - 1] = this.eot;
    }
    out.set(tokens);
    return out;
  }

  /** Captions → [n, contextLength] ids, row-major (open_clip's tokenize()). */
  tokenize(texts: string | readonly string[], options: TokenizeOptions = {}): Int32Array {
    const list = typeof texts === 'string' ? [texts] : texts;
    const ctx = options.contextLength ?? CONTEXT_LENGTH;
    const out = new Int32Array(list.length * ctx);
    list.forEach((t, i) => out.set(this.tokenizeOne(t, ctx), i * ctx));
    return out;
  }
}

/** Index of the end-of-text token in each row: argmax of the ids (open_clip's text pooling). */
export function eotPositions(ids: ArrayLike<number>, batch: number, contextLength: number): Uint32Array {
  const out = new Uint32Array(batch);
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let t = 1; t < contextLength; t++) if (ids[b * contextLength + t]! > ids[b * contextLength + best]!) best = t;
    out[b] = best;
  }
  return out;
}
