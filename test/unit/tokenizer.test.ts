// CLIP's BPE tokenizer against ids that come from outside this code:
//  [oc]   OpenAI CLIP's README / open_clip notebooks ("a diagram", "a dog", "a cat": [49406, 320, 22697|1929|2368, 49407]);
//  [vespa] vespa-engine/sample-apps text-image-search ModelsTest.java (open_clip-style BPETokenizer against the
//         same bpe_simple_vocab_16e6.txt.gz);
//  [hf]   HuggingFace CLIPTokenizer("openai/clip-vit-base-patch32") ids quoted in a public Swift test suite
//         (CLIPTokenizerTests.swift) and an SD prompt write-up ("photo of a couch, photorealistic");
//  [hand] derived here by hand from the merges file: a single character c is vocab id index(c) + 256 with '</w>',
//         where index is the position of c's byte in bytes_to_unicode's order ('!' = 0 … '~' = 93), so
//         '&' (byte 38) → 38 − 33 + 256 = 261; a merge on line L of the file (line 0 = header) is id 512 + L − 1,
//         and "' s</w>" is line 57 → "'s</w>" = 568.
// The vocabulary is ../shared/data/bpe_simple_vocab_16e6.txt.gz beside the checkout (never copied into the repo; DCW_BPE overrides).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';
import { gzipSync } from 'fflate';
import { gunzipSync } from 'node:zlib';
import { FormatError } from '../../src/core/formats/errors.ts';
import { cleanCaption, htmlUnescape } from '../../src/core/text/clean.ts';
import { ClipTokenizer, eotPositions } from '../../src/core/text/tokenizer.ts';

const BPE = BPE_PATH;
const skip = BPE_SKIP;
const load = (() => {
  let tok: ClipTokenizer | undefined;
  return () => (tok ??= ClipTokenizer.fromBytes(readFileSync(BPE), BPE));
})();

const SOT = 49406;
const EOT = 49407;
const CASES: [string, number[], string][] = [
  ['a diagram', [320, 22697], 'oc'],
  ['a dog', [320, 1929], 'oc'],
  ['a cat', [320, 2368], 'oc'],
  ['Two people are sitting next to a wood - stacked campfire at night', [1237, 1047, 631, 4919, 1131, 531, 320, 1704, 268, 24990, 32530, 536, 930], 'vespa'],
  ['A surfer is riding a wave', [320, 24925, 533, 6765, 320, 4535], 'vespa'],
  ['Two men walk through a city with words on the street', [1237, 1656, 2374, 1417, 320, 1305, 593, 2709, 525, 518, 2012], 'vespa'],
  ['An indian chief in full dress .', [550, 3606, 3455, 530, 1476, 2595, 269], 'vespa'],
  ['When did man last land on the moon ?', [827, 1335, 786, 952, 973, 525, 518, 3293, 286], 'vespa'],
  ['a photo of a waterfall', [320, 1125, 539, 320, 16403], 'hf'],
  ['dog on a beach', [1929, 525, 320, 2117], 'hf'],
  ['photo of a couch, photorealistic', [1125, 539, 320, 12724, 267, 1153, 16157], 'hf'],
  // A word not in the vocabulary: split by merge rank ("mobi|lec|lip"), and '</w>' only on the last piece.
  ['mobileclip', [9451, 944, 8546], 'hf'],
  ['hatbox', [3447, 2063], 'hf'],
  ['hat box', [3801, 2063], 'hf'],
  // Case and whitespace runs; punctuation is its own token.
  ['Hello,   WORLD!', [3306, 267, 1002, 256], 'hf'],
  ['  \t Hello,\n\nWORLD!  ', [3306, 267, 1002, 256], 'hf'],
  // Numbers: one token per digit.
  ['birthday cake 2024', [1166, 2972, 273, 271, 273, 275], 'hf'],
  // Unicode: accents and emoji are whole tokens in this vocabulary.
  ['café', [15304], 'hf'],
  ['🐶', [10631], 'hf'],
  ['', [], 'hf'],
  ['     ', [], 'hf'],
  // HTML entities (html.unescape, twice): &amp; → &, and once more for a doubly escaped one; '&' is 261 [hand].
  ['dog &amp; cat', [1929, 261, 2368], 'hf+hand'],
  ['dog &amp;amp; cat', [1929, 261, 2368], 'hf+hand'],
  ['a dog&#x20;&#32;on a beach', [320, 1929, 525, 320, 2117], 'hf'],
  // ftfy: curly apostrophe → "'" then "'s" splits off (568 [hand]); UTF-8 mojibake "cafÃ©" → "café";
  // full-width letters → ASCII; the "ﬁ" ligature → "fi".
  ['dog’s', [1929, 568], 'hf+hand'],
  ["dog's", [1929, 568], 'hf+hand'],
  ['cafÃ©', [15304], 'hf'],
  ['ａ ｄｏｇ', [320, 1929], 'oc'],
  ['a waterfall', [320, 16403], 'hf'],
];

test('tokenizer: open_clip ids for captions (plain, unicode, html entities, numbers, ftfy fixes)', { skip }, () => {
  const tok = load();
  assert.equal(tok.vocabSize, 49408);
  assert.equal(tok.sot, SOT);
  assert.equal(tok.eot, EOT);
  for (const [text, ids, source] of CASES) {
    const row = tok.tokenizeOne(text);
    assert.equal(row.length, 77);
    const expected = [SOT, ...ids, EOT, ...Array(77 - ids.length - 2).fill(0)];
    assert.deepEqual([...row], expected, `${JSON.stringify(text)} [${source}]`);
  }
});

test('tokenizer: long captions are truncated to the context with the end token kept', { skip }, () => {
  const tok = load();
  const long = 'waterfall '.repeat(200);
  const row = tok.tokenizeOne(long);
  assert.deepEqual([...row], [SOT, ...Array(75).fill(16403), EOT]);
  // A shorter context (the workbench's small text towers) truncates the same way.
  assert.deepEqual([...tok.tokenizeOne(long, 8)], [SOT, ...Array(6).fill(16403), EOT]);
  // Exactly filling the context: nothing dropped, no padding.
  assert.deepEqual([...tok.tokenizeOne('a photo of a waterfall', 7)], [SOT, 320, 1125, 539, 320, 16403, EOT]);
  assert.deepEqual([...tok.tokenizeOne('a photo of a waterfall', 6)], [SOT, 320, 1125, 539, 320, EOT]);
  // Batches are row-major and the end token is the argmax of each row.
  const batch = tok.tokenize(['a dog', long, ''], { contextLength: 77 });
  assert.equal(batch.length, 3 * 77);
  assert.deepEqual([...eotPositions(batch, 3, 77)], [3, 76, 1]);
  assert.throws(() => tok.tokenizeOne('a', 1), RangeError);
});

test('tokenizer: decode inverts encode up to cleaning', { skip }, () => {
  const tok = load();
  assert.equal(tok.decode(tok.encode('A surfer is riding a wave')), 'a surfer is riding a wave ');
  assert.equal(tok.decode(tok.encode('Café 🐶 2024, &amp;')), 'café 🐶 2 0 2 4 , & ');
  assert.equal(tok.decode(tok.tokenizeOne('a dog').subarray(0, 4)), '<start_of_text>a dog <end_of_text>');
});

test('tokenizer: loads plain or gzipped merges; a wrong file is a FormatError', { skip }, () => {
  const gz = readFileSync(BPE);
  const fromGz = ClipTokenizer.fromBytes(gz);
  const fromText = ClipTokenizer.fromBytes(gunzipSync(gz)); // zlib, independent of the tokenizer's fflate
  assert.deepEqual([...fromText.tokenizeOne('a photo of a waterfall')], [...fromGz.tokenizeOne('a photo of a waterfall')]);
  assert.throws(() => ClipTokenizer.fromBytes(gzipSync(new TextEncoder().encode('#version\na b\n')), 'x.gz'), (e) => e instanceof FormatError && /merges/.test(e.message));
  assert.throws(() => ClipTokenizer.fromBytes(Uint8Array.of(0x1f, 0x8b, 1, 2, 3), 'y.gz'), FormatError);
  assert.throws(() => ClipTokenizer.fromBytes(Uint8Array.of(0xff, 0xfe, 0x00), 'z'), FormatError);
});

test('html.unescape matches Python (values produced by Python 3.11 html.unescape)', () => {
  // python3 -c "import html; print(repr(html.unescape(S)))" for each S.
  const cases: [string, string][] = [
    ['&amp; &lt;b&gt; &quot;q&quot; &#39;', '& <b> "q" \''],
    ['&amp &ampx &notit; &copy2024', '& &x ¬it; ©2024'],
    ['&#0; &#128; &#x110000; &#xD800; &#1; &#65;&#x42;', '\ufffd \u20ac \ufffd \ufffd  AB'],
    ['&nosuch; & &;', '&nosuch; & &;'],
    ['&NotNestedGreaterGreater; &fjlig;', '\u2aa2\u0338 fj'],
  ];
  for (const [input, output] of cases) assert.equal(htmlUnescape(input), output, input);
});

test('cleaning: ftfy parts that change captions, then html, whitespace, lowercase', () => {
  assert.equal(cleanCaption('  Don’t “Quote”  me\r\n'), 'don\'t "quote" me');
  assert.equal(cleanCaption('donâ€™t'), "don't");
  assert.equal(cleanCaption('ﬁne Ｔｅｘｔ\u3000here'), 'fine text here');
  assert.equal(cleanCaption('a\x1b[31mred\x1b[0m dog\u200b'), 'ared dog\u200b');
  assert.equal(cleanCaption('e\u0301'), '\u00e9');
  // ftfy skips its own HTML unescape when the text has '<'; open_clip's two unescapes still run.
  assert.equal(cleanCaption('<b> &amp;amp;amp;'), '<b> &amp;');
  assert.equal(cleanCaption('&amp;amp;amp;'), '&');
});
