/**
 * Bring your own data (DataComp's BYOD track): image–text pairs from a folder, a table of image URLs, or
 * webdataset tars, turned into a pool in CommonPool's layout (facts §1) — `shards/{:08d}.tar` with
 * `KEY.jpg/.json/.txt`, `{:08d}_stats.json` and `{:08d}.parquet` beside each shard, one `metadata/*.parquet`
 * with the official columns — so it can be merged into a pool and used like any other part of it.
 *
 * uid: DataComp publishes no rule for BYOD uids (its pool's uids are opaque 128-bit ids; external data is
 * submitted as url + caption files). Ours is deterministic and documented: the first 128 bits (32 hex digits)
 * of sha256 over `sha256_hex(original image bytes) + "\n" + caption` (UTF-8), i.e. in Python
 * `hashlib.sha256(f"{hashlib.sha256(img).hexdigest()}\n{caption}".encode()).hexdigest()[:32]`.
 * The same picture with the same caption is one sample wherever it came from. A webdataset sample that
 * already carries a valid uid in its json keeps it (it may be a CommonPool sample).
 *
 * Pictures go through img2dataset's steps as download_upstream.py runs it: decoded, alpha composited on
 * white, shrunk to a longest side of 512 (area averaging) when larger, stored as JPEG quality 95. A JPEG
 * that needs no shrinking is stored as it came (img2dataset's `skip_reencode`), so nothing is lost to a
 * second encode and its bytes do not depend on the platform's encoder. `sha256` is of the original bytes,
 * as img2dataset's `compute_hash` is.
 *
 * Pure: no DOM, no node: modules; decoding and encoding come in through an ImageCodec, fetching through a
 * fetch function.
 */
import { Float32, Float64, Int32, Int64, List, Field, Table, Utf8, vectorFromArray, type DataType } from 'apache-arrow';
import { openEvalSet, readEvalSamples, type EvalStore } from '../eval/dataset.ts';
import { parseTasklist } from '../eval/tasklist.ts';
import { FormatError } from '../formats/errors.ts';
import { compositeOnWhite, readImageSize, sniffImageFormat, type ImageCodec, type RgbaImage } from '../formats/image.ts';
import { readParquet, writeParquet } from '../formats/parquet.ts';
import { normalizeUid } from '../formats/uid.ts';
import { readSamples, writeSamples } from '../formats/webdataset.ts';
import { pyRound } from '../train/augment.ts';
import { decodeFingerprint, encodeFingerprint, findMatches, fingerprint, type MatchOptions } from './contamination.ts';
import { SAMPLES_PER_SHARD, computeKey, pythonJsonDumps, shardName, type SampleJson } from './schema.ts';
import { sha256Hex } from './sha256.ts';

/** img2dataset's image_size in download_upstream.py (keep_ratio_largest, resize_only_if_bigger). */
export const BYOD_MAX_SIDE = 512;
export const BYOD_JPEG_QUALITY = 95;
export const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp', 'gif'] as const;
/** Column names recognised (case-insensitively) in a table of image URLs or of captions. */
export const URL_COLUMNS = ['url', 'image_url', 'img_url', 'imageurl'] as const;
export const CAPTION_COLUMNS = ['caption', 'text'] as const;
export const FILE_COLUMNS = ['file_name', 'filename', 'file', 'image', 'image_path', 'path'] as const;

/** Something of the input that could not be used, and why (listed to the user; never fatal). */
export interface ByodProblem {
  /** `photos/cat.jpg`, `pairs.csv row 12`, `shard.tar:000000000042`. */
  where: string;
  problem: string;
}

/** One pair as found, its picture read lazily (a folder of thousands of pictures is never all in memory). */
export interface ByodInput {
  where: string;
  caption: string;
  url?: string | null;
  /** A uid the input already carries (a webdataset sample's json); derived when absent. */
  uid?: string;
  read(): Promise<Uint8Array>;
}

/** A checked, normalised sample, ready to be written into shards. */
export interface ByodSample {
  uid: string;
  where: string;
  caption: string;
  url: string | null;
  /** The picture as stored in the shard (JPEG). */
  image: Uint8Array;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
  /** sha256 of the original bytes, hex. */
  sha256: string;
  /** encodeFingerprint() of the original picture, for the contamination check. */
  fingerprint: Uint8Array;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

function extensionOf(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

function isImagePath(path: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extensionOf(path));
}

/** The BYOD uid of a picture (by the sha256 of its original bytes) and its caption. */
export function byodUid(imageSha256: string, caption: string): string {
  return sha256Hex(`${imageSha256}\n${caption}`).slice(0, 32);
}

/** Python's str.strip() whitespace is close enough to JS trim() for captions read from files. */
function cleanCaption(text: string): string {
  return text.replace(/^\uFEFF/, '').trim();
}

// ───────────────────────────── tables (CSV, TSV, JSON lines, parquet) ─────────────────────────────

/** RFC 4180 CSV (quoted fields, "" escapes, CRLF or LF); `delimiter` ',' or '\t'. */
export function parseCsv(text: string, file: string, delimiter = ','): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let fieldStarted = false;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && !fieldStarted) {
      quoted = true;
      fieldStarted = true;
    } else if (c === delimiter) {
      row.push(field);
      field = '';
      fieldStarted = false;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
      field = '';
      fieldStarted = false;
      line++;
    } else {
      field += c;
      fieldStarted = true;
    }
  }
  if (quoted) throw new FormatError(file, `a quoted field opened before line ${line} is never closed`);
  row.push(field);
  if (row.length > 1 || row[0] !== '') rows.push(row);
  return rows;
}

/** A table as named string columns (null: no value). */
export interface TextTable {
  file: string;
  names: string[];
  rows: (string | null)[][];
  /** What a row is called in messages: "row 12" counts data rows from 1 as a spreadsheet shows them (header is row 1). */
  rowLabel(index: number): string;
}

/** The column whose name is one of `candidates` (case-insensitive, in the candidates' order of preference). */
export function findColumn(names: readonly string[], candidates: readonly string[]): number {
  for (const want of candidates) {
    const i = names.findIndex((n) => n.trim().toLowerCase() === want);
    if (i >= 0) return i;
  }
  return -1;
}

function cellText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** Reads a CSV, TSV, JSON-lines or parquet file (by its extension) as string columns. */
export async function readTextTable(bytes: Uint8Array, file: string): Promise<TextTable> {
  const ext = extensionOf(file);
  if (ext === 'parquet') {
    const table = await readParquet(bytes, file);
    const names = table.schema.fields.map((f) => f.name);
    const columns = names.map((n) => table.getChild(n)!);
    const rows: (string | null)[][] = [];
    for (let r = 0; r < table.numRows; r++) rows.push(columns.map((c) => cellText(c.get(r))));
    return { file, names, rows, rowLabel: (i) => `row ${i}` };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new FormatError(file, 'not UTF-8 text');
  }
  if (ext === 'jsonl' || ext === 'ndjson') {
    const names: string[] = [];
    const objects: Record<string, unknown>[] = [];
    const lines = text.split(/\r?\n/);
    lines.forEach((l, n) => {
      if (!l.trim()) return;
      let value: unknown;
      try {
        value = JSON.parse(l);
      } catch {
        throw new FormatError(file, `line ${n + 1} is not JSON`);
      }
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw new FormatError(file, `line ${n + 1} is not a JSON object`);
      for (const k of Object.keys(value)) if (!names.includes(k)) names.push(k);
      objects.push(value as Record<string, unknown>);
    });
    return { file, names, rows: objects.map((o) => names.map((n) => cellText(o[n]))), rowLabel: (i) => `line ${i + 1}` };
  }
  const delimiter = ext === 'tsv' ? '\t' : ',';
  const [header, ...body] = parseCsv(text, file, delimiter);
  if (!header) throw new FormatError(file, 'empty table (no header row)');
  return { file, names: header, rows: body.map((r) => header.map((_, i) => r[i] ?? null)), rowLabel: (i) => `row ${i + 2}` };
}

function requireColumn(table: TextTable, candidates: readonly string[], what: string): number {
  const i = findColumn(table.names, candidates);
  if (i < 0) throw new FormatError(table.file, `no ${what} column (looked for ${candidates.join(', ')}, any case; found ${table.names.map((n) => JSON.stringify(n)).join(', ') || 'none'})`);
  return i;
}

/** Whether a table names image URLs (it has a url column) rather than local files. */
export function isUrlTable(table: TextTable): boolean {
  return findColumn(table.names, URL_COLUMNS) >= 0;
}

// ───────────────────────────── a folder of pictures with captions ─────────────────────────────

/** A file of a folder the user picked, by its path relative to the folder ("/" separators). */
export interface FolderFile {
  path: string;
  read(): Promise<Uint8Array>;
}

const CAPTION_TABLE_EXTENSIONS = ['csv', 'tsv', 'jsonl', 'ndjson'];

function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i + 1);
}

function stemOf(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot > path.lastIndexOf('/') ? path.slice(0, dot) : path;
}

function normalizePath(path: string): string {
  const out: string[] = [];
  for (const part of path.replace(/\\/g, '/').split('/')) {
    if (!part || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

/**
 * Pairs the pictures of a folder with their captions: a `.txt` of the same name next to the picture
 * (`cat.jpg` + `cat.txt`, as webdataset keeps them), else a row of a captions table in the folder (CSV, TSV
 * or JSON lines with a file-name column and a caption column; the file name relative to the table, or just
 * the picture's name where that is unique). Pictures without a caption and table rows without a picture are
 * listed as problems. The pairs come in path order, so the same folder always gives the same pool.
 */
export async function folderInputs(files: readonly FolderFile[]): Promise<{ inputs: ByodInput[]; problems: ByodProblem[] }> {
  const problems: ByodProblem[] = [];
  const byPath = new Map(files.map((f) => [normalizePath(f.path), f]));
  const images = [...byPath.keys()].filter(isImagePath).sort();
  const captions = new Map<string, string>();
  /** Pictures whose caption file was there but unusable (already listed as a problem). */
  const badCaption = new Set<string>();
  const byName = new Map<string, string[]>();
  for (const img of images) {
    const name = img.slice(img.lastIndexOf('/') + 1);
    byName.set(name, [...(byName.get(name) ?? []), img]);
  }
  // Captions tables first; a .txt beside the picture wins over them.
  for (const path of [...byPath.keys()].sort()) {
    if (!CAPTION_TABLE_EXTENSIONS.includes(extensionOf(path))) continue;
    const table = await readTextTable(await byPath.get(path)!.read(), path);
    const fileCol = requireColumn(table, FILE_COLUMNS, 'file name');
    const captionCol = requireColumn(table, CAPTION_COLUMNS, 'caption');
    table.rows.forEach((row, r) => {
      const name = row[fileCol];
      const caption = row[captionCol];
      const where = `${path} ${table.rowLabel(r)}`;
      if (!name) return problems.push({ where, problem: 'no file name' });
      const relative = normalizePath(dirOf(path) + name);
      const target = byPath.has(relative) ? relative : byName.get(name)?.length === 1 ? byName.get(name)![0]! : undefined;
      if (!target || !isImagePath(target)) return problems.push({ where, problem: `no picture ${JSON.stringify(name)} in the folder` });
      if (caption === null || caption === undefined || !cleanCaption(caption)) return problems.push({ where, problem: 'empty caption' });
      captions.set(target, cleanCaption(caption));
    });
  }
  for (const img of images) {
    const txtPath = [`${stemOf(img)}.txt`, `${stemOf(img)}.TXT`].find((p) => byPath.has(p));
    if (!txtPath) continue;
    let text: string;
    try {
      text = utf8.decode(await byPath.get(txtPath)!.read());
    } catch {
      problems.push({ where: txtPath, problem: 'caption is not UTF-8 text' });
      badCaption.add(img);
      continue;
    }
    if (!cleanCaption(text)) {
      problems.push({ where: txtPath, problem: 'empty caption' });
      badCaption.add(img);
      continue;
    }
    captions.set(img, cleanCaption(text));
  }
  const inputs: ByodInput[] = [];
  for (const img of images) {
    const caption = captions.get(img);
    if (caption === undefined) {
      const stem = stemOf(img).slice(stemOf(img).lastIndexOf('/') + 1);
      if (!badCaption.has(img)) problems.push({ where: img, problem: `no caption: put it in ${stem}.txt beside the picture, or in a captions.csv (file_name, caption)` });
      continue;
    }
    inputs.push({ where: img, caption, url: null, read: () => byPath.get(img)!.read() });
  }
  return { inputs, problems };
}

// ───────────────────────────── a table of image URLs ─────────────────────────────

export interface UrlRow {
  where: string;
  url: string;
  caption: string;
}

/** The (url, caption) rows of a table; rows without either are problems. */
export function urlRows(table: TextTable): { rows: UrlRow[]; problems: ByodProblem[] } {
  const urlCol = requireColumn(table, URL_COLUMNS, 'image URL');
  const captionCol = requireColumn(table, CAPTION_COLUMNS, 'caption');
  const rows: UrlRow[] = [];
  const problems: ByodProblem[] = [];
  table.rows.forEach((row, r) => {
    const where = `${table.file} ${table.rowLabel(r)}`;
    const url = row[urlCol]?.trim();
    const caption = row[captionCol];
    if (!url) return problems.push({ where, problem: 'no URL' });
    if (caption === null || caption === undefined || !cleanCaption(caption)) return problems.push({ where, problem: 'empty caption' });
    rows.push({ where, url, caption: cleanCaption(caption) });
  });
  return { rows, problems };
}

export interface FetchImagesOptions {
  fetch?: typeof fetch;
  /** The page's origin: a failed request to another origin is reported as a CORS refusal. */
  origin?: string;
  /** Base for relative URLs. */
  base?: string;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
  /**
   * dcw serve's fetch route (`${origin}/api/fetch`): a picture whose server refuses CORS is fetched through it.
   * A route that is not there (404: the page is not served by dcw serve) leaves the CORS refusal as the problem.
   */
  proxy?: string;
}

/** The header dcw serve's fetch route asks for (a cross-origin page cannot send it without a preflight). */
export const FETCH_PROXY_HEADER = 'X-DCW-Fetch';

/** Why a fetch failed, in words that say what to do. */
export function describeFetchFailure(url: string, err: unknown, origin?: string): string {
  let target: URL | undefined;
  try {
    target = new URL(url);
  } catch {
    // relative or garbled: handled below
  }
  const crossOrigin = target && origin && target.origin !== origin;
  if (crossOrigin && err instanceof TypeError) {
    return `CORS: ${target!.origin} does not let this page read its pictures (no Access-Control-Allow-Origin), or cannot be reached; download the pictures and import them as a folder, or open the workbench from dcw serve, which fetches them for the page`;
  }
  return `could not fetch it: ${err instanceof Error ? err.message : String(err)}`;
}

/**
 * Fetches the pictures of URL rows (a few at a time) and gives them as inputs, in row order; each row that
 * fails is a problem naming the row and why (HTTP status, CORS refusal, not an image).
 */
export async function fetchUrlInputs(rows: readonly UrlRow[], options: FetchImagesOptions = {}): Promise<{ inputs: ByodInput[]; problems: ByodProblem[]; viaProxy: number }> {
  const fetchFn = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  let viaProxy = 0;
  let proxyMissing = false;
  /** The picture through dcw serve, or undefined where there is no such route (the CORS refusal stands). */
  const throughProxy = async (url: string): Promise<Uint8Array | undefined> => {
    if (!options.proxy || proxyMissing) return undefined;
    const res = await fetchFn(`${options.proxy}?url=${encodeURIComponent(url)}`, { signal: options.signal, headers: { [FETCH_PROXY_HEADER]: '1' } });
    if (res.status === 404 && !(res.headers.get('content-type') ?? '').includes('json')) {
      proxyMissing = true;
      return undefined;
    }
    if (!res.ok) {
      const said = await res.json().then((j: { error?: string }) => j.error, () => undefined);
      throw new FormatError(url, `through dcw serve: ${said ?? `HTTP ${res.status}`}`);
    }
    viaProxy++;
    return new Uint8Array(await res.arrayBuffer());
  };
  const results: ({ input: ByodInput } | { problem: ByodProblem })[] = new Array(rows.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < rows.length) {
      const i = next++;
      const row = rows[i]!;
      options.signal?.throwIfAborted();
      let url: string;
      try {
        url = new URL(row.url, options.base).href;
      } catch {
        results[i] = { problem: { where: row.where, problem: `${JSON.stringify(row.url.slice(0, 200))} is not a URL` } };
        continue;
      }
      if (!/^https?:$/.test(new URL(url).protocol)) {
        results[i] = { problem: { where: row.where, problem: `${url.slice(0, 200)}: only http(s) URLs can be fetched` } };
        continue;
      }
      try {
        const res = await fetchFn(url, { signal: options.signal, mode: 'cors', credentials: 'omit' });
        if (!res.ok) throw new FormatError(url, `HTTP ${res.status} ${res.statusText}`.trim());
        const bytes = new Uint8Array(await res.arrayBuffer());
        results[i] = { input: { where: row.where, caption: row.caption, url: row.url, read: async () => bytes } };
      } catch (err) {
        if (options.signal?.aborted) throw err;
        let problem = err instanceof FormatError ? err.problem : describeFetchFailure(url, err, options.origin);
        if (problem.startsWith('CORS: ')) {
          try {
            const bytes = await throughProxy(url);
            if (bytes) {
              results[i] = { input: { where: row.where, caption: row.caption, url: row.url, read: async () => bytes } };
              options.onProgress?.(++done, rows.length);
              continue;
            }
          } catch (proxyErr) {
            if (options.signal?.aborted) throw proxyErr;
            problem = proxyErr instanceof FormatError ? proxyErr.problem : `through dcw serve: ${(proxyErr as Error).message}`;
          }
        }
        results[i] = { problem: { where: row.where, problem: `${url.slice(0, 200)}: ${problem}` } };
      }
      options.onProgress?.(++done, rows.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 8, rows.length) }, worker));
  const inputs: ByodInput[] = [];
  const problems: ByodProblem[] = [];
  for (const r of results) {
    if ('input' in r) inputs.push(r.input);
    else problems.push(r.problem);
  }
  return { inputs, problems, viaProxy };
}

// ───────────────────────────── webdataset tars ─────────────────────────────

const TAR_IMAGE_EXTS = ['jpg', 'jpeg', 'png', 'webp'];

/**
 * The samples of a webdataset tar as inputs: the picture (jpg, jpeg, png or webp), the caption from `txt`,
 * and the url and uid from `json` where it has them. Samples without a picture or caption are problems.
 */
export async function tarInputs(stream: ReadableStream<Uint8Array>, archive: string): Promise<{ inputs: ByodInput[]; problems: ByodProblem[] }> {
  const inputs: ByodInput[] = [];
  const problems: ByodProblem[] = [];
  for await (const sample of readSamples(stream, archive)) {
    const where = `${archive}:${sample.__key__}`;
    const ext = TAR_IMAGE_EXTS.find((e) => sample.files.has(e));
    if (!ext) {
      problems.push({ where, problem: 'no picture (jpg, png or webp member)' });
      continue;
    }
    const txt = sample.files.get('txt');
    let caption = '';
    try {
      caption = txt ? cleanCaption(utf8.decode(txt)) : '';
    } catch {
      problems.push({ where, problem: 'txt is not UTF-8' });
      continue;
    }
    let json: { uid?: unknown; url?: unknown; caption?: unknown } = {};
    const jsonBytes = sample.files.get('json');
    if (jsonBytes) {
      try {
        json = JSON.parse(utf8.decode(jsonBytes)) ?? {};
      } catch {
        problems.push({ where, problem: 'json is not valid JSON' });
        continue;
      }
    }
    if (!caption && typeof json.caption === 'string') caption = cleanCaption(json.caption);
    if (!caption) {
      problems.push({ where, problem: 'no caption (txt member)' });
      continue;
    }
    const image = sample.files.get(ext)!;
    const uid = typeof json.uid === 'string' ? normalizeUid(json.uid) : undefined;
    inputs.push({ where, caption, url: typeof json.url === 'string' ? json.url : null, uid, read: async () => image });
  }
  return { inputs, problems };
}

// ───────────────────────────── pictures ─────────────────────────────

/** img2dataset's keep_ratio_largest size: albumentations' longest_max_size, Python round. */
export function storedSize(width: number, height: number, maxSide = BYOD_MAX_SIDE): [number, number] {
  const longest = Math.max(width, height);
  if (longest <= maxSide) return [width, height];
  const scale = maxSide / longest;
  return [Math.max(1, pyRound(width * scale)), Math.max(1, pyRound(height * scale))];
}

/** Area-averaging downscale (cv2.INTER_AREA) of opaque RGBA pixels. */
export function resizeArea(image: RgbaImage, outW: number, outH: number): RgbaImage {
  const { width: w, height: h, data } = image;
  const out = new Uint8ClampedArray(outW * outH * 4);
  const sx = w / outW;
  const sy = h / outH;
  for (let ty = 0; ty < outH; ty++) {
    const y0 = ty * sy;
    const y1 = y0 + sy;
    for (let tx = 0; tx < outW; tx++) {
      const x0 = tx * sx;
      const x1 = x0 + sx;
      let r = 0, g = 0, b = 0, area = 0;
      for (let y = Math.floor(y0); y < Math.min(h, Math.ceil(y1)); y++) {
        const wy = Math.min(y + 1, y1) - Math.max(y, y0);
        if (wy <= 0) continue;
        for (let x = Math.floor(x0); x < Math.min(w, Math.ceil(x1)); x++) {
          const wx = Math.min(x + 1, x1) - Math.max(x, x0);
          if (wx <= 0) continue;
          const a = wx * wy;
          const i = (y * w + x) * 4;
          r += data[i]! * a;
          g += data[i + 1]! * a;
          b += data[i + 2]! * a;
          area += a;
        }
      }
      const o = (ty * outW + tx) * 4;
      out[o] = Math.round(r / area);
      out[o + 1] = Math.round(g / area);
      out[o + 2] = Math.round(b / area);
      out[o + 3] = 255;
    }
  }
  return { width: outW, height: outH, data: out };
}

/**
 * Checks and normalises one input: decodes the picture (a FormatError names the input when it is not a
 * picture or is damaged), stores it as img2dataset would, and fingerprints it for the contamination check.
 */
export async function prepareSample(input: ByodInput, codec: ImageCodec): Promise<ByodSample> {
  const original = await input.read();
  const info = readImageSize(original, input.where);
  const decoded = await codec.decode(original, input.where);
  const sha = sha256Hex(original);
  const [w, h] = storedSize(decoded.width, decoded.height);
  let image = original;
  if (info.format !== 'jpeg' || w !== decoded.width || h !== decoded.height) {
    let pixels = compositeOnWhite(decoded);
    if (w !== decoded.width || h !== decoded.height) pixels = resizeArea(pixels, w, h);
    image = await codec.encode(pixels, { format: 'jpeg', quality: BYOD_JPEG_QUALITY });
    if (sniffImageFormat(image) !== 'jpeg') throw new FormatError(input.where, 'the JPEG encoder did not write a JPEG');
  }
  return {
    uid: input.uid ?? byodUid(sha, input.caption),
    where: input.where,
    caption: input.caption,
    url: input.url ?? null,
    image,
    width: w,
    height: h,
    originalWidth: decoded.width,
    originalHeight: decoded.height,
    sha256: sha,
    fingerprint: encodeFingerprint(fingerprint(new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength), decoded.width, decoded.height, 4)),
  };
}

export interface PrepareOptions {
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
}

/**
 * Prepares every input; the ones that fail (not a picture, damaged, a duplicate of an earlier pair) are
 * problems, not errors. Inputs are read one at a time.
 */
export async function prepareSamples(inputs: readonly ByodInput[], codec: ImageCodec, options: PrepareOptions = {}): Promise<{ samples: ByodSample[]; problems: ByodProblem[] }> {
  const samples: ByodSample[] = [];
  const problems: ByodProblem[] = [];
  const seen = new Map<string, string>();
  for (const [i, input] of inputs.entries()) {
    options.signal?.throwIfAborted();
    try {
      const sample = await prepareSample(input, codec);
      const first = seen.get(sample.uid);
      if (first !== undefined) problems.push({ where: input.where, problem: `same picture and caption as ${first} (uid ${sample.uid}): kept once` });
      else {
        seen.set(sample.uid, input.where);
        samples.push(sample);
      }
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      problems.push({ where: input.where, problem: err.problem.replace(/^cannot decode/, 'not a readable picture: cannot decode') });
    }
    options.onProgress?.(i + 1, inputs.length);
  }
  return { samples, problems };
}

// ───────────────────────────── shards and metadata ─────────────────────────────

export interface ByodFile {
  /** Path relative to the pool root. */
  path: string;
  bytes: Uint8Array;
}

export interface ByodShard {
  shard: number;
  /** `shards/{:08d}.tar`. */
  path: string;
  tar: Uint8Array;
  /** The samples in the shard, in order, with their keys. */
  samples: { key: string; uid: string }[];
}

export interface ByodBuild {
  shards: ByodShard[];
  /** `shards/{:08d}_stats.json` and `shards/{:08d}.parquet`, per shard. */
  shardFiles: ByodFile[];
  /** The metadata parquet (`metadata/<32 hex>.parquet`). */
  metadata: ByodFile;
  rows: number;
}

export interface BuildOptions {
  /** Number of the first shard (a merge continues after the pool's last one). Default 0. */
  firstShard?: number;
  samplesPerShard?: number;
}

const FACE_BBOXES_TYPE = new List(new Field('element', new List(new Field('element', new Float64(), true)), true));

function column(values: readonly unknown[], type: DataType) {
  return vectorFromArray(values as unknown[], type);
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The sample json as img2dataset writes it (facts §1: key order, json.dumps indent 4). */
export function sampleJson(s: ByodSample, key: string): string {
  const json: SampleJson = {
    uid: s.uid, face_bboxes: [], caption: s.caption, url: s.url as string, key, status: 'success', error_message: null,
    width: s.width, height: s.height, original_width: s.originalWidth, original_height: s.originalHeight, exif: '{}', sha256: s.sha256,
  };
  return pythonJsonDumps(json);
}

/**
 * Writes samples as a pool in CommonPool's layout: shards of `samplesPerShard` (10,000) samples numbered
 * from `firstShard`, keys as img2dataset's compute_key, each shard with its stats json and per-shard parquet,
 * and one metadata parquet with the official columns (scores null: no CLIP model has scored these yet;
 * face_bboxes empty: no face detector ran). The same samples in the same order give the same bytes.
 */
export async function buildByodPool(samples: readonly ByodSample[], options: BuildOptions = {}): Promise<ByodBuild> {
  const perShard = options.samplesPerShard ?? SAMPLES_PER_SHARD;
  const first = options.firstShard ?? 0;
  const shards: ByodShard[] = [];
  const shardFiles: ByodFile[] = [];
  for (let start = 0, shard = first; start < samples.length; start += perShard, shard++) {
    const part = samples.slice(start, start + perShard);
    const keys = part.map((_, i) => computeKey(shard, i, perShard));
    const jsons = part.map((s, i) => sampleJson(s, keys[i]!));
    const tar = await readAll(writeSamples(part.map((s, i) => ({
      __key__: keys[i]!,
      files: { jpg: s.image, json: encoder.encode(jsons[i]!), txt: encoder.encode(s.caption) },
    }))));
    const name = shardName(shard);
    shards.push({ shard, path: `shards/${name}.tar`, tar, samples: part.map((s, i) => ({ key: keys[i]!, uid: s.uid })) });
    const n = part.length;
    const stats = { count: n, successes: n, failed_to_download: 0, failed_to_resize: 0, duration: 0, start_time: 0, end_time: 0, status_dict: { success: n } };
    shardFiles.push({ path: `shards/${name}_stats.json`, bytes: encoder.encode(pythonJsonDumps(stats)) });
    shardFiles.push({
      path: `shards/${name}.parquet`,
      bytes: writeParquet(new Table({
        uid: column(part.map((s) => s.uid), new Utf8()),
        face_bboxes: column(part.map(() => []), FACE_BBOXES_TYPE),
        caption: column(part.map((s) => s.caption), new Utf8()),
        url: column(part.map((s) => s.url), new Utf8()),
        key: column(keys, new Utf8()),
        status: column(part.map(() => 'success'), new Utf8()),
        error_message: column(part.map(() => null), new Utf8()),
        width: column(part.map((s) => s.width), new Int32()),
        height: column(part.map((s) => s.height), new Int32()),
        original_width: column(part.map((s) => s.originalWidth), new Int32()),
        original_height: column(part.map((s) => s.originalHeight), new Int32()),
        exif: column(part.map(() => '{}'), new Utf8()),
        sha256: column(part.map((s) => s.sha256), new Utf8()),
      })),
    });
  }
  const metadata = writeParquet(new Table({
    uid: column(samples.map((s) => s.uid), new Utf8()),
    url: column(samples.map((s) => s.url), new Utf8()),
    text: column(samples.map((s) => s.caption), new Utf8()),
    original_width: column(samples.map((s) => BigInt(s.originalWidth)), new Int64()),
    original_height: column(samples.map((s) => BigInt(s.originalHeight)), new Int64()),
    clip_b32_similarity_score: column(samples.map(() => null), new Float32()),
    clip_l14_similarity_score: column(samples.map(() => null), new Float32()),
    face_bboxes: column(samples.map(() => []), FACE_BBOXES_TYPE),
    sha256: column(samples.map((s) => s.sha256), new Utf8()),
  }));
  const stem = sha256Hex(`dcw-byod\nmetadata\n${samples.map((s) => s.uid).join('\n')}`).slice(0, 32);
  return { shards, shardFiles, metadata: { path: `metadata/${stem}.parquet`, bytes: metadata }, rows: samples.length };
}

/** The uids of `samples` that are in `existing`, in sample order (a merge refuses them). */
export function uidCollisions(samples: readonly { uid: string; where: string }[], existing: ReadonlySet<string>): { uid: string; where: string }[] {
  return samples.filter((s) => existing.has(s.uid));
}

// ───────────────────────────── the contamination check ─────────────────────────────

/** A picture of the evaluation suite, fingerprinted. */
export interface EvalPicture {
  task: string;
  /** The sample's `__key__` and the shard it is in (`emoji_group/test/0.tar`). */
  key: string;
  shard: string;
  image: Uint8Array;
  imageExt: string;
  fingerprint: Uint8Array;
}

/**
 * Every picture of an evaluation suite in the clip_benchmark layout (the tasks its `tasklist.yml` lists),
 * decoded and fingerprinted. Pictures that cannot be decoded are an error: a check that skipped them would
 * say "clean" without having looked.
 */
export async function readEvalPictures(store: EvalStore, codec: ImageCodec, options: PrepareOptions = {}): Promise<EvalPicture[]> {
  const text = await store.readText('tasklist.yml');
  if (text === undefined) throw new FormatError('tasklist.yml', 'no evaluation suite here (no tasklist.yml)');
  const tasks = parseTasklist(text, 'tasklist.yml');
  const total = tasks.reduce((n, t) => n + (t.size ?? 0), 0);
  const out: EvalPicture[] = [];
  for (const task of tasks) {
    const set = await openEvalSet(store, task.key);
    for await (const s of readEvalSamples(store, set)) {
      options.signal?.throwIfAborted();
      const decoded = await codec.decode(s.image, `${s.shard}:${s.key}`);
      const fp = fingerprint(new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength), decoded.width, decoded.height, 4);
      out.push({ task: task.key, key: s.key, shard: s.shard, image: s.image, imageExt: s.imageExt, fingerprint: encodeFingerprint(fp) });
      options.onProgress?.(out.length, Math.max(total, out.length));
    }
  }
  return out;
}

/** One of our samples that is (nearly) a picture of the evaluation suite. */
export interface ContaminationMatch {
  uid: string;
  where: string;
  task: string;
  evalKey: string;
  evalShard: string;
  /** dHash bits that differ, and the 16×16 thumbnails' mean absolute difference (0–255). */
  hamming: number;
  mad: number;
}

/** The matches between our samples and the evaluation pictures (contamination.ts's rule and thresholds). */
export function findContamination(
  samples: readonly { uid: string; where: string; fingerprint: Uint8Array }[],
  evalPictures: readonly EvalPicture[],
  options: MatchOptions = {},
): ContaminationMatch[] {
  const matches = findMatches(samples.map((s) => decodeFingerprint(s.fingerprint)), evalPictures.map((e) => decodeFingerprint(e.fingerprint)), options);
  return matches.map((m) => {
    const s = samples[m.pool]!;
    const e = evalPictures[m.eval]!;
    return { uid: s.uid, where: s.where, task: e.task, evalKey: e.key, evalShard: e.shard, hamming: m.hamming, mad: m.mad };
  });
}
