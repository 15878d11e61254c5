/**
 * Reads a pool's metadata files a row group at a time (only the columns asked for, by byte ranges), so
 * a filter pass over 12.8M rows holds one row group in memory, not the pool.
 *
 * Flat string and number columns go through the fast path of flat-parquet.ts; any other column, or a chunk
 * the fast path hands back, is read with ParquetFile.read, which also gives every FormatError. The next
 * row group's bytes are fetched while the current one is filtered.
 */
import type { Table, Vector } from 'apache-arrow';
import type { ColumnMetaData } from 'hyparquet';
import { ParquetFile, type ParquetSource } from '../formats/parquet.ts';
import type { ColumnData } from './columns.ts';
import { decodeFlatNumbers, decodeFlatStrings, decodeFlatUids, flatPlan, NotFast, type FlatPlan } from './flat-parquet.ts';

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
  /** Rows in the chunk. */
  rows: number;
  /** One of the columns asked for. */
  column(name: string): ColumnData;
}

/** Bytes [start, end) of a source, or undefined when the source gives fewer (ParquetFile.read then reports it). */
async function readRange(source: ParquetSource, start: number, end: number): Promise<Uint8Array | undefined> {
  let got: Uint8Array;
  if (source instanceof Uint8Array) got = source.subarray(start, end);
  else if (source instanceof ArrayBuffer) got = new Uint8Array(source, start, Math.max(0, Math.min(end, source.byteLength) - start));
  else if (typeof Blob !== 'undefined' && source instanceof Blob) got = new Uint8Array(await source.slice(start, end).arrayBuffer());
  else {
    const part = await (source as { slice(s: number, e: number): ArrayBuffer | Uint8Array | Promise<ArrayBuffer | Uint8Array> }).slice(start, end);
    got = part instanceof Uint8Array ? part : new Uint8Array(part);
  }
  return got.byteLength === end - start ? got : undefined;
}

/** The byte range of a column chunk (as ParquetFile reads it). */
function chunkRange(meta: ColumnMetaData): [number, number] {
  const dict = meta.dictionary_page_offset !== undefined ? Number(meta.dictionary_page_offset) : 0;
  const data = Number(meta.data_page_offset);
  const start = dict > 0 && dict < data ? dict : data;
  return [start, start + Number(meta.total_compressed_size)];
}

export interface ScanOptions {
  /**
   * Give the "uid" column as UidWords (checked and parsed as its pages are decoded) in the row groups
   * where every row is a well-formed uid; elsewhere it comes as always, and checkedUids reports the bad
   * row. For callers that only check and keep uids (checkedUidColumn, pushUids), never read their text.
   */
  uidWords?: boolean;
}

/** Opens each file once and yields its row groups, in file order. */
export async function* scanMetadata(files: readonly MetadataFile[], columns: readonly string[], options: ScanOptions = {}): AsyncGenerator<Chunk> {
  for (let f = 0; f < files.length; f++) {
    const file = files[f]!;
    const pq = await ParquetFile.open(file.source, file.name);
    const plans: (FlatPlan | undefined)[] = columns.map((c) => flatPlan(pq.metadata, pq.schema.fields, c));
    const groups = pq.rowGroups.map((g, index) => ({ ...g, index })).filter((g) => g.rows > 0);
    const fetch = (k: number) => {
      const g = groups[k];
      if (!g) return undefined;
      const p = Promise.all(plans.map(async (plan) => {
        if (!plan) return undefined;
        const meta = pq.metadata.row_groups[g.index]!.columns[plan.chunkIndex]?.meta_data;
        if (!meta) return undefined;
        const [from, to] = chunkRange(meta);
        return { meta, bytes: await readRange(file.source, from, to) };
      }));
      p.catch(() => {}); // a failed read is reported when its group is reached
      return p;
    };
    let next = fetch(0);
    for (let k = 0; k < groups.length; k++) {
      const g = groups[k]!;
      const fetched = await next!;
      next = fetch(k + 1);
      const data = new Map<string, ColumnData>();
      const slow: string[] = [];
      for (let c = 0; c < columns.length; c++) {
        const plan = plans[c];
        const got = fetched[c];
        if (!plan || !got?.bytes) {
          slow.push(columns[c]!);
          continue;
        }
        if (options.uidWords && columns[c] === 'uid' && plan.kind === 'str') {
          try {
            data.set('uid', decodeFlatUids(got.bytes, got.meta, plan, g.rows));
            continue;
          } catch (err) {
            if (!(err instanceof NotFast)) throw err;
          }
        }
        try {
          data.set(columns[c]!, plan.kind === 'str'
            ? decodeFlatStrings(got.bytes, got.meta, plan, g.rows)
            : decodeFlatNumbers(got.bytes, got.meta, plan, g.rows));
        } catch (err) {
          if (!(err instanceof NotFast)) throw err;
          slow.push(columns[c]!);
        }
      }
      if (slow.length) {
        const table: Table = await pq.read({ columns: slow, rowStart: g.start, rowEnd: g.start + g.rows });
        for (const name of slow) data.set(name, table.getChild(name) as Vector);
      }
      yield {
        file: file.name, fileIndex: f, firstRow: g.start, rows: g.rows,
        column: (name) => {
          const col = data.get(name);
          if (!col) throw new Error(`scanMetadata: column "${name}" was not asked for`);
          return col;
        },
      };
    }
  }
}

/** Column names and Arrow types of the first file (all files of a pool share a schema). */
export async function metadataSchema(files: readonly MetadataFile[]): Promise<ParquetFile | undefined> {
  return files.length ? ParquetFile.open(files[0]!.source, files[0]!.name) : undefined;
}
