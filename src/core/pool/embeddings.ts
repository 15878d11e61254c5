/**
 * A pool's CLIP embeddings: `metadata/<stem>.npz` beside each `metadata/<stem>.parquet`, with the keys
 * b32_img, b32_txt, l14_img, l14_txt, rows aligned with the parquet's rows (facts §1; `dcw pool score` writes
 * the same keys). One key of every file becomes one row-major float32 matrix over the pool's rows, in the
 * order the table concatenates the parquet files, each row scaled to unit length.
 */
import { FormatError } from '../formats/errors.ts';
import { listNpz, readNpz } from '../formats/npz.ts';
import { normalizeRows } from '../filters/dedup.ts';

export const EMBEDDING_KEYS = ['b32_img', 'b32_txt', 'l14_img', 'l14_txt'] as const;
export type EmbeddingKey = (typeof EMBEDDING_KEYS)[number];

/** The npz of a metadata parquet, as apply_filter.py pairs them: the path up to the first ".parquet", then ".npz". */
export function npzPathFor(metadataPath: string): string {
  return `${metadataPath.split('.parquet')[0]}.npz`;
}

/**
 * The image/text key pair to use: L/14 when the file has it (DataComp's image-based filter uses l14_img), else
 * B/32. `text` is null when the file has no matching text key.
 */
export function embeddingPair(npz: Uint8Array, file: string): { image: EmbeddingKey; text: EmbeddingKey | null } {
  const keys = new Set(listNpz(npz, file).map((e) => e.key));
  for (const model of ['l14', 'b32'] as const) {
    if (keys.has(`${model}_img`)) return { image: `${model}_img`, text: keys.has(`${model}_txt`) ? `${model}_txt` : null };
  }
  throw new FormatError(file, `has no image embeddings (no l14_img or b32_img; it has: ${[...keys].join(', ') || 'nothing'})`);
}

export interface EmbeddingMatrix {
  key: EmbeddingKey;
  dim: number;
  /** rows × dim, unit rows; a row that is missing (NaN or zero in the file) is all NaN. */
  vectors: Float32Array;
  /** Rows with an embedding. */
  valid: number;
}

/**
 * Reads `key` from each part's npz (float16 or float32) into one matrix. Each npz must hold a 2-D array with
 * as many rows as its parquet and the same width as the others.
 */
export function embeddingMatrix(parts: readonly { file: string; rows: number; npz: Uint8Array }[], key: EmbeddingKey): EmbeddingMatrix {
  const total = parts.reduce((n, p) => n + p.rows, 0);
  let dim = -1;
  let vectors = new Float32Array(0);
  let at = 0;
  for (const p of parts) {
    const array = readNpz(p.npz, p.file, { only: [key], float16: 'float32' })[key]!;
    if (array.dtype !== '<f2' && array.dtype !== '<f4' && array.dtype !== '<f8') throw new FormatError(p.file, `${key} is ${array.dtype}, not float16 or float32`);
    if (array.shape.length !== 2) throw new FormatError(p.file, `${key} has shape (${array.shape.join(', ')}), not (rows, width)`);
    const [rows, width] = array.shape as [number, number];
    if (rows !== p.rows) throw new FormatError(p.file, `${key} has ${rows} rows, its metadata parquet ${p.rows}`);
    if (dim === -1) {
      if (!(width > 0)) throw new FormatError(p.file, `${key} has width ${width}`);
      dim = width;
      vectors = new Float32Array(total * dim);
    } else if (width !== dim) {
      throw new FormatError(p.file, `${key} is ${width} wide, the pool's other files ${dim}`);
    }
    vectors.set(array.data as Float32Array | Float64Array, at * dim);
    at += rows;
  }
  if (dim === -1) throw new Error('no metadata files');
  const valid = normalizeRows(vectors, dim);
  return { key, dim, vectors, valid };
}
