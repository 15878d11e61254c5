/** What the Inspect view says where a pool lacks scores or embeddings (one wording, used by every view part). */

/** The official CLIP score columns: left null by a pool without a scorer (the embedded default). */
export const SCORE_COLUMNS = ['clip_b32_similarity_score', 'clip_l14_similarity_score'] as const;

export const NO_SCORES_HINT = 'no scores in this pool — `dcw pool score` computes them';

/** The hint for a column without any value, or null when the column has values. */
export function emptyColumnHint(column: string, nulls: number, rows: number): string | null {
  if (rows === 0 || nulls < rows) return null;
  return (SCORE_COLUMNS as readonly string[]).includes(column) ? NO_SCORES_HINT : 'no values in this pool';
}
