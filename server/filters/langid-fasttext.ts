/**
 * fastText lid.176 in Node via `fasttext.wasm.js` (fastText 0.9.x compiled to WebAssembly, with
 * `lid.176.ftz`, the compressed release of the model DataComp's basic filter uses as `lid.176.bin`;
 * research/realdata.md §6). The quantized .ftz can differ from .bin on borderline captions; the recipe
 * records which model gave the labels.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fastTextDetector, type FastTextModel, type LanguageDetector } from '../../src/core/text/langid.ts';

export const FASTTEXT_PACKAGE = 'fasttext.wasm.js';


let loading: Promise<LanguageDetector> | undefined;

/** Whether the package is installed (tests that need the real model skip with a message when it is not). */
export function fastTextAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve(`${FASTTEXT_PACKAGE}/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** The fastText lid.176 detector (loaded once per process). */
export function loadFastTextDetector(): Promise<LanguageDetector> {
  loading ??= load();
  return loading;
}

async function load(): Promise<LanguageDetector> {
  let packageJson: string;
  try {
    packageJson = createRequire(import.meta.url).resolve(`${FASTTEXT_PACKAGE}/package.json`);
  } catch {
    throw new Error(`language id needs the npm package ${FASTTEXT_PACKAGE}@1.0.0 (fastText lid.176), which is not installed`);
  }
  const { version } = JSON.parse(await readFile(packageJson, 'utf8')) as { version: string };
  const modelPath = join(dirname(packageJson), 'dist/models/language-identification/assets/lid.176.ftz');
  const modelHash = createHash('sha256').update(await readFile(modelPath)).digest('hex');
  const mod = (await import(FASTTEXT_PACKAGE)) as { getLIDModel(): Promise<{ load(): Promise<FastTextModel> }> };
  const model = await (await mod.getLIDModel()).load();
  return fastTextDetector(model, `${FASTTEXT_PACKAGE}@${version} lid.176.ftz sha256:${modelHash.slice(0, 16)}`);
}
