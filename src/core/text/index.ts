/**
 * Text: CLIP's BPE tokenizer (tokenizer.ts) and open_clip's caption cleaning (clean.ts).
 */
export { ClipTokenizer, bytesToUnicode, eotPositions, CONTEXT_LENGTH, START_OF_TEXT, END_OF_TEXT, MERGE_COUNT, type TokenizeOptions } from './tokenizer.ts';
export { cleanCaption, fixText, htmlUnescape } from './clean.ts';
