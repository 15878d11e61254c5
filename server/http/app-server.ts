/**
 * The workbench's HTTP server: the built single-page app (with the COOP/COEP headers that make the page
 * cross-origin isolated, which SharedArrayBuffer and wasm threads need), the pool's files, and a small JSON API.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';

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

export function startAppServer(options: AppServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'Content-Type': type, ...ISOLATION_HEADERS });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');

    if (url.pathname === '/api/status') {
      return send(200, JSON.stringify({ pool: poolStatus(options.poolDir) }), CONTENT_TYPES['.json']);
    }

    let file: string | null;
    if (url.pathname.startsWith('/pool/')) {
      file = safeJoin(options.poolDir, url.pathname.slice('/pool/'.length));
    } else {
      file = safeJoin(options.appDir, url.pathname === '/' ? 'index.html' : url.pathname);
      // Single-page app: unknown paths without an extension get the app shell.
      if (file && !existsSync(file) && !extname(file)) file = join(options.appDir, 'index.html');
    }
    if (!file) return send(400, 'bad path');
    if (!existsSync(file) || !statSync(file).isFile()) return send(404, 'not found');

    const size = statSync(file).size;
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': size,
      ...ISOLATION_HEADERS,
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  return new Promise((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolvePromise(server));
  });
}
