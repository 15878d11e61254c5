/**
 * Caption cleaning as open_clip's SimpleTokenizer does it before BPE (open_clip 2.16.1 tokenizer.py):
 * `whitespace_clean(basic_clean(text)).lower()`, where basic_clean = ftfy.fix_text, then html.unescape twice,
 * then strip.
 *
 * html.unescape is exact: Python's own algorithm and its HTML5 entity table (html-entities.ts, generated from
 * Python's html.entities). ftfy.fix_text (ftfy 6, default settings) is implemented in the parts that change
 * real captions: its own HTML unescape ('auto': only when the text has no '<'), terminal escapes, the common
 * UTF-8-read-as-Windows-1252 mojibake, C1 controls, Latin ligatures, full/half-width forms, curly quotes,
 * line breaks, control characters and NFC. What differs: ftfy's mojibake repair is a scored search over many
 * codecs (Latin-1, cp1252, MacRoman, sloppy variants, partial fixes of mixed text); ours fixes the whole string
 * only when all of it is cp1252/Latin-1 text that decodes as valid UTF-8 and it shows a mojibake pair. Captions
 * where ftfy would fix only a part, or another codec, keep their mojibake here.
 */
import { HTML5_ENTITIES } from './html-entities.ts';

// ---------------------------------------------------------------- html.unescape (Python 3.11)

const INVALID_CHARREFS: Record<number, string> = {
  0x00: '\ufffd', 0x0d: '\r', 0x80: '\u20ac', 0x81: '\x81', 0x82: '\u201a', 0x83: '\u0192', 0x84: '\u201e', 0x85: '\u2026',
  0x86: '\u2020', 0x87: '\u2021', 0x88: '\u02c6', 0x89: '\u2030', 0x8a: '\u0160', 0x8b: '\u2039', 0x8c: '\u0152', 0x8d: '\x8d',
  0x8e: '\u017d', 0x8f: '\x8f', 0x90: '\x90', 0x91: '\u2018', 0x92: '\u2019', 0x93: '\u201c', 0x94: '\u201d', 0x95: '\u2022',
  0x96: '\u2013', 0x97: '\u2014', 0x98: '\u02dc', 0x99: '\u2122', 0x9a: '\u0161', 0x9b: '\u203a', 0x9c: '\u0153', 0x9d: '\x9d',
  0x9e: '\u017e', 0x9f: '\u0178',
};

function invalidCodepoint(n: number): boolean {
  return (n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f) || (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe;
}

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

function replaceCharref(_: string, s: string): string {
  if (s[0] === '#') {
    const hex = s[1] === 'x' || s[1] === 'X';
    const digits = s.slice(hex ? 2 : 1).replace(/;$/, '');
    const num = parseInt(digits, hex ? 16 : 10);
    if (num in INVALID_CHARREFS) return INVALID_CHARREFS[num]!;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (invalidCodepoint(num)) return '';
    return String.fromCodePoint(num);
  }
  const whole = HTML5_ENTITIES[s];
  if (whole !== undefined) return whole;
  // The longest prefix that is an entity name (those accepted without ';'), the rest kept.
  for (let x = s.length - 1; x > 1; x--) {
    const part = HTML5_ENTITIES[s.slice(0, x)];
    if (part !== undefined) return part + s.slice(x);
  }
  return '&' + s;
}

/** Python's html.unescape. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, replaceCharref);
}

// ---------------------------------------------------------------- ftfy.fix_text (subset, see above)

/** Windows-1252 bytes 0x80–0x9F (undefined ones map to the C1 control of the same value, as ftfy's sloppy codec does). */
const CP1252_HIGH = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';
const CP1252_BYTE = new Map<string, number>([...CP1252_HIGH].map((c, i) => [c, 0x80 + i]));

/** A UTF-8 lead byte read as cp1252/Latin-1, followed by a continuation byte read the same way. */
const MOJIBAKE_PAIR = new RegExp(`[\\u00c2-\\u00f4][\\u00a0-\\u00bf${CP1252_HIGH.replace(/[\\\]^-]/g, '\\$&')}]`);

function cp1252Bytes(text: string): Uint8Array | undefined {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80 || (c >= 0xa0 && c <= 0xff)) out[i] = c;
    else {
      const b = CP1252_BYTE.get(text[i]!);
      if (b === undefined) return undefined;
      out[i] = b;
    }
  }
  return out;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Text that is UTF-8 decoded as Windows-1252 (e.g. "cafÃ©", "donâ€™t"), decoded again; up to three layers. */
function fixMojibake(text: string): string {
  for (let round = 0; round < 3 && MOJIBAKE_PAIR.test(text); round++) {
    const bytes = cp1252Bytes(text);
    if (!bytes) return text;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      return text;
    }
  }
  return text;
}

const TERMINAL_ESCAPE = /\x1b\[((?:\d|;)*)([a-zA-Z])/g;
const C1_CONTROL = /[\x80-\x9f]/g;
const LIGATURES: Record<string, string> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn', '\u01f1': 'DZ', '\u01f2': 'Dz', '\u01f3': 'dz', '\u01c4': 'D\u017d',
  '\u01c5': 'D\u017e', '\u01c6': 'd\u017e', '\u01c7': 'LJ', '\u01c8': 'Lj', '\u01c9': 'lj', '\u01ca': 'NJ', '\u01cb': 'Nj',
  '\u01cc': 'nj', '\ufb00': 'ff', '\ufb01': 'fi', '\ufb02': 'fl', '\ufb03': 'ffi', '\ufb04': 'ffl', '\ufb05': '\u017ft', '\ufb06': 'st',
};
const LIGATURE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
/** ftfy's width map: U+FF01–U+FFEF to their NFKC forms, and the ideographic space. */
const WIDE = /[\u3000\uff01-\uffef]/g;
const SINGLE_QUOTE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE = /[\u201c-\u201f]/g;
const LINE_BREAK = /\r\n|[\r\u2028\u2029\u0085]/g;
const CONTROL = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]|\ud834[\udd73-\udd7a]|\udb40[\udc00-\udc7f]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The parts of ftfy.fix_text (default config) that matter for captions; see the module comment for what differs. */
export function fixText(text: string): string {
  if (!text.includes('<')) text = htmlUnescape(text);
  text = text.replace(TERMINAL_ESCAPE, '');
  text = fixMojibake(text);
  text = text.replace(C1_CONTROL, (c) => {
    const i = c.charCodeAt(0) - 0x80;
    const mapped = CP1252_HIGH[i]!;
    return mapped.charCodeAt(0) >= 0xa0 ? mapped : c;
  });
  text = text.replace(LIGATURE, (c) => LIGATURES[c]!);
  text = text.replace(WIDE, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
  text = text.replace(SINGLE_QUOTE, "'").replace(DOUBLE_QUOTE, '"');
  text = text.replace(LINE_BREAK, '\n');
  text = text.replace(LONE_SURROGATE, '\ufffd');
  text = text.replace(CONTROL, '');
  return text.normalize('NFC');
}

// ---------------------------------------------------------------- open_clip's cleaning

/** Python's str.strip() whitespace set (str.isspace), for strip and the \s+ collapse. */
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, 'g');
const EDGE_SPACE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** open_clip 2.16.1: whitespace_clean(basic_clean(text)).lower(). */
export function cleanCaption(text: string): string {
  text = fixText(text);
  text = htmlUnescape(htmlUnescape(text)).replace(EDGE_SPACE, '');
  return text.replace(SPACE_RUN, ' ').replace(EDGE_SPACE, '').toLowerCase();
}
