// The evaluation sets of a real embedded-suite build (clip_benchmark layout) read through the file store, and the
// whole evaluation loop on them with stand-in encoders: every task gives its metrics and main metric, the results
// file is written line by line in evaluate.py's format, a second run skips what is done, and the suite aggregates.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openEvalSet, pySplitlines, pyStrip, readEvalSamples, taskFolders } from '../../src/core/eval/dataset.ts';
import { aggregateSuite, appendResult, completedResults, parseResults, pendingTasks, resultLine } from '../../src/core/eval/results.ts';
import { parseTasklist } from '../../src/core/eval/tasklist.ts';
import { evaluateTask, type Encoders } from '../../src/core/eval/zeroshot.ts';
import { FormatError } from '../../src/core/formats/errors.ts';
import { Rng } from '../../src/core/util/random.ts';
import { FileEvalStore } from '../../server/eval/file-store.ts';
import { SharpImageCodec } from '../../server/io/image-codec.ts';

const ROOT = join(import.meta.dirname, '../..');
let dir: string;
let store: FileEvalStore;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dcw-evalsuite-'));
  const build = spawnSync(process.execPath, [join(ROOT, 'bin/dcw.js'), 'pool', 'build', '--out', join(dir, 'pool'), '--eval-out', join(dir, 'eval'), '--fraction', '0.004', '--workers', '1'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(build.status, 0, build.stderr);
  store = new FileEvalStore(join(dir, 'eval'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Stand-in model: image embedding from the mean colour of the input; text embedding from the text's characters. */
const encoders: Encoders = {
  imageSize: 16,
  async encodeImages(images, count) {
    const plane = 16 * 16;
    const out = new Float32Array(count * 4);
    for (let i = 0; i < count; i++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let p = 0; p < plane; p++) s += images[i * 3 * plane + c * plane + p]!;
        out[i * 4 + c] = s / plane;
      }
      out[i * 4 + 3] = 1;
    }
    return out;
  },
  async encodeTexts(texts) {
    return Float32Array.from(texts.flatMap((t) => {
      const rng = new Rng([...t].reduce((h, ch) => (h * 31 + ch.codePointAt(0)!) >>> 0, 7));
      return [rng.normal(), rng.normal(), rng.normal(), rng.normal()];
    }));
  },
};

describe('embedded evaluation suite', () => {
  test('every task of its tasklist.yml opens; classification sets have class names, templates and in-range labels', async () => {
    const tasks = parseTasklist(readFileSync(join(dir, 'eval/tasklist.yml'), 'utf8'), 'tasklist.yml');
    assert.deepEqual(tasks.map((t) => t.key), ['emoji_group', 'emoji_subgroup', 'flag_country', 'icon_category', 'emoji_retrieval']);
    for (const task of tasks) {
      const set = await openEvalSet(store, task.key);
      assert.equal(set.folder, task.key);
      let n = 0;
      for await (const s of readEvalSamples(store, set)) {
        n++;
        assert.equal(s.imageExt, 'png');
        if (set.type === 'retrieval') assert.ok(s.captions!.length >= 1);
        else assert.ok(s.label! >= 0 && s.label! < set.classnames!.length);
      }
      assert.equal(n, task.size, task.key);
      if (set.type === 'classification') {
        assert.equal(set.classnames!.length, task.numClasses);
        assert.ok(set.templates!.every((t) => t.includes('{c}')));
      } else {
        assert.equal(task.mainMetric, 'mean_recall@1');
      }
    }
  });

  test('DataComp folder names and Python line semantics', async () => {
    assert.deepEqual(taskFolders('vtab/cifar100'), ['wds_vtab-cifar100_test', 'vtab/cifar100']);
    assert.deepEqual(taskFolders('fairness/geode'), ['wds_geode_test', 'fairness/geode']);
    assert.deepEqual(pySplitlines('a\r\nb\rc\u2028d\n'), ['a', 'b', 'c', 'd']);
    assert.deepEqual(pySplitlines(''), []);
    assert.equal(pyStrip('\u3000 x y\t\x1f'), 'x y');
    await assert.rejects(openEvalSet(store, 'vtab/cifar100'), (e: unknown) => e instanceof FormatError && /no evaluation data for task vtab\/cifar100/.test((e as Error).message));
  });

  test('evaluates every task, writes evaluate.py lines, skips done tasks, aggregates the suite', async () => {
    const tasks = parseTasklist(readFileSync(join(dir, 'eval/tasklist.yml'), 'utf8'), 'tasklist.yml');
    const codec = new SharpImageCodec();
    let file = '';
    for (const task of tasks.slice(0, 3)) {
      const metrics = await evaluateTask(task, store, encoders, { codec, batchSize: 7 });
      file = appendResult(file, { key: task.key, dataset: task.name, metrics });
    }
    // a second run finds three done and evaluates the other two
    const done = completedResults(parseResults(file, 'eval_results.jsonl'), tasks);
    const pending = pendingTasks(tasks, done);
    assert.deepEqual(pending.map((t) => t.key), ['icon_category', 'emoji_retrieval']);
    for (const task of pending) {
      const metrics = await evaluateTask(task, store, encoders, { codec, batchSize: 64 });
      file = appendResult(file, { key: task.key, dataset: task.name, metrics });
    }
    const results = parseResults(file, 'eval_results.jsonl');
    assert.equal(results.length, 5);
    const group = results[0]!;
    assert.deepEqual([...group.metrics.keys()], ['acc1', 'acc5', 'mean_per_class_recall', 'main_metric']);
    assert.equal(group.metrics.get('main_metric'), group.metrics.get('acc1'));
    const subgroup = results[1]!;
    assert.equal(subgroup.metrics.get('main_metric'), subgroup.metrics.get('mean_per_class_recall'));
    const retrieval = results[4]!;
    assert.deepEqual([...retrieval.metrics.keys()], [
      'image_retrieval_recall@1', 'text_retrieval_recall@1', 'image_retrieval_recall@5', 'text_retrieval_recall@5',
      'image_retrieval_recall@10', 'text_retrieval_recall@10', 'mean_recall@1', 'main_metric',
    ]);
    // with 10 images, recall@10 is 1 both ways
    assert.equal(retrieval.metrics.get('text_retrieval_recall@10'), 1);
    // a line as Python writes it: ensure_ascii escapes the arrow in the task name
    assert.match(file.split('\n')[4]!, /^\{"key": "emoji_retrieval", "dataset": "Emoji \\u2194 name retrieval \(Noto\)", "metrics": \{"image_retrieval_recall@1": /);
    assert.equal(results.map(resultLine).join(''), file);
    const scores = aggregateSuite(results, tasks);
    const mains = results.map((r) => r.metrics.get('main_metric') as number);
    assert.ok(Math.abs(scores.get('Average')! - mains.reduce((a, b) => a + b, 0) / 5) < 1e-15);
    assert.equal(scores.get('Retrieval'), mains[4]);
    assert.throws(() => aggregateSuite(results.slice(0, 4), tasks), /no result for Emoji ↔ name retrieval/);
  });
});
