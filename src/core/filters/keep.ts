/**
 * The row-local part of a filter, as a task over a list of metadata files: which rows to keep (their uid
 * words, unsorted, in file order) or a score column. Such a task gives the same result whether it runs
 * over all files at once or over consecutive file ranges whose results are joined in order, so a runner
 * may split it over worker threads (server/filters/parallel.ts); the caller sorts the joined uids, which
 * makes the order of the ranges irrelevant to the final bytes anyway. The first error in file order wins,
 * as it would in one pass.
 */
import type { LanguageDetector } from '../text/langid.ts';
import { checkedUidColumn, isFloat32Column, numberColumn, pushUids, UidWordList } from './columns.ts';
import { compileExpression } from './expr.ts';
import { metadataSchema, scanMetadata, type MetadataFile } from './scan.ts';
import { Float32List } from './threshold.ts';

export type KeepTask =
  /** Every row (no_filter). */
  | { kind: 'all' }
  /** Rows whose `column` is ≥ threshold, compared in float32 for a float32 column, as numpy does (clip_score). */
  | { kind: 'atLeast'; column: string; threshold: number }
  /** Rows where the expression holds (a recipe's `where` subset). */
  | { kind: 'where'; where: string }
  /** No rows: the score column as float32, for the fraction rule over the whole pool. */
  | { kind: 'scores'; column: string };

export interface KeepResult {
  /** Kept uid words, unsorted, in file order. */
  words: Uint32Array;
  /** Rows read. */
  rows: number;
  /** For 'scores'. */
  scores?: Float32Array;
}

export interface KeepOptions {
  detector?: LanguageDetector;
  /** Rows read so far (of this run), after each row group. */
  onProgress?: (rows: number, file: string) => void;
  /**
   * The file whose schema a `where` is compiled against (default: the first file): the pool's first
   * file, also when a runner gives this call only a later range, so that types (float32 comparisons)
   * and errors are those of one pass over the pool.
   */
  schemaFrom?: MetadataFile;
}

/** Runs a task over a set of files; a runner may split it over ranges of the files. */
export type KeepRunner = (task: KeepTask, options?: KeepOptions) => Promise<KeepResult>;

/** Runs a task over the files, in order, in this thread. */
export async function runKeepTask(files: readonly MetadataFile[], task: KeepTask, options: KeepOptions = {}): Promise<KeepResult> {
  const kept = new UidWordList();
  let rows = 0;
  const progress = (n: number, file: string) => {
    rows += n;
    options.onProgress?.(rows, file);
  };
  switch (task.kind) {
    case 'all':
      for await (const chunk of scanMetadata(files, ['uid'], { uidWords: true })) {
        const uids = checkedUidColumn(chunk.column('uid'), chunk.file, chunk.firstRow);
        pushUids(kept, uids);
        progress(uids.length, chunk.file);
      }
      break;
    case 'atLeast':
      for await (const chunk of scanMetadata(files, ['uid', task.column], { uidWords: task.column !== 'uid' })) {
        const scoreVector = chunk.column(task.column);
        const scores = numberColumn(scoreVector, chunk.file, task.column);
        // numpy compares a float32 column with a Python float in float32
        const cut = isFloat32Column(scoreVector) ? Math.fround(task.threshold) : task.threshold;
        const mask = new Uint8Array(scores.length);
        for (let i = 0; i < scores.length; i++) mask[i] = scores[i]! >= cut ? 1 : 0;
        pushUids(kept, checkedUidColumn(chunk.column('uid'), chunk.file, chunk.firstRow), mask);
        progress(scores.length, chunk.file);
      }
      break;
    case 'scores': {
      const scores = new Float32List();
      for await (const chunk of scanMetadata(files, [task.column])) {
        const values = numberColumn(chunk.column(task.column), chunk.file, task.column);
        scores.append(values); // float32 columns are exact in float32; float64 ones are rounded (documented)
        progress(values.length, chunk.file);
      }
      return { words: new Uint32Array(0), rows, scores: scores.finish() };
    }
    case 'where': {
      const schema = await metadataSchema(options.schemaFrom ? [options.schemaFrom] : files);
      const where = compileExpression(task.where, schema?.schema.fields ?? [], 'bool');
      const columns = [...new Set(['uid', ...where.columns])];
      // the uid column comes parsed unless the expression reads it
      for await (const chunk of scanMetadata(files, columns, { uidWords: !where.columns.includes('uid') })) {
        const uids = checkedUidColumn(chunk.column('uid'), chunk.file, chunk.firstRow);
        const mask = (await where.evaluate(chunk, options.detector)) as Uint8Array;
        pushUids(kept, uids, mask);
        progress(chunk.rows, chunk.file);
      }
      break;
    }
  }
  return { words: kept.finish(), rows };
}

/** Joins the results of consecutive file ranges (in range order). */
export function joinKeepResults(parts: readonly KeepResult[]): KeepResult {
  const words = new Uint32Array(parts.reduce((n, p) => n + p.words.length, 0));
  let at = 0;
  for (const p of parts) {
    words.set(p.words, at);
    at += p.words.length;
  }
  const out: KeepResult = { words, rows: parts.reduce((n, p) => n + p.rows, 0) };
  if (parts.some((p) => p.scores)) {
    const scores = new Float32Array(parts.reduce((n, p) => n + (p.scores?.length ?? 0), 0));
    let k = 0;
    for (const p of parts) {
      if (!p.scores) continue;
      scores.set(p.scores, k);
      k += p.scores.length;
    }
    out.scores = scores;
  }
  return out;
}
