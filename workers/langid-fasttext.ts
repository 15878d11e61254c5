/**
 * fastText lid.176 in a browser worker: the same npm package and model file (`lid.176.ftz`) that
 * server/filters/langid-fasttext.ts loads in Node, through the package's browser build, with its WebAssembly
 * and the model served as assets of the app (Vite emits both; `new URL(…, import.meta.url)`).
 */
import { fastTextDetector, type FastTextModel, type LanguageDetector } from '../src/core/text/langid.ts';

const PACKAGE = 'fasttext.wasm.js';
// Kept equal to the installed package's version (the detector's name goes into recipe records).
const PACKAGE_VERSION = '1.0.0';


let loading: Promise<LanguageDetector> | undefined;

/** The detector (loaded once per worker); rejects with the reason when the browser cannot run it. */
export function loadBrowserFastText(): Promise<LanguageDetector> {
  loading ??= load();
  return loading;
}

async function load(): Promise<LanguageDetector> {
  const wasmPath = new URL('../node_modules/fasttext.wasm.js/dist/core/fastText.common.wasm', import.meta.url).href;
  const modelPath = new URL('../node_modules/fasttext.wasm.js/dist/models/language-identification/assets/lid.176.ftz', import.meta.url).href;
  const modelBytes = new Uint8Array(await (await fetch(modelPath)).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', modelBytes));
  const modelHash = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
  const mod = (await import('fasttext.wasm.js/common')) as unknown as {
    getLIDModel(options: { wasmPath: string; modelPath: string }): Promise<{ load(): Promise<FastTextModel> }>;
  };
  const model = await (await mod.getLIDModel({ wasmPath, modelPath })).load();
  return fastTextDetector(model, `${PACKAGE}@${PACKAGE_VERSION} lid.176.ftz sha256:${modelHash.slice(0, 16)}`);
}
