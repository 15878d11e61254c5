// `dcw tokenize`: run as a child process through the command's registration (the lead wires it into
// server/cli/main.ts), plus the default-vocabulary search in Python site-packages.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { BPE_PATH, BPE_SKIP } from '../helpers/shared-data.ts';
import { findDefaultBpe, loadTokenizer } from '../../server/cli/commands/tokenize.ts';
import { UserError } from '../../server/cli/errors.ts';

const REPO = resolve(import.meta.dirname, '../..');
const BPE = BPE_PATH;
const skip = BPE_SKIP;

/** The real `dcw tokenize ARGS`, as a user runs it. */
function tokenize(args: string[], env: Record<string, string | undefined> = {}) {
  const run = spawnSync(process.execPath, [resolve(REPO, 'bin/dcw.js'), 'tokenize', ...args], {
    cwd: REPO, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000,
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

test('dcw tokenize prints the ids of open_clip tokenize(), padded to the context', { skip }, () => {
  const r = tokenize(['--bpe', BPE, '--', 'a', 'diagram']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `49406 320 22697 49407${' 0'.repeat(73)}\n`);
  const short = tokenize(['--bpe', BPE, '--context', '6', '--', '-A photo of a waterfall']);
  assert.equal(short.stdout, '49406 268 320 1125 539 49407\n');
  // $DCW_BPE stands in for --bpe.
  assert.equal(tokenize(['--context', '4', 'a dog'], { DCW_BPE: BPE }).stdout, '49406 320 1929 49407\n');
});

test('dcw tokenize: bad flags and missing vocabulary are one-line errors', { skip }, () => {
  const ctx = tokenize(['--bpe', BPE, '--context', 'x', 'a']);
  assert.equal(ctx.status, 2);
  assert.match(ctx.stderr, /^dcw: tokenize: --context must be an integer ≥ 2, got 'x'\n$/);
  const missing = tokenize(['--bpe', '/nonexistent/bpe.txt.gz', 'a']);
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /nonexistent\/bpe\.txt\.gz/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
});

test('default vocabulary: found inside an installed open_clip package, else a clear UserError', { skip }, async () => {
  const saved = process.env.DCW_BPE;
  delete process.env.DCW_BPE;
  const dir = await mkdtemp(join(tmpdir(), 'dcw-site-'));
  try {
    const empty = join(dir, 'empty-site-packages');
    const site = join(dir, 'site-packages');
    await mkdir(empty);
    await mkdir(join(site, 'open_clip'), { recursive: true });
    await symlink(resolve(BPE), join(site, 'open_clip', 'bpe_simple_vocab_16e6.txt.gz'));
    assert.equal(findDefaultBpe([empty]), undefined);
    assert.equal(findDefaultBpe([empty, site]), join(site, 'open_clip', 'bpe_simple_vocab_16e6.txt.gz'));
    const tok = await loadTokenizer(undefined, [empty, site]);
    assert.deepEqual([...tok.tokenizeOne('a cat', 4)], [49406, 320, 2368, 49407]);
    await assert.rejects(loadTokenizer(undefined, [empty]), (e) => e instanceof UserError && /pass --bpe/.test(e.message));
  } finally {
    if (saved !== undefined) process.env.DCW_BPE = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
