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

/** Mean and sample standard deviation (n − 1, numpy's `ddof=1`); std is NaN for a single value. */
export function meanStd(values: readonly number[]): { mean: number; std: number; n: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : NaN;
  return { mean, std, n };
}

export interface SeedGroup {
  scale: string;
  filter: string;
  seeds: number[];
  /** Subset sizes the runs had (one value when every seed filtered the same pool). */
  subsetSizes: number[];
  /** Per task (main metric) and for the average: mean and std over the seeds; tasks a run lacks are left out of that task. */
  tasks: Record<string, { mean: number; std: number; n: number }>;
  average: { mean: number; std: number; n: number };
}

/** The runs grouped by (scale, filter), in index order, with mean ± std over their seeds. */
export function seedGroups(index: RunsIndex): SeedGroup[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of index.runs) {
    const key = `${r.scale}\u0000${r.filter}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((runs) => {
    const names = [...new Set(runs.flatMap((r) => Object.keys(r.scores)))];
    const tasks = Object.fromEntries(names.flatMap((name) => {
      const values = runs.map((r) => r.scores[name]).filter((v): v is number => typeof v === 'number');
      return values.length ? [[name, meanStd(values)]] : [];
    }));
    return {
      scale: runs[0]!.scale, filter: runs[0]!.filter, seeds: runs.map((r) => r.seed),
      subsetSizes: [...new Set(runs.map((r) => r.subsetSize))],
      tasks, average: meanStd(runs.map((r) => r.aggregates.Average ?? NaN)),
    };
  });
}

/**
 * The README's kind of table: one row per (scale, filter) with each task's and the average's mean ± std over the
 * seeds (×100), and how far the average is from no_filter's at the same scale in seed-σ (the two groups' pooled
 * std, √((s₁² + s₂²)/2)) — the check that a filter's effect is beyond seed noise.
 */
export function formatSeedSummary(index: RunsIndex, options: { tasks?: readonly EvalTask[] } = {}): string {
  const groups = seedGroups(index);
  const names = options.tasks?.map((t) => t.name) ?? [...new Set(index.runs.flatMap((r) => Object.keys(r.scores)))];
  const ms = (v: { mean: number; std: number } | undefined) =>
    !v || !Number.isFinite(v.mean) ? '—' : Number.isFinite(v.std) ? `${(100 * v.mean).toFixed(1)} ± ${(100 * v.std).toFixed(1)}` : (100 * v.mean).toFixed(1);
  const versus = (g: SeedGroup): string => {
    const base = groups.find((b) => b.scale === g.scale && b.filter === 'no_filter');
    if (!base || base === g) return '';
    const delta = 100 * (g.average.mean - base.average.mean);
    const sigma = 100 * Math.sqrt((g.average.std ** 2 + base.average.std ** 2) / 2);
    const signed = (v: number) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(1)}`;
    return Number.isFinite(sigma) && sigma > 0 ? `${signed(delta)} (${signed(delta / sigma)} σ)` : signed(delta);
  };
  const header = ['scale', 'filter', 'seeds', 'subset', ...names, 'Average', 'vs no_filter'];
  const rows = groups.map((g) => [
    g.scale, g.filter, String(g.seeds.length), g.subsetSizes.join(' / '), ...names.map((n) => ms(g.tasks[n])), ms(g.average), versus(g),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length), 1));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n') + '\n';
}

/** results.md beside the runs: the seed summary, then every run. */
export function formatResultsMarkdown(index: RunsIndex, options: { tasks?: readonly EvalTask[]; highlight?: string } = {}): string {
  return `# dcw run results (main metric ×100)\n\n## Mean ± std over seeds\n\nstd with n − 1; "vs no_filter": the average's difference from no_filter at the same scale, in seed-σ.\n\n${formatSeedSummary(index, options)}\n## Every run (▶ the latest)\n\n${formatRunsTable(index, options)}`;
}
