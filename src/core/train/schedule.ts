/**
 * open_clip's `cosine_lr` (training/scheduler.py), evaluated in the same order of operations:
 * - warmup, step < W: lr · (step + 1) / W
 * - then, with e = step − W and es = steps − W: 0.5 · (1 + cos(π · e / es)) · lr, reaching 0 at step = steps.
 * open_clip calls it once per optimizer step, before the step, with the global step counted from 0.
 */
export function cosineLr(baseLr: number, warmup: number, steps: number, step: number): number {
  if (step < warmup) return (baseLr * (step + 1)) / warmup;
  const e = step - warmup;
  const es = steps - warmup;
  return 0.5 * (1 + Math.cos((Math.PI * e) / es)) * baseLr;
}

/** The whole schedule as a function of the step, for a scale and its total step count. */
export function cosineSchedule(baseLr: number, warmup: number, steps: number): (step: number) => number {
  if (!(warmup >= 0 && steps > 0)) throw new RangeError(`schedule needs warmup ≥ 0 and steps > 0 (got ${warmup}, ${steps})`);
  return (step) => cosineLr(baseLr, warmup, steps, step);
}
