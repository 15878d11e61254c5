/**
 * `dcw tokenize [--bpe FILE] [--context N] [--] TEXT...`: the caption's CLIP token ids, exactly as open_clip's
 * tokenize() gives them (start token, ids, end token, zero padding to the context), space-separated.
 * The vocabulary is open_clip's bpe_simple_vocab_16e6.txt.gz: --bpe, else $DCW_BPE, else the copy inside an
 * installed open_clip (or OpenAI clip) Python package.
 */
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ClipTokenizer, CONTEXT_LENGTH } from '../../../src/core/text/tokenizer.ts';
import { UserError } from '../errors.ts';

const VOCAB = 'bpe_simple_vocab_16e6.txt.gz';

/** Python library roots to look in: virtualenv/conda first, then the user's and the system's. */
function pythonLibRoots(): string[] {
  const prefixes = [process.env.VIRTUAL_ENV, process.env.CONDA_PREFIX, join(homedir(), '.local'), '/usr/local', '/usr', '/opt/conda'].filter((p): p is string => !!p);
  const roots: string[] = [];
  for (const prefix of prefixes) {
    const lib = join(prefix, 'lib');
    let names: string[] = [];
    try {
      names = readdirSync(lib).filter((n) => /^python3(\.\d+)?$/.test(n));
    } catch {
      continue;
    }
    for (const n of names.sort().reverse()) for (const sub of ['site-packages', 'dist-packages']) roots.push(join(lib, n, sub));
  }
  roots.push('/usr/lib/python3/dist-packages');
  return roots;
}

/** open_clip's (or OpenAI clip's) vocabulary file in an installed Python package, if any. */
export function findDefaultBpe(roots = pythonLibRoots()): string | undefined {
  if (process.env.DCW_BPE) return process.env.DCW_BPE;
  for (const root of roots) {
    for (const pkg of ['open_clip', 'clip']) {
      const path = join(root, pkg, VOCAB);
      if (existsSync(path)) return path;
    }
  }
  return undefined;
}

export async function loadTokenizer(bpe: string | undefined, roots?: string[]): Promise<ClipTokenizer> {
  const path = bpe ?? findDefaultBpe(roots);
  if (!path) throw new UserError(`no CLIP vocabulary found (no --bpe, no $DCW_BPE, no open_clip in a Python site-packages); pass --bpe path/to/${VOCAB}`, 2);
  return ClipTokenizer.fromBytes(new Uint8Array(await readFile(path)), path);
}

export function registerTokenize(program: Command): void {
  program
    .command('tokenize')
    .description("CLIP token ids of a caption, as open_clip's tokenize() (start, ids, end, zero padding)")
    .argument('<text...>', 'the caption (several words are joined with spaces; use -- before text starting with -)')
    .option('--bpe <file>', `open_clip's ${VOCAB} (default: $DCW_BPE or the copy in an installed open_clip)`)
    .option('--context <n>', 'context length', String(CONTEXT_LENGTH))
    .action(async (words: string[], opts: { bpe?: string; context: string }) => {
      const context = Number(opts.context);
      if (!Number.isInteger(context) || context < 2) throw new UserError(`tokenize: --context must be an integer ≥ 2, got '${opts.context}'`, 2);
      const tokenizer = await loadTokenizer(opts.bpe);
      process.stdout.write(`${tokenizer.tokenizeOne(words.join(' '), context).join(' ')}\n`);
    });
}
