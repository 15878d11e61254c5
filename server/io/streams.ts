/**
 * Files ⇄ web streams for Node, so the same core readers and writers (which only know ReadableStream)
 * work on local files.
 *
 * Reading pulls one chunk per request from a FileHandle instead of wrapping fs.createReadStream with
 * Readable.toWeb: the web stream then reads ahead at most one chunk, on any Node version (older
 * Readable.toWeb adapters ignored backpressure and could buffer a whole file, nodejs/node#46347).
 *
 * Writing is atomic: bytes go to a temporary file in the destination's folder, which is synced and
 * renamed over the destination only when the stream closes cleanly. A crash or an error leaves either
 * the old file or none, never a half-written one that looks finished (the temporary name starts with a
 * dot and ends in ".part", so shard globs like "*.tar" never match it).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** A ReadableStream over a file's bytes, read `chunkBytes` at a time as the consumer pulls. */
export function fileReadStream(path: string, options: { chunkBytes?: number } = {}): ReadableStream<Uint8Array> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  let handle: FileHandle | undefined;
  const release = async () => {
    const h = handle;
    handle = undefined;
    await h?.close();
  };
  return new ReadableStream<Uint8Array>(
    {
      async start() {
        handle = await open(path, 'r');
      },
      async pull(controller) {
        try {
          // A fresh buffer per chunk: consumers may keep views of earlier chunks.
          const buffer = new Uint8Array(chunkBytes);
          const { bytesRead } = await handle!.read(buffer, 0, chunkBytes, null);
          if (bytesRead === 0) {
            await release();
            controller.close();
          } else {
            controller.enqueue(bytesRead === chunkBytes ? buffer : buffer.subarray(0, bytesRead));
          }
        } catch (err) {
          await release().catch(() => {});
          throw err;
        }
      },
      async cancel() {
        await release();
      },
    },
    { highWaterMark: 1 },
  );
}

/** The temporary name a file is written under before it is renamed into place. */
export function partialPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.part`);
}

/**
 * A WritableStream that writes `path` atomically: closing it syncs and renames the finished file into
 * place; aborting it, or any write error, deletes the temporary file and leaves `path` untouched.
 */
export function fileWriteStream(path: string): WritableStream<Uint8Array> {
  const temp = partialPath(path);
  let handle: FileHandle | undefined;
  const discard = async () => {
    const h = handle;
    handle = undefined;
    await h?.close().catch(() => {});
    await rm(temp, { force: true });
  };
  return new WritableStream<Uint8Array>({
    async start() {
      handle = await open(temp, 'wx');
    },
    async write(chunk) {
      try {
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await handle!.write(chunk, done, chunk.length - done);
          done += bytesWritten;
        }
      } catch (err) {
        await discard();
        throw err;
      }
    },
    async close() {
      try {
        await handle!.sync();
        await handle!.close();
        handle = undefined;
        await rename(temp, path);
      } catch (err) {
        await discard();
        throw err;
      }
    },
    async abort() {
      await discard();
    },
  });
}

/**
 * Writes `source` to `path` atomically (see fileWriteStream) and returns the number of bytes written.
 * If the source fails, the destination is left as it was.
 */
export async function writeFileAtomic(
  path: string,
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array,
): Promise<number> {
  const sink = fileWriteStream(path);
  let bytes = 0;
  if (source instanceof ReadableStream) {
    const counted = source.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          bytes += chunk.length;
          controller.enqueue(chunk);
        },
      }),
    );
    await counted.pipeTo(sink);
    return bytes;
  }
  const writer = sink.getWriter();
  try {
    const chunks = source instanceof Uint8Array ? [source] : source;
    for await (const chunk of chunks) {
      await writer.write(chunk);
      bytes += chunk.length;
    }
    await writer.close();
    return bytes;
  } catch (err) {
    await writer.abort(err).catch(() => {});
    throw err;
  }
}
