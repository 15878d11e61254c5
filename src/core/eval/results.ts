/**
 * `eval_results.jsonl` as DataComp's evaluate.py writes and reads it, and the aggregate scores of
 * aggregate_scores.py.
 *
 * Writing: one line per task, appended: `json.dumps({"key": task_key, "dataset": task_name, "metrics": metrics})`
 * + "\n", where metrics ends with "main_metric" (pyjson.ts gives the exact bytes). If an existing file does not
 * end with a line break, one is added first (evaluate.py would glue the new line onto the old one).
 * Reading: each line is `json.loads`ed; a task is already done when a line whose "key" is in the task list
 * carries its name as "dataset" (later lines replace earlier ones, as evaluate.py's dict does).
 */
import { FormatError } from '../formats/errors.ts';
import { npMean } from './metrics.ts';
import { pyJsonDumps, pyJsonLoads, type PyJson } from './pyjson.ts';
import type { EvalTask } from './tasklist.ts';

export type MetricValue = number | null;

export interface EvalResult {
  key: string;
  dataset: string;
  /** In file order; "main_metric" last when written by evaluate.py or here. */
  metrics: Map<string, PyJson>;
}

/** The results line for a task, with its trailing newline. */
export function resultLine(result: EvalResult): string {
  return `${pyJsonDumps(new Map<string, PyJson>([['key', result.key], ['dataset', result.dataset], ['metrics', result.metrics]]))}\n`;
}

/** The file after appending `result` to `existing` (the old bytes unchanged). */
export function appendResult(existing: string, result: EvalResult): string {
  const sep = existing && !existing.endsWith('\n') ? '\n' : '';
  return existing + sep + resultLine(result);
}

/** Reads every line of a results file (`file` names it in errors). */
export function parseResults(text: string, file: string): EvalResult[] {
  const out: EvalResult[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const [i, line] of lines.entries()) {
    let value: unknown;
    try {
      value = pyJsonLoads(line);
    } catch (err) {
      throw new FormatError(file, `line ${i + 1}: not JSON (${(err as Error).message})`);
    }
    const v = value as { key?: unknown; dataset?: unknown; metrics?: unknown };
    if (!v || typeof v !== 'object' || Array.isArray(v) || typeof v.key !== 'string' || typeof v.dataset !== 'string' || !v.metrics || typeof v.metrics !== 'object' || Array.isArray(v.metrics)) {
      throw new FormatError(file, `line ${i + 1}: expected {"key": …, "dataset": …, "metrics": {…}}`);
    }
    out.push({ key: v.key, dataset: v.dataset, metrics: new Map(Object.entries(v.metrics as Record<string, PyJson>)) });
  }
  return out;
}

/** evaluate.py's cache: results of the listed tasks, by dataset name (a later line replaces an earlier one). */
export function completedResults(results: readonly EvalResult[], tasks: readonly EvalTask[]): Map<string, EvalResult> {
  const keys = new Set(tasks.map((t) => t.key));
  const done = new Map<string, EvalResult>();
  for (const r of results) if (keys.has(r.key)) done.set(r.dataset, r);
  return done;
}

/** Tasks whose name has no result yet, in task-list order. */
export function pendingTasks(tasks: readonly EvalTask[], done: ReadonlyMap<string, EvalResult>): EvalTask[] {
  return tasks.filter((t) => !done.has(t.name));
}

/** The main metric of a result as a number, or null (absent, null or NaN: pandas' dropna drops those). */
export function mainMetric(result: EvalResult): number | null {
  const v = result.metrics.get('main_metric');
  return typeof v === 'number' && !Number.isNaN(v) ? v : null;
}

/** aggregate_scores.py's groups of the official 38-task suite (by dataset name). */
export const OFFICIAL_GROUPS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  'ImageNet dist. shifts': ['ImageNet Sketch', 'ImageNet v2', 'ImageNet-A', 'ImageNet-O', 'ImageNet-R', 'ObjectNet'],
  VTAB: ['Caltech-101', 'CIFAR-100', 'CLEVR Counts', 'CLEVR Distance', 'Describable Textures', 'EuroSAT', 'KITTI Vehicle Distance', 'Oxford Flowers-102', 'Oxford-IIIT Pet', 'PatchCamelyon', 'RESISC45', 'SVHN', 'SUN397'],
  Retrieval: ['Flickr', 'MSCOCO', 'WinoGAViL'],
});

/** Tasks of the official suite with a main metric (aggregate_scores.py asserts this many). */
export const OFFICIAL_SCORED_TASKS = 38;

/**
 * aggregate_scores.py: ImageNet, ImageNet dist. shifts, VTAB, Retrieval, Average (plain mean of the 38 main
 * metrics, in file order). The group means sum in the order listed above; Python iterates a set there, whose
 * order varies between runs, so its last digit can too.
 */
export function aggregateOfficial(results: readonly EvalResult[], file = 'eval_results.jsonl'): Map<string, number> {
  const scored = new Map<string, number>();
  let rows = 0;
  for (const r of results) {
    const m = mainMetric(r);
    if (m === null) continue;
    rows++;
    scored.set(r.dataset, m);
  }
  if (rows !== OFFICIAL_SCORED_TASKS) throw new FormatError(file, `has ${rows} scored tasks; the official suite has ${OFFICIAL_SCORED_TASKS}`);
  const get = (name: string): number => {
    const v = scored.get(name);
    if (v === undefined) throw new FormatError(file, `no result for ${name}`);
    return v;
  };
  const out = new Map<string, number>([['ImageNet', get('ImageNet 1k')]]);
  for (const [group, names] of Object.entries(OFFICIAL_GROUPS)) out.set(group, npMean(names.map(get)));
  out.set('Average', npMean([...scored.values()]));
  return out;
}

/**
 * The embedded suite's aggregate, by analogy: Average = plain mean of the main metrics of every task of its
 * task list that has one (all must be present), plus the means of the retrieval tasks (tag "retrieval")
 * and of the others (zero-shot classification). Not comparable with the leaderboard.
 */
export function aggregateSuite(results: readonly EvalResult[], tasks: readonly EvalTask[], file = 'eval_results.jsonl'): Map<string, number> {
  const done = completedResults(results, tasks);
  const scores: { task: EvalTask; score: number }[] = [];
  for (const task of tasks) {
    const r = done.get(task.name);
    if (!r) throw new FormatError(file, `no result for ${task.name} (${task.key})`);
    const m = mainMetric(r);
    if (m !== null) scores.push({ task, score: m });
  }
  if (!scores.length) throw new FormatError(file, 'no task has a main metric');
  const out = new Map<string, number>();
  const retrieval = scores.filter((s) => s.task.tags.includes('retrieval'));
  const classification = scores.filter((s) => !s.task.tags.includes('retrieval'));
  if (classification.length) out.set('Zero-shot classification', npMean(classification.map((s) => s.score)));
  if (retrieval.length) out.set('Retrieval', npMean(retrieval.map((s) => s.score)));
  out.set('Average', npMean(scores.map((s) => s.score)));
  return out;
}
