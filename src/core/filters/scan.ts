/**
 * Reads a pool's metadata files a row group at a time (only the columns asked for, by byte ranges), so
 * a filter pass over 12.8M rows holds one row group in memory, not the pool.
 */
import type { Table } from 'apache-arrow';
import { ParquetFile, type ParquetSource } from '../formats/parquet.ts';

/** One metadata parquet: its name (for errors and the recipe's pool identity) and its bytes. */
export interface MetadataFile {
  name: string;
  source: ParquetSource;
}

export interface Chunk {
  file: string;
  /** Index of the file in the list. */
  fileIndex: number;
  /** Row number of the chunk's first row within its file. */
  firstRow: number;
  table: Table;
}

/** Opens each file once and yields its row groups, in file order. */
export async function* scanMetadata(files: readonly MetadataFile[], columns: readonly string[]): AsyncGenerator<Chunk> {
  for (let f = 0; f < files.length; f++) {
    const file = files[f]!;
    const pq = await ParquetFile.open(file.source, file.name);
    for (const group of pq.rowGroups) {
      if (group.rows === 0) continue;
      const table = await pq.read({ columns, rowStart: group.start, rowEnd: group.start + group.rows });
      yield { file: file.name, fileIndex: f, firstRow: group.start, table };
    }
  }
}

/** Column names and Arrow types of the first file (all files of a pool share a schema). */
export async function metadataSchema(files: readonly MetadataFile[]): Promise<ParquetFile | undefined> {
  return files.length ? ParquetFile.open(files[0]!.source, files[0]!.name) : undefined;
}
