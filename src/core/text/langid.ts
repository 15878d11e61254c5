/**
 * Language identification for the filters, behind one interface so that a recipe can name the detector
 * it used (name + version go into every recipe and run report).
 *
 * The official baselines (facts §3) ask fastText's lid.176 for its top-1 label after replacing '\n' with a
 * space (`get_fasttext_language` in baselines/apply_filter.py); `laion2b` asks gcld3 instead, which has no
 * JavaScript build, so the workbench uses the fastText model there too and records that in the recipe.
 * The fastText implementation lives where the runtime can load its WebAssembly (server/filters/ for Node);
 * this module only defines the contract and the pieces every detector shares.
 */

export interface LanguageDetector {
  /** e.g. "fasttext-lid.176" */
  readonly name: string;
  /** Everything needed to say which model gave the labels, e.g. "fasttext.wasm.js@1.0.0 lid.176.ftz sha256:…". */
  readonly version: string;
  /**
   * Top-1 language label of each text, as fastText names it without the "__label__" prefix ("en", "de",
   * "zh", …). The texts are given as they are in the metadata; the detector applies its own input rule
   * (fastTextInput for fastText).
   */
  detect(texts: readonly string[]): Promise<string[]>;
}

/** What a recipe records about the detector that produced its language labels. */
export interface DetectorInfo {
  name: string;
  version: string;
  /** Which official detector it stands in for, when it is not the official one (laion2b: gcld3). */
  standsInFor?: string;
}

export function detectorInfo(detector: LanguageDetector, standsInFor?: string): DetectorInfo {
  return standsInFor ? { name: detector.name, version: detector.version, standsInFor } : { name: detector.name, version: detector.version };
}

/**
 * The text fastText sees for a caption: apply_filter.py replaces every '\n' with ' ' (fastText's Python
 * predict refuses newlines); nothing else is changed.
 */
export function fastTextInput(text: string): string {
  return text.indexOf('\n') < 0 ? text : text.replace(/\n/g, ' ');
}

/** What a loaded fastText model (fasttext.wasm.js, in Node or a browser worker) offers the filters. */
export interface FastTextModel {
  predict(text: string, k: number, threshold: number): { size(): number; get(i: number): [number, string]; delete?(): void };
}

/**
 * The fastText lid.176 detector over a loaded model: top-1 label, no confidence threshold, '\n' → ' ',
 * as DataComp's filters call it. `version` names the package and the model's hash for recipe records.
 */
export function fastTextDetector(model: FastTextModel, version: string): LanguageDetector {
  const top1 = (text: string): string => {
    const v = model.predict(fastTextInput(text), 1, 0);
    try {
      return v.size() < 1 ? '' : v.get(0)[1].replace('__label__', '');
    } finally {
      v.delete?.(); // the wasm vector holds memory outside the JS heap
    }
  };
  return { name: 'fasttext-lid.176', version, detect: async (texts) => texts.map(top1) };
}

/**
 * A detector that answers from a fixed table (text → label), for tests and for labels computed
 * elsewhere (e.g. a pool's ground truth). A text that is not in the table is an error, never a guess.
 */
export function tableDetector(name: string, version: string, labels: ReadonlyMap<string, string>): LanguageDetector {
  return {
    name,
    version,
    async detect(texts) {
      return texts.map((t) => {
        const label = labels.get(t);
        if (label === undefined) throw new Error(`${name}: no label for ${JSON.stringify(t.slice(0, 60))}`);
        return label;
      });
    },
  };
}
