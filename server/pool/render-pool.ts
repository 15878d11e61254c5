/**
 * Renders many pictures in parallel worker processes, into a content-addressed cache. resvg aborts the
 * process on a few inputs (realdata.md §3); a worker that dies takes only the job it was on with it: that
 * job is recorded as skipped, the worker is replaced and the rest of its batch goes on. Known offenders are
 * also listed in BLOCKLIST so that they are skipped without costing a crash.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { SourceRef } from '../../src/core/pool/catalog.ts';
import type { RenderSpec } from '../../src/core/pool/plan.ts';
import { sha256Hex } from '../../src/core/pool/sha256.ts';
import { RENDER_VERSION } from './render.ts';

export interface RenderJob {
  id: number;
  ref: SourceRef;
  aspect: number;
  spec: RenderSpec;
  /** Cache file to write. */
  out: string;
}

export type WorkerMessage = { type: 'start'; id: number } | { type: 'done'; id: number } | { type: 'error'; id: number; message: string } | { type: 'idle' };

/** Inputs that abort resvg 2.6.2 (url without fragment, or url prefix + size): skipped, never rendered. */
export const BLOCKLIST: readonly { url: RegExp; reason: string }[] = [
  { url: /\/sprites\/all\.svg#1F3F3-FE0F-200D-1F308$/, reason: 'resvg 2.6.2 panics on Noto rainbow flag (any size)' },
  { url: /\/icons\/modern\/person-curly-hair-default\.svg$/, reason: 'resvg 2.6.2 panics on fluent modern person-curly-hair at 32 px' },
];

export function blocked(url: string): string | undefined {
  return BLOCKLIST.find((b) => b.url.test(url))?.reason;
}

/** Cache key of a render: renderer version, source url (without the row's #n) and spec. */
export function renderKey(url: string, spec: RenderSpec): string {
  return sha256Hex(`${RENDER_VERSION}\n${url.replace(/#\d+$/, '')}\n${JSON.stringify(spec)}`);
}

export function cachePath(cacheDir: string, key: string, spec: RenderSpec): string {
  return join(cacheDir, key.slice(0, 2), `${key}.${spec.format === 'png' ? 'png' : 'jpg'}`);
}

export interface RenderResult {
  /** Jobs that could not be rendered: id → reason. */
  failed: Map<number, string>;
  rendered: number;
  cached: number;
  crashes: number;
}

const WORKER = join(import.meta.dirname, 'render-worker.ts');

export async function renderAll(
  jobs: RenderJob[],
  options: { workers?: number; batch?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<RenderResult> {
  const failed = new Map<number, string>();
  const todo: RenderJob[] = [];
  const seen = new Set<string>();
  let cached = 0;
  for (const job of jobs) {
    if (existsSync(job.out)) cached++;
    else if (!seen.has(job.out)) {
      seen.add(job.out);
      todo.push(job);
    }
  }
  const total = todo.length;
  let done = 0;
  let crashes = 0;
  if (!total) return { failed, rendered: 0, cached, crashes };
  const nWorkers = Math.max(1, Math.min(options.workers ?? availableParallelism(), Math.ceil(total / 50)));
  const batch = options.batch ?? 100;
  const queue = todo.slice();
  const tsx = import.meta.resolve('tsx');

  await new Promise<void>((resolve, reject) => {
    let live = 0;
    const start = (): void => {
      const child: ChildProcess = fork(WORKER, [], { execArgv: ['--import', tsx], serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      live++;
      let current: RenderJob[] = [];
      let inFlight: number | undefined;
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-2000);
      });
      const feed = (): void => {
        current = queue.splice(0, batch);
        if (current.length) child.send({ jobs: current });
        else child.disconnect();
      };
      child.on('message', (m: WorkerMessage) => {
        if (m.type === 'start') inFlight = m.id;
        else if (m.type === 'done' || m.type === 'error') {
          if (m.type === 'error') failed.set(m.id, m.message);
          current = current.filter((j) => j.id !== m.id);
          inFlight = undefined;
          done++;
          options.onProgress?.(done, total);
        } else if (m.type === 'idle') feed();
      });
      child.on('exit', (code, signal) => {
        live--;
        if (code !== 0 || signal) {
          // the worker died: the job it was on is skipped; the rest of its batch goes back to the queue
          crashes++;
          const culprit = inFlight ?? current[0]?.id;
          if (culprit !== undefined) {
            const line = stderr.trim().split('\n').find((l) => /panick|error/i.test(l)) ?? `exit ${code ?? signal}`;
            failed.set(culprit, `renderer crashed: ${line.slice(0, 200)}`);
            done++;
          }
          queue.unshift(...current.filter((j) => j.id !== culprit));
          if (crashes > 50) return reject(new Error(`pool build: render workers crashed ${crashes} times; last: ${stderr.slice(-300)}`));
          if (queue.length) start();
        }
        if (live === 0) {
          if (queue.length) start();
          else resolve();
        }
      });
      feed();
    };
    for (let i = 0; i < nWorkers; i++) start();
  });
  return { failed, rendered: total - failed.size, cached, crashes };
}
