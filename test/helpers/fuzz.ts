/**
 * Seeded mutation fuzzing for the readers: start from valid files, mutate them the ways real files break
 * (flipped bits, lying size fields, truncation, spliced garbage) and require that every reader either
 * succeeds or throws a FormatError — never another exception, never a hang.
 */
import assert from 'node:assert/strict';
import { FormatError } from '../../src/core/formats/errors.ts';
import { Rng } from '../../src/core/util/random.ts';

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x30, 0x39, 0x20, 0x0a, 0x2f, 0x2e];

/** One mutation of `input`, chosen by `rng`. */
export function mutate(input: Uint8Array, rng: Rng): Uint8Array {
  const out = new Uint8Array(input);
  const kind = rng.int(7);
  const at = input.length ? rng.int(input.length) : 0;
  switch (kind) {
    case 0: // flip a few bits
      for (let k = 0, n = 1 + rng.int(8); k < n && out.length; k++) out[rng.int(out.length)]! ^= 1 << rng.int(8);
      return out;
    case 1: // set bytes to values that tend to break parsers
      for (let k = 0, n = 1 + rng.int(4); k < n && out.length; k++) out[rng.int(out.length)] = rng.pick(INTERESTING_BYTES);
      return out;
    case 2: // truncate
      return input.slice(0, at);
    case 3: { // overwrite a run with random bytes
      const len = Math.min(1 + rng.int(64), out.length - at);
      rng.bytes(out.subarray(at, at + len));
      return out;
    }
    case 4: { // duplicate a chunk in place (shifts everything after it)
      const len = Math.min(1 + rng.int(1024), input.length - at);
      const res = new Uint8Array(input.length + len);
      res.set(input.subarray(0, at + len));
      res.set(input.subarray(at), at + len);
      return res;
    }
    case 5: { // delete a chunk
      const len = Math.min(1 + rng.int(1024), input.length - at);
      const res = new Uint8Array(input.length - len);
      res.set(input.subarray(0, at));
      res.set(input.subarray(at + len), at);
      return res;
    }
    default: { // write ASCII digits where size/length fields live in text formats
      const digits = String(rng.int(2) ? 10 ** (1 + rng.int(18)) : rng.int(100000));
      for (let k = 0; k < digits.length && at + k < out.length; k++) out[at + k] = digits.charCodeAt(k);
      return out;
    }
  }
}

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** Wall-clock limit for one case; a reader that takes longer is treated as hanging. */
  perCaseMs?: number;
}

export interface FuzzReport {
  cases: number;
  accepted: number;
  rejected: number;
}

/**
 * Runs `read` on `cases` mutations of the seeds. `read` must resolve or reject with FormatError.
 */
export async function fuzzReader(
  seeds: readonly Uint8Array[],
  read: (bytes: Uint8Array) => Promise<unknown> | unknown,
  options: FuzzOptions,
): Promise<FuzzReport> {
  const rng = new Rng(options.seed);
  const perCaseMs = options.perCaseMs ?? 2000;
  const report: FuzzReport = { cases: 0, accepted: 0, rejected: 0 };
  for (let i = 0; i < options.cases; i++) {
    let bytes = rng.pick(seeds);
    for (let m = 0, n = 1 + rng.int(3); m < n; m++) bytes = mutate(bytes, rng);
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`case ${i} hung for more than ${perCaseMs} ms`)), perCaseMs);
    });
    try {
      await Promise.race([Promise.resolve().then(() => read(bytes)), hang]);
      report.accepted++;
    } catch (err) {
      if (!(err instanceof FormatError)) {
        assert.fail(`fuzz case ${i} (seed ${options.seed}, ${bytes.length} bytes) threw ${String(err)} instead of a FormatError`);
      }
      report.rejected++;
    } finally {
      clearTimeout(timer);
    }
    const took = performance.now() - started;
    assert.ok(took < perCaseMs, `fuzz case ${i} took ${took.toFixed(0)} ms`);
    report.cases++;
  }
  return report;
}
