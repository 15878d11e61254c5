/**
 * Data files for tests that the project must not commit (the CLIP BPE vocabulary) live in ../shared/data beside
 * the checkout, as on every developer machine and in CI. DCW_BPE points elsewhere.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

export const BPE_PATH = process.env.DCW_BPE ?? resolve(import.meta.dirname, '../../../shared/data/bpe_simple_vocab_16e6.txt.gz');

/**
 * `skip` option for tests that need the vocabulary: skipped with the reason on a machine without it, but never
 * in CI, where ../shared is always laid beside the clone and a missing file must fail loudly.
 */
export const BPE_SKIP: string | false =
  existsSync(BPE_PATH) || process.env.CI === 'true' ? false : `no CLIP vocabulary at ${BPE_PATH} (set DCW_BPE)`;
