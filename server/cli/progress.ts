/**
 * Progress for long work: a redrawn bar on a terminal, plain timestamped lines otherwise (CI logs, pipes),
 * so logs stay readable and terminals stay calm. Lines go to stderr: stdout is kept for results.
 */
export interface Progress {
  /** Sets the amount done (in `unit`s) and optionally a short status text. */
  update(done: number, status?: string): void;
  /** Finishes the bar with a final message. */
  done(message?: string): void;
}

export interface ProgressOptions {
  label: string;
  total?: number;
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Minimum milliseconds between plain lines when not on a TTY. */
  plainIntervalMs?: number;
}

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const unit = options.unit ?? '';
  const started = performance.now();
  const tty = Boolean(stream.isTTY) && process.env.CI !== 'true';
  const interval = options.plainIntervalMs ?? 2000;
  let lastPlain = -Infinity;
  let lastDone = 0;

  const describe = (done: number, status?: string): string => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const parts = [options.label];
    if (options.total) {
      const fraction = Math.min(1, done / options.total);
      parts.push(`${formatCount(done)}/${formatCount(options.total)}${unit} (${(fraction * 100).toFixed(1)}%)`);
      if (rate > 0 && done < options.total) parts.push(`ETA ${formatDuration((options.total - done) / rate)}`);
    } else {
      parts.push(`${formatCount(done)}${unit}`);
    }
    if (rate > 0) parts.push(`${formatCount(rate)}${unit}/s`);
    if (status) parts.push(status);
    return parts.join('  ');
  };

  return {
    update(done, status) {
      lastDone = done;
      if (tty) {
        const width = Math.max(10, Math.min(30, (stream.columns ?? 80) - 70));
        const fraction = options.total ? Math.min(1, done / options.total) : 0;
        const filled = Math.round(fraction * width);
        const bar = options.total ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
        stream.write(`\r\x1b[2K${bar}${describe(done, status)}`);
      } else if (performance.now() - lastPlain >= interval) {
        lastPlain = performance.now();
        stream.write(`${describe(done, status)}\n`);
      }
    },
    done(message) {
      const text = message ?? `${describe(lastDone)}  done in ${formatDuration((performance.now() - started) / 1000)}`;
      stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
    },
  };
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[i]}`;
}
