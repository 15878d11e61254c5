// Evaluation arithmetic against an independent reference (test/fixtures/eval/reference.py: Python's repr and
// json.dumps, numpy's mean, PyYAML, and the sklearn / clip_benchmark / aggregate_scores.py formulas written out
// with numpy), and the zero-shot mechanics on synthetic embeddings whose answer is known.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  balancedAccuracy, f1Macro, groupwiseAccuracy, npMean, recallMacro, retrievalMetrics, topkAccuracy, topkRows,
} from '../../src/core/eval/metrics.ts';
import { pyFloatRepr, pyJsonDumps, pyJsonLoads, type PyJson } from '../../src/core/eval/pyjson.ts';
import { aggregateOfficial, appendResult, completedResults, parseResults, pendingTasks, resultLine } from '../../src/core/eval/results.ts';
import { parseTasklist, parseYamlSubset, taskFamily } from '../../src/core/eval/tasklist.ts';
import { classificationMetrics, formatTemplate, normalizeRows, zeroShotClassifier, zeroShotLogits } from '../../src/core/eval/zeroshot.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { Rng } from '../../src/core/util/random.ts';

const FIX = join(import.meta.dirname, '../fixtures/eval');
const ref = JSON.parse(readFileSync(join(FIX, 'reference.json'), 'utf8'));

/** A double from Python's float.hex(). */
function fromHex(hex: string): number {
  const m = /^(-)?0x([01])\.([0-9a-f]*)p([+-]\d+)$/.exec(hex);
  if (!m) throw new Error(`bad hex ${hex}`);
  const mant = Number.parseInt(m[2]! + (m[3] || '0'), 16) / 16 ** (m[3] || '0').length;
  // 2 ** e in two steps so that subnormals (e = -1074) do not underflow early
  const e = Number(m[4]);
  const v = mant * 2 ** Math.max(e, -1000) * 2 ** Math.min(0, e + 1000 > 0 ? 0 : e + 1000);
  return m[1] ? -v : v;
}

describe('Python float repr and json.dumps', () => {
  test('pyFloatRepr equals repr() for specials, random magnitudes and float32 values', () => {
    assert.ok(ref.floats.length > 400);
    for (const { hex, repr } of ref.floats) assert.equal(pyFloatRepr(fromHex(hex)), repr, hex);
  });

  test('pyJsonDumps writes json.dumps bytes (separators, ensure_ascii, NaN/Infinity, ints vs floats)', () => {
    const metrics = new Map<string, PyJson>([
      ['acc1', 0.5], ['acc5', null], ['tiny', 1e-5], ['count', 3n], ['flag', true],
      ['s', 'tab\t"q" \\ é 😀 \x7f \x01 /'], ['nan', NaN], ['inf', Infinity], ['ninf', -Infinity],
      ['list', [1.0, 2n, [], {}]], ['main_metric', 0.1 + 0.2],
    ]);
    const line = pyJsonDumps(new Map<string, PyJson>([['key', 'emoji_retrieval'], ['dataset', 'Emoji ↔ name retrieval (Noto)'], ['metrics', metrics]]));
    assert.equal(line, ref.json.line);
    // and it reads back (NaN and Infinity are Python's tokens, not standard JSON)
    const back = pyJsonLoads(line) as { metrics: Record<string, unknown> };
    assert.ok(Number.isNaN(back.metrics.nan));
    assert.equal(back.metrics.ninf, -Infinity);
    assert.equal(back.metrics.s, 'tab\t"q" \\ é 😀 \x7f \x01 /');
    assert.throws(() => pyJsonLoads('{"a": 1} x'), SyntaxError);
    assert.throws(() => pyJsonLoads('{"a": nan}'), SyntaxError);
  });
});

describe('metrics', () => {
  test('npMean is numpy.mean bit for bit (pairwise summation), lengths 1–300', () => {
    for (const { values, mean } of ref.npmean) assert.equal(pyFloatRepr(npMean(values)), mean, `n=${values.length}`);
    // plain left-to-right summation differs on some of them: the test can tell the two apart
    const naive = ref.npmean.filter(({ values, mean }: { values: number[]; mean: string }) => pyFloatRepr(values.reduce((a, b) => a + b, 0) / values.length) !== mean);
    assert.ok(naive.length > 0);
  });

  test('acc1/acc5, balanced accuracy, macro F1 and recall equal the numpy reference', () => {
    for (const c of ref.classification) {
      const n = c.targets.length;
      const logits = c.logits.flat() as number[];
      const k = Math.min(5, c.classes);
      const top = topkRows(logits, n, c.classes, k);
      const pred = Array.from({ length: n }, (_, i) => top[i * k]!);
      assert.deepEqual(pred, c.pred);
      const m = classificationMetrics(top, k, c.targets, c.classes);
      assert.equal(pyFloatRepr(m.get('acc1')!), c.acc1);
      assert.equal(m.get('acc5') === null ? null : pyFloatRepr(m.get('acc5')!), c.acc5);
      assert.equal(pyFloatRepr(m.get('mean_per_class_recall')!), c.mean_per_class_recall);
      assert.equal(pyFloatRepr(balancedAccuracy(c.targets, pred)), c.mean_per_class_recall);
      assert.equal(pyFloatRepr(f1Macro(c.targets, pred)), c.f1_macro);
      assert.equal(pyFloatRepr(recallMacro(c.targets, pred)), c.recall_macro);
    }
    // the 4-class case has no acc5 (wds_eval.py: None below 5 classes)
    assert.equal(ref.classification[1].acc5, null);
  });

  test('topkRows breaks ties to the lower index; topkAccuracy refuses k beyond what was kept', () => {
    const top = topkRows([1, 3, 3, 2, 3], 1, 5, 3);
    assert.deepEqual([...top], [1, 2, 4]);
    assert.throws(() => topkAccuracy(top, 3, [1], [5]), RangeError);
  });

  test('group accuracy as WILDS computes it (float32, empty groups skipped for the worst group)', () => {
    const g = groupwiseAccuracy('acc', 'region', ref.groups.correct, ref.groups.groups);
    const expected = ref.groups.metrics as Record<string, string>;
    assert.deepEqual([...g.keys()], Object.keys(expected));
    for (const [key, value] of g) assert.equal(pyFloatRepr(value), expected[key], key);
  });

  test('retrieval recall@1/5/10 both ways and mean_recall@1 equal the reference (captionless images count as misses)', () => {
    const r = ref.retrieval;
    const m = retrievalMetrics({ images: Float32Array.from(r.images.flat()), texts: Float32Array.from(r.texts.flat()), dim: r.dim, textImage: r.text_image });
    m.set('mean_recall@1', 0.5 * (m.get('text_retrieval_recall@1')! + m.get('image_retrieval_recall@1')!));
    assert.deepEqual([...m.keys()], Object.keys(r.metrics));
    for (const [key, value] of m) assert.equal(pyFloatRepr(value), r.metrics[key], key);
  });
});

describe('zero-shot mechanics on synthetic embeddings', () => {
  // Each class c has a direction e_c; template t adds a template-specific offset; images of class c point near e_c.
  const dim = 6;
  const classes = ['cat', 'dog', 'red car', 'tree', 'boat', 'sun'];
  const templates = ['a photo of a {c}.', '{c}', 'a {{literal}} {c}!'];
  const textEmbedding = (text: string): number[] => {
    const c = classes.findIndex((name) => text.includes(name));
    const t = templates.findIndex((tpl) => formatTemplate(tpl, classes[c]!) === text);
    assert.ok(c >= 0 && t >= 0, text);
    const v = new Array(dim).fill(0);
    v[c] = 3 + t; // different norms per template: only normalisation makes them comparable
    v[(c + 1) % dim] = 0.4 * (t - 1); // template offset that averages out
    return v;
  };
  const enc = { encodeTexts: async (texts: readonly string[]) => Float32Array.from(texts.flatMap(textEmbedding)) };

  test('formatTemplate is str.format(c=…) with {{ }} escapes', () => {
    assert.equal(formatTemplate('a {{literal}} {c}!', 'x'), 'a {literal} x!');
    assert.throws(() => formatTemplate('a {d}', 'x'), FormatError);
  });

  test('classifier = renormalised mean of normalised template embeddings; logits pick the right class', async () => {
    const { weights, dim: d } = await zeroShotClassifier(enc, classes, templates);
    assert.equal(d, dim);
    for (let c = 0; c < classes.length; c++) {
      const row = weights.subarray(c * dim, (c + 1) * dim);
      assert.ok(Math.abs(Math.hypot(...row) - 1) < 1e-6);
      // the template offsets cancel (0.4·(−1, 0, +1) over normalised vectors of different norms need not cancel exactly,
      // but the class direction dominates)
      assert.equal(row.indexOf(Math.max(...row)), c);
    }
    const rng = new Rng(5);
    const n = 60;
    const targets = Array.from({ length: n }, (_, i) => i % classes.length);
    const images = new Float32Array(n * dim);
    targets.forEach((t, i) => {
      for (let j = 0; j < dim; j++) images[i * dim + j] = (j === t ? 2 : 0) + 0.3 * rng.normal();
    });
    // one deliberately wrong image: points at class 3 but is labelled 0
    images.fill(0, 0, dim);
    images[3] = 1;
    const logits = zeroShotLogits(normalizeRows(images, dim), weights, dim);
    // logits are 100 × cosine similarity
    assert.ok(Math.abs(logits[3]! - 100 * weights[3 * dim + 3]!) < 1e-4);
    const top = topkRows(logits, n, classes.length, 5);
    const m = classificationMetrics(top, 5, targets, classes.length);
    assert.equal(m.get('acc1'), (n - 1) / n);
    assert.equal(m.get('acc5'), 1);
  });
});

describe('tasklist.yml', () => {
  const text = readFileSync(join(FIX, 'tasklist-datacomp.yml'), 'utf8');

  test('parses DataComp\'s tasklist.yml exactly as PyYAML safe_load does', () => {
    const doc = parseYamlSubset(text, 'tasklist.yml');
    const toPlain = (v: unknown): unknown => (v instanceof Map ? Object.fromEntries([...v].map(([k, x]) => [k, toPlain(x)])) : Array.isArray(v) ? v.map(toPlain) : v);
    assert.deepEqual([...(doc as Map<string, unknown>)].map(([k, v]) => [k, toPlain(v)]), ref.tasklist);
  });

  test('tasks: 40, names, main metrics (default acc1), families', () => {
    const tasks = parseTasklist(text, 'tasklist.yml');
    assert.equal(tasks.length, 40);
    const byKey = new Map(tasks.map((t) => [t.key, t]));
    assert.equal(byKey.get('vtab/caltech101')!.mainMetric, 'mean_per_class_recall');
    assert.equal(byKey.get('imagenet1k')!.mainMetric, 'acc1');
    assert.equal(byKey.get('imagenet1k')!.tags.length, 0);
    assert.equal(byKey.get('retrieval/flickr_1k_test_image_text_retrieval')!.name, 'Flickr');
    assert.equal(byKey.get('misc/winogavil')!.randomScore, 0.205);
    assert.equal(taskFamily('wilds/fmow'), 'wilds');
    assert.equal(taskFamily('vtab/svhn'), 'webdataset');
  });

  test('what the subset parser does not read is a FormatError naming the line', () => {
    assert.throws(() => parseYamlSubset('a:\n  b: &x 1\n', 'x.yml'), /x\.yml: line 2: unsupported/);
    assert.throws(() => parseYamlSubset('a: 1\n   b: 2\n', 'x.yml'), /line 2/);
    assert.throws(() => parseYamlSubset('a: 1\na: 2\n', 'x.yml'), /duplicate key/);
  });
});

describe('eval_results.jsonl and aggregation', () => {
  const tasks = parseTasklist(readFileSync(join(FIX, 'tasklist-datacomp.yml'), 'utf8'), 'tasklist.yml');

  test('reads a results file written by Python and aggregates it as aggregate_scores.py', () => {
    const results = parseResults(ref.aggregate.file, 'eval_results.jsonl');
    assert.equal(results.length, 40);
    const scores = aggregateOfficial(results);
    assert.deepEqual([...scores.keys()], Object.keys(ref.aggregate.scores));
    for (const [k, v] of scores) assert.equal(pyFloatRepr(v), ref.aggregate.scores[k], k);
    // written back line by line, the bytes are Python's
    assert.equal(results.map((r) => resultLine({ ...r, metrics: r.metrics })).join(''), ref.aggregate.file);
    // 37 scored tasks is an error, as the assert in aggregate_scores.py
    assert.throws(() => aggregateOfficial(results.slice(1)), /37 scored tasks/);
  });

  test('cached tasks are skipped, others pending; appending keeps the old bytes', () => {
    const all = parseResults(ref.aggregate.file, 'eval_results.jsonl');
    const partial = all.slice(0, 5).map(resultLine).join('') + resultLine({ key: 'not/in/tasklist', dataset: 'X', metrics: new Map([['main_metric', 1]]) });
    const done = completedResults(parseResults(partial, 'r.jsonl'), tasks);
    assert.equal(done.size, 5);
    const pending = pendingTasks(tasks, done);
    assert.equal(pending.length, 35);
    assert.equal(pending[0]!.key, tasks[5]!.key);
    const next = appendResult(partial.slice(0, -1), all[5]!);
    assert.ok(next.startsWith(partial.slice(0, -1)));
    assert.equal(next, partial + resultLine(all[5]!));
    assert.throws(() => parseResults('{"key": "a"}\n', 'r.jsonl'), /r\.jsonl: line 1/);
    assert.throws(() => parseResults('\n', 'r.jsonl'), /line 1: not JSON/);
  });
});
