/**
 * The runs index of `dcw run`: one record per (scale, filter, seed) under an output directory, so each new run
 * is shown beside the earlier ones in one results table. A rerun of the same triple replaces its record.
 */
import { FormatError } from '../formats/errors.ts';
import { mainMetric, type EvalResult } from '../eval/results.ts';
import type { EvalTask } from '../eval/tasklist.ts';

export const RUNS_FORMAT = 'dcw-runs-v1';

export interface RunRecord {
  /** `{scale}-{filter}-seed{seed}`: also the run's folder under the output directory. */
  id: string;
  scale: string;
  /** Baseline name or recipe file name. */
  filter: string;
  seed: number;
  /** uids in the subset (.npy entries, repeats counted). */
  subsetSize: number;
  /** Samples written to the training shards. */
  trainSamples: number;
  /** Samples the training saw (steps × batch). */
  samplesSeen: number;
  /** Main metric per task name (null: the task has none). */
  scores: Record<string, number | null>;
  /** Aggregates (aggregateSuite): Average, Zero-shot classification, Retrieval. */
  aggregates: Record<string, number>;
  /** ISO time the run finished. */
  finished: string;
  wallSeconds: number;
}

export interface RunsIndex {
  format: typeof RUNS_FORMAT;
  runs: RunRecord[];
}

export function runId(scale: string, filter: string, seed: number): string {
  const slug = filter.replace(/\.json$/i, '').replace(/[^A-Za-z0-9_.-]+/g, '_');
  return `${scale}-${slug}-seed${seed}`;
}

export function parseRunsIndex(text: string | undefined, file: string): RunsIndex {
  if (text === undefined) return { format: RUNS_FORMAT, runs: [] };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new FormatError(file, 'not valid JSON');
  }
  const idx = v as Partial<RunsIndex>;
  if (!idx || idx.format !== RUNS_FORMAT || !Array.isArray(idx.runs)) throw new FormatError(file, `not a runs index (format "${RUNS_FORMAT}" with a "runs" list)`);
  for (const [i, r] of idx.runs.entries()) {
    if (!r || typeof r.id !== 'string' || typeof r.scale !== 'string' || typeof r.filter !== 'string' || !r.scores || !r.aggregates) {
      throw new FormatError(file, `run ${i}: expected {id, scale, filter, seed, scores, aggregates, …}`);
    }
  }
  return idx as RunsIndex;
}

/** The index with `record` added (replacing a record with the same id), ordered by scale, then finish time. */
export function withRun(index: RunsIndex, record: RunRecord): RunsIndex {
  const runs = index.runs.filter((r) => r.id !== record.id);
  runs.push(record);
  runs.sort((a, b) => (a.scale < b.scale ? -1 : a.scale > b.scale ? 1 : a.finished < b.finished ? -1 : a.finished > b.finished ? 1 : 0));
  return { format: RUNS_FORMAT, runs };
}

/** Main metrics by task name. */
export function scoresOf(results: readonly EvalResult[]): Record<string, number | null> {
  return Object.fromEntries(results.map((r) => [r.dataset, mainMetric(r)]));
}

const pct = (v: number | null | undefined) => (v === null || v === undefined ? '—' : (100 * v).toFixed(1));

/**
 * A Markdown table: one row per run (the highlighted one marked ▶), columns subset size, samples seen, each task's
 * main metric (×100), and the average. Tasks: the given list's names, else every name any run has.
 */
export function formatRunsTable(index: RunsIndex, options: { tasks?: readonly EvalTask[]; highlight?: string } = {}): string {
  const names = options.tasks?.map((t) => t.name) ?? [...new Set(index.runs.flatMap((r) => Object.keys(r.scores)))];
  const header = ['', 'scale', 'filter', 'seed', 'subset', 'seen', ...names, 'Average'];
  const rows = index.runs.map((r) => [
    r.id === options.highlight ? '▶' : '', r.scale, r.filter, String(r.seed), String(r.subsetSize), String(r.samplesSeen),
    ...names.map((n) => pct(r.scores[n])), pct(r.aggregates.Average),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length), 1));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n';
}

/** The per-task table of one evaluation (evaluate's printout): task, main metric name, value (×100). */
export function formatResultsTable(results: readonly EvalResult[], tasks: readonly EvalTask[], aggregates: ReadonlyMap<string, number>): string {
  const byName = new Map(results.map((r) => [r.dataset, r]));
  const rows = tasks.map((t) => [t.name, t.mainMetric, pct(byName.get(t.name) ? mainMetric(byName.get(t.name)!) : null)]);
  for (const [k, v] of aggregates) rows.push([k, 'mean', pct(v)]);
  const header = ['task', 'main metric', '×100'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n';
}
