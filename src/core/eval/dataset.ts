/**
 * Evaluation sets in clip_benchmark's webdataset layout (`build_wds_dataset`, the loader DataComp's
 * wds_eval.py uses):
 *
 *   <set>/test/nshards.txt           number of shards (mandatory)
 *   <set>/test/{0..n-1}.tar          samples: image (webp, png, jpg or jpeg: the first present, in that order)
 *                                    + `cls` (integer label), or + `txt` (captions, one per line) for retrieval
 *   <set>/classnames.txt             one class per line (stripped)
 *   <set>/zeroshot_classification_templates.txt   one template per line, with {c}
 *   <set>/dataset_type.txt           optional: "retrieval" or "multilabel" (label in `npy`); else classification
 *
 * DataComp names a task's folder `wds_{key with / → -}_test` under --data_dir (fairness tasks drop their
 * prefix); the embedded suite names it by its key. `openEvalSet` accepts both.
 */
import { FormatError } from '../formats/errors.ts';
import { readSamples } from '../formats/webdataset.ts';

/** Files of the evaluation data, by path relative to the data root ("/" separators). Node: files; browser: HTTP/IDB. */
export interface EvalStore {
  /** The file as UTF-8 text, or undefined when it does not exist. */
  readText(path: string): Promise<string | undefined>;
  openStream(path: string): Promise<ReadableStream<Uint8Array>>;
}

export type EvalSetType = 'classification' | 'retrieval' | 'multilabel';

export interface EvalSet {
  key: string;
  /** Folder under the data root. */
  folder: string;
  split: string;
  type: EvalSetType;
  nshards: number;
  classnames?: string[];
  templates?: string[];
}

export interface EvalSample {
  /** `__key__`, e.g. "s0000042". */
  key: string;
  /** Shard path it came from. */
  shard: string;
  image: Uint8Array;
  imageExt: string;
  /** Classification label (`cls`). */
  label?: number;
  /** Retrieval captions (`txt`, split into lines as Python's str.splitlines). */
  captions?: string[];
  /** Raw `npy` member (multilabel targets, WILDS/fairness metadata). */
  npy?: Uint8Array;
}

/** clip_benchmark's image extensions, in `to_tuple(["webp", "png", "jpg", "jpeg"], …)` order. */
export const EVAL_IMAGE_EXTENSIONS = ['webp', 'png', 'jpg', 'jpeg'] as const;

/** Folders a task's data may be in: DataComp's download name first, then the key itself. */
export function taskFolders(key: string): string[] {
  const dcKey = key.startsWith('fairness/') ? key.slice('fairness/'.length) : key;
  return [`wds_${dcKey.replace(/\//g, '-')}_test`, key];
}

// Python's str.splitlines boundaries and str.strip whitespace.
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** Python's `str.splitlines()`: no trailing empty line for a final line break. */
export function pySplitlines(s: string): string[] {
  if (!s) return [];
  const parts = s.split(LINE_BREAK);
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export function pyStrip(s: string): string {
  return s.replace(STRIP, '');
}

/** Finds and reads a task's metadata (nshards, type, class names, templates). */
export async function openEvalSet(store: EvalStore, key: string, split = 'test'): Promise<EvalSet> {
  let folder: string | undefined;
  let nshardsText: string | undefined;
  for (const f of taskFolders(key)) {
    nshardsText = await store.readText(`${f}/${split}/nshards.txt`);
    if (nshardsText !== undefined) {
      folder = f;
      break;
    }
  }
  if (folder === undefined || nshardsText === undefined) {
    throw new FormatError(taskFolders(key).map((f) => `${f}/${split}/nshards.txt`).join(' or '), `no evaluation data for task ${key}`);
  }
  const nshardsPath = `${folder}/${split}/nshards.txt`;
  const t = nshardsText.trim();
  if (!/^[+]?\d+$/.test(t) || Number(t) < 1) throw new FormatError(nshardsPath, `expected a positive shard count, got ${JSON.stringify(t.slice(0, 40))}`);
  const typeText = await store.readText(`${folder}/dataset_type.txt`);
  const typeName = typeText === undefined ? 'classification' : pyStrip(typeText).toLowerCase();
  const type: EvalSetType = typeName === 'retrieval' ? 'retrieval' : typeName === 'multilabel' ? 'multilabel' : 'classification';
  const set: EvalSet = { key, folder, split, type, nshards: Number(t) };
  if (type !== 'retrieval') {
    const classes = await store.readText(`${folder}/classnames.txt`);
    if (classes !== undefined) set.classnames = pySplitlines(classes).map(pyStrip);
    const templates = await store.readText(`${folder}/zeroshot_classification_templates.txt`);
    if (templates !== undefined) set.templates = pySplitlines(templates).map(pyStrip);
  }
  return set;
}

/** The samples of an evaluation set in shard order (0.tar, 1.tar, …), as clip_benchmark reads them. */
export async function* readEvalSamples(store: EvalStore, set: EvalSet): AsyncGenerator<EvalSample, void, undefined> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for (let i = 0; i < set.nshards; i++) {
    const shard = `${set.folder}/${set.split}/${i}.tar`;
    for await (const s of readSamples(await store.openStream(shard), shard)) {
      const where = `sample ${JSON.stringify(s.__key__)}`;
      const imageExt = EVAL_IMAGE_EXTENSIONS.find((e) => s.files.has(e));
      if (!imageExt) throw new FormatError(shard, `${where} has no image (webp, png, jpg or jpeg)`);
      const sample: EvalSample = { key: s.__key__, shard, image: s.files.get(imageExt)!, imageExt };
      if (set.type === 'retrieval') {
        const txt = s.files.get('txt');
        if (!txt) throw new FormatError(shard, `${where} has no txt captions`);
        try {
          sample.captions = pySplitlines(decoder.decode(txt));
        } catch {
          throw new FormatError(shard, `${where}: txt is not UTF-8`);
        }
      } else if (set.type === 'multilabel') {
        const npy = s.files.get('npy');
        if (!npy) throw new FormatError(shard, `${where} has no npy label`);
        sample.npy = npy;
      } else {
        const cls = s.files.get('cls');
        if (!cls) throw new FormatError(shard, `${where} has no cls label`);
        // webdataset: int(data) — surrounding whitespace allowed
        const text = new TextDecoder().decode(cls).trim();
        if (!/^[+-]?\d+$/.test(text)) throw new FormatError(shard, `${where}: cls ${JSON.stringify(text.slice(0, 20))} is not an integer`);
        sample.label = Number(text);
        if (set.classnames && (sample.label < 0 || sample.label >= set.classnames.length)) {
          throw new FormatError(shard, `${where}: label ${sample.label} outside the ${set.classnames.length} classes`);
        }
      }
      if (s.files.has('npy') && !sample.npy) sample.npy = s.files.get('npy')!;
      yield sample;
    }
  }
}
