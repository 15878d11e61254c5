/** Values the Inspect view and its table worker share (a module of its own: importing the worker would run it). */

/** The derived column that holds each row's duplicate group size. */
export const GROUP_SIZE_COLUMN = 'duplicate_group_size';
/** Picture fingerprints are decoded in the table worker: at most this many rows per grouping. */
export const FINGERPRINT_LIMIT = 10_000;
/** A "more like this" ranking shows this many samples. */
export const SIMILAR_TOP = 1_000;
/** The default cosine threshold for near duplicates by image embedding. */
export const DEFAULT_NEAR_THRESHOLD = 0.95;

export const NO_EMBEDDINGS = 'this pool has no embeddings: run `dcw pool score` (see docs/scoring.md)';
