/** Evaluation: task lists, eval sets, zero-shot classification and retrieval, metrics, results files. */
export * from './dataset.ts';
export * from './metrics.ts';
export * from './pyjson.ts';
export * from './results.ts';
export * from './tasklist.ts';
export * from './zeroshot.ts';
