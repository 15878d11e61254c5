/**
 * A file read by byte ranges (parquet footers and column chunks, npy headers) without loading it whole:
 * the shape hyparquet's AsyncBuffer and the project's ByteSource expect.
 */
import { open, type FileHandle } from 'node:fs/promises';

export interface RangedFile {
  byteLength: number;
  slice(start: number, end?: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export async function openRangedFile(path: string): Promise<RangedFile> {
  const handle: FileHandle = await open(path, 'r');
  const { size } = await handle.stat();
  return {
    byteLength: size,
    async slice(start: number, end = size) {
      const from = Math.max(0, Math.min(start, size));
      const to = Math.max(from, Math.min(end, size));
      const out = new Uint8Array(to - from);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, out.length - done, from + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === out.length ? out : out.subarray(0, done);
    },
    close: () => handle.close(),
  };
}
