// Every model-free baseline on the DuckDB-written metadata fixture gives the bytes that the independent
// numpy reference (test/fixtures/filters/reference.py, the rules of apply_filter.py) np.save'd.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { checkBaselineSpec, runBaseline, subsetBytes, type BaselineSpec } from '../../src/core/filters/baselines.ts';
import { pyLen, pySplit, pyWordCount } from '../../src/core/filters/pystr.ts';
import { thresholdForFraction } from '../../src/core/filters/threshold.ts';
import { tableDetector } from '../../src/core/text/langid.ts';
import { fastTextAvailable, loadFastTextDetector } from '../../server/filters/langid-fasttext.ts';
import { listMetadataFiles } from '../../server/filters/metadata-dir.ts';

const FIX = join(import.meta.dirname, '../fixtures/filters');
const cases = JSON.parse(readFileSync(join(FIX, 'cases.json'), 'utf8')) as (BaselineSpec & { out: string })[];
const langs = JSON.parse(readFileSync(join(FIX, 'langs.json'), 'utf8')) as { detector: string; labels: Record<string, string> };
const detector = tableDetector('fasttext-lid.176 (recorded labels)', langs.detector, new Map(Object.entries(langs.labels)));

describe('official baselines on the metadata fixture', () => {
  for (const c of cases) {
    test(`${c.out}: byte-identical to the numpy reference`, async () => {
      const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
      try {
        const { out, ...spec } = c;
        const result = await runBaseline(files, spec, { detector });
        const expected = new Uint8Array(readFileSync(join(FIX, 'expected', out)));
        const got = subsetBytes(result);
        assert.equal(got.length, expected.length, `${out}: ${(got.length - 128) / 16} uids, expected ${(expected.length - 128) / 16}`);
        assert.deepEqual(got, expected);
        assert.equal(result.rows, 127);
      } finally {
        await close();
      }
    });
  }

  test('the metadata listing keeps names containing ".parquet", as fs.ls + filter does', async () => {
    const { files, close } = await listMetadataFiles(join(FIX, 'metadata'));
    await close();
    assert.deepEqual(files.map((f) => f.name.split('/').pop()).sort(), readdirSync(join(FIX, 'metadata')).filter((n) => n.includes('.parquet')).sort());
    assert.equal(files.length, 2);
  });
});

describe('Python str semantics', () => {
  const rows = JSON.parse(readFileSync(join(FIX, 'expected/pystr.json'), 'utf8')) as [string, number, number][];
  test('len() in code points and len(str.split()) agree with Python on every fixture string', () => {
    for (const [s, len, words] of rows) {
      assert.equal(pyLen(s), len, `len(${JSON.stringify(s)})`);
      assert.equal(pyWordCount(s), words, `len(${JSON.stringify(s)}.split())`);
      assert.equal(pySplit(s).length, words);
    }
    // the cases where JavaScript's own notions differ are really in the list
    assert.ok(rows.some(([s, len]) => s.length !== len));
    assert.ok(rows.some(([s, , words]) => s.split(/\s+/).filter(Boolean).length !== words));
  });
});

describe('threshold rule and option checks', () => {
  test('fraction threshold: the (⌊N·f⌋+1)-th largest, NaN last, as -np.sort(-x)[n]', () => {
    const x = new Float32Array([0.1, NaN, 0.3, 0.3, 0.2, NaN, 0.3, 0.05]);
    const naive = (f: number) => {
      const sorted = [...x].sort((a, b) => (Number.isNaN(a) ? 1 : Number.isNaN(b) ? -1 : b - a));
      return sorted[Math.floor(x.length * f)]!;
    };
    for (const f of [0, 0.1, 0.25, 0.4, 0.5, 0.7, 0.75, 0.8, 0.99]) {
      const want = naive(f);
      const got = thresholdForFraction(x, f);
      assert.ok(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)), `f=${f}: ${got} vs ${want}`);
    }
    assert.throws(() => thresholdForFraction(x, 1), RangeError);
  });

  test('official argument checks', () => {
    assert.throws(() => checkBaselineSpec({ name: 'clip_score', threshold: 0.3 }), /--arch/);
    assert.throws(() => checkBaselineSpec({ name: 'clip_score', arch: 'l14' }), /exactly one/);
    assert.throws(() => checkBaselineSpec({ name: 'clip_score', arch: 'l14', threshold: 0.3, fraction: 0.3 }), /exactly one/);
    assert.throws(() => checkBaselineSpec({ name: 'laion2b', arch: 'b32' }), /takes no/);
    checkBaselineSpec({ name: 'text_based' }); // runs now; its WordNet inputs are checked in filter-text-based.test.ts
    checkBaselineSpec({ name: 'clip_score', arch: 'b32', fraction: 0.3 });
  });
});

describe('the real fastText lid.176 model', () => {
  test('gives the labels recorded in the fixture', { skip: fastTextAvailable() ? false : 'npm package fasttext.wasm.js@1.0.0 is not installed' }, async () => {
    const real = await loadFastTextDetector();
    assert.equal(real.version, langs.detector);
    const texts = Object.keys(langs.labels);
    assert.deepEqual(await real.detect(texts), texts.map((t) => langs.labels[t]));
  });
});
