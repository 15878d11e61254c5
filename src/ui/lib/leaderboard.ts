/**
 * A run's scores for the leaderboard: each task's main metric from its eval_results.jsonl (the core reader;
 * a later line for the same dataset replaces an earlier one, as evaluate.py reads it) and the average as the
 * suite defines it: aggregateSuite over the served task list when the file covers it, aggregate_scores.py's
 * Average when it is the official 38-task suite, none when it is incomplete.
 */
import { aggregateOfficial, aggregateSuite, mainMetric, OFFICIAL_SCORED_TASKS, parseResults } from '../../core/eval/results.ts';
import type { EvalTask } from '../../core/eval/tasklist.ts';

export interface RunScores {
  /** Dataset name → main metric (null: none). In file order. */
  perTask: Map<string, number | null>;
  /** Dataset name → the main metric's name ("acc1", "mean_recall@1"…), from the task list. */
  metricNames: Map<string, string>;
  average: number | null;
  /** How the average was made, or why there is none. */
  averageOf: string;
}

export function scoreRun(text: string, file: string, tasks: readonly EvalTask[] | null): RunScores {
  const results = parseResults(text, file);
  const perTask = new Map<string, number | null>();
  const metricNames = new Map<string, string>();
  for (const r of results) perTask.set(r.dataset, mainMetric(r));
  // the file does not name its main metric; the task list does
  for (const t of tasks ?? []) metricNames.set(t.name, t.mainMetric);
  if (tasks?.length && tasks.every((t) => perTask.has(t.name))) {
    return { perTask, metricNames, average: aggregateSuite(results, tasks, file).get('Average') ?? null, averageOf: `mean of the suite's ${tasks.length} tasks` };
  }
  if ([...perTask.values()].filter((v) => v !== null).length === OFFICIAL_SCORED_TASKS) {
    try {
      return { perTask, metricNames, average: aggregateOfficial(results, file).get('Average') ?? null, averageOf: 'the official 38-task average' };
    } catch {
      // not the official task names: no average
    }
  }
  const missing = tasks?.filter((t) => !perTask.has(t.name)).length ?? 0;
  return { perTask, metricNames, average: null, averageOf: missing ? `${missing} task(s) of the suite not evaluated` : 'not the served suite' };
}
