/**
 * Filter recipes: named subsets (official baselines, expressions over metadata columns, top-k or top
 * fraction of any score expression) combined by set algebra, and a record of everything that decided the
 * result (the recipe, detector name and version, for text_based the WordNet and wnid list, pool identity,
 * per-subset counts and thresholds).
 *
 *   {
 *     "recipe": 1,
 *     "subsets": {
 *       "basic": {"baseline": "basic_filter"},
 *       "clip":  {"baseline": "clip_score", "arch": "l14", "fraction": 0.3},
 *       "big":   {"where": "min(original_width, original_height) >= 300 and words(text) > 2"},
 *       "best":  {"top": "clip_b32_similarity_score + clip_l14_similarity_score", "k": 1000, "where": "lang(text) == 'en'"},
 *       "theirs": {"subset": "someone-elses.npy"}
 *     },
 *     "result": "(basic & clip) | best - big"
 *   }
 *
 * Set algebra: `&` (∩), `|` (∪), `-` (−), also written ∩ ∪ −; `&` binds tighter than `|` and `-`, which
 * go left to right. A result that names one subset is that subset as its rule writes it (a baseline keeps
 * duplicate uids, as apply_filter.py does); set operations work on distinct uids.
 * top: `fraction` follows the official rule (threshold = sort_desc(scores)[int(N·f)] over the rows that
 * pass `where`, keep >=, so ⌊N·f⌋+1 plus ties); `k` keeps scores >= the k-th largest (k plus ties).
 * Rows with a null score never pass. Same recipe + same pool → same bytes: nothing depends on time or order.
 * subset: a uid .npy made elsewhere (a path the caller resolves; `dcw filter` reads it relative to the recipe
 * file), taken as it is (sorted if it is not) and recorded with its sha256, so the record names its input.
 * dedup / balance (curate.ts): duplicate removal by sha256 or embedding cosine, and MetaCLIP-style balancing
 * over k-means clusters or a numeric key, among all rows or those of an earlier subset (`"of"`), e.g.
 *   "unique": {"dedup": "sha256", "of": "basic"},
 *   "near":   {"dedup": "embedding", "threshold": 0.95},
 *   "spread": {"balance": "clusters", "centroids": "centroids.npy", "max_per_group": 50, "seed": 0, "of": "unique"}
 * repeat (top level): `"repeat": [{"subset": "best", "times": 2}]` writes each result uid that is in `best` twice,
 * which the resharder turns into two copies (upsampling, paper A.1).
 */
import type { Field } from 'apache-arrow';
import { countDistinctSorted, decodeSubsetWords, isSortedWords, uidCount } from '../formats/uid.ts';
import { sortUids } from './sort.ts';
import { detectorInfo, type DetectorInfo, type LanguageDetector } from '../text/langid.ts';
import { ALL_BASELINES, BaselineOptionError, checkBaselineSpec, runBaseline, type BaselineSpec } from './baselines.ts';
import { checkedUidColumn, pushUids, UidWordList } from './columns.ts';
import { compileExpression, ExpressionError, type CompiledExpression } from './expr.ts';
import type { KeepRunner } from './keep.ts';
import { metadataSchema, scanMetadata, type MetadataFile } from './scan.ts';
import { intersectSorted, subtractSorted, uniqueSorted, unionSorted } from './sets.ts';
import { thresholdForFraction64 } from './threshold.ts';
import { applyRepeats, runBalance, runDedup, type BalanceRule, type CurateInputs, type DedupRule } from './curate.ts';
import { FormatError } from '../formats/errors.ts';
import type { TextBasedAssets, TextBasedInfo } from './text-based.ts';
import type { ImageBasedInputs } from './image-based.ts';

export class RecipeError extends Error {
  override readonly name = 'RecipeError';
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
  }
}

export type SubsetRule =
  | ({ baseline: BaselineSpec['name'] } & Omit<BaselineSpec, 'name'>)
  | { where: string }
  | { top: string; k?: number; fraction?: number; where?: string }
  | { subset: string }
  | DedupRule
  | BalanceRule;

export interface Recipe {
  recipe: 1;
  description?: string;
  subsets: Record<string, SubsetRule>;
  result: string;
  repeat?: { subset: string; times: number }[];
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses and checks a recipe's JSON structure (expressions are checked against the pool in runRecipe). */
export function parseRecipe(text: string, file: string): Recipe {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RecipeError(file, `not JSON (${(err as Error).message})`);
  }
  const obj = raw as Record<string, unknown>;
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new RecipeError(file, 'a recipe is a JSON object');
  const extra = Object.keys(obj).filter((k) => !['recipe', 'description', 'subsets', 'result', 'repeat'].includes(k));
  if (extra.length) throw new RecipeError(file, `unknown key "${extra[0]}" (keys: recipe, description, subsets, result, repeat)`);
  if (obj.recipe !== 1) throw new RecipeError(file, '"recipe" must be 1 (the format version)');
  if (!obj.subsets || typeof obj.subsets !== 'object' || Array.isArray(obj.subsets) || !Object.keys(obj.subsets).length) {
    throw new RecipeError(file, '"subsets" must be an object of named subset rules');
  }
  for (const [name, rule] of Object.entries(obj.subsets as Record<string, unknown>)) {
    const at = `subsets.${name}`;
    if (!NAME.test(name)) throw new RecipeError(file, `${at}: a subset name is letters, digits and _`);
    if (!rule || typeof rule !== 'object') throw new RecipeError(file, `${at}: must be an object`);
    const r = rule as Record<string, unknown>;
    const kinds = ['baseline', 'where', 'top', 'subset', 'dedup', 'balance'].filter((k) => k in r && !(k === 'where' && 'top' in r));
    if (kinds.length !== 1) throw new RecipeError(file, `${at}: give exactly one of "baseline", "where", "top", "subset", "dedup" or "balance"`);
    const allowed = {
      baseline: ['baseline', 'arch', 'threshold', 'fraction'], where: ['where'], subset: ['subset'], top: ['top', 'k', 'fraction', 'where'],
      dedup: ['dedup', 'threshold', 'of'], balance: ['balance', 'max_per_group', 'seed', 'centroids', 'of'],
    }[kinds[0] as 'baseline']!;
    const bad = Object.keys(r).find((k) => !allowed.includes(k));
    if (bad) throw new RecipeError(file, `${at}: unknown key "${bad}" (allowed: ${allowed.join(', ')})`);
    if (kinds[0] === 'baseline') {
      if (!(ALL_BASELINES as readonly unknown[]).includes(r.baseline)) throw new RecipeError(file, `${at}: unknown baseline ${JSON.stringify(r.baseline)} (choices: ${ALL_BASELINES.join(', ')})`);
      try {
        checkBaselineSpec({ ...(r as object), name: r.baseline } as BaselineSpec);
      } catch (err) {
        if (err instanceof BaselineOptionError) throw new RecipeError(file, `${at}: ${err.message}`);
        throw err;
      }
    }
    for (const key of ['where', 'top'] as const) if (key in r && typeof r[key] !== 'string') throw new RecipeError(file, `${at}.${key}: must be an expression string`);
    if ('subset' in r && (typeof r.subset !== 'string' || !r.subset)) throw new RecipeError(file, `${at}.subset: must be the path of a uid .npy file`);
    if ('dedup' in r && r.dedup !== 'sha256' && r.dedup !== 'embedding') throw new RecipeError(file, `${at}.dedup: "sha256" (same image bytes) or "embedding" (cosine of the npz image embeddings)`);
    if ('dedup' in r && 'threshold' in r && !(typeof r.threshold === 'number' && r.threshold > 0 && r.threshold <= 1)) throw new RecipeError(file, `${at}.threshold: a cosine in (0, 1]`);
    if ('balance' in r) {
      if (typeof r.balance !== 'string' || !r.balance) throw new RecipeError(file, `${at}.balance: "clusters" or a numeric expression giving each row's group`);
      if (!(Number.isInteger(r.max_per_group) && (r.max_per_group as number) >= 1)) throw new RecipeError(file, `${at}.max_per_group: must be a positive integer`);
      if ('seed' in r && !Number.isInteger(r.seed)) throw new RecipeError(file, `${at}.seed: must be an integer`);
      if (r.balance === 'clusters' && typeof r.centroids !== 'string') throw new RecipeError(file, `${at}.centroids: balance "clusters" needs the path of a centroids .npy/.pt (dcw cluster writes one)`);
    }
    if ('of' in r) {
      const earlier = Object.keys(obj.subsets as object);
      if (typeof r.of !== 'string' || !earlier.slice(0, earlier.indexOf(name)).includes(r.of)) throw new RecipeError(file, `${at}.of: must name a subset defined before "${name}"`);
    }
    if (kinds[0] === 'top') {
      if (('k' in r) === ('fraction' in r)) throw new RecipeError(file, `${at}: give exactly one of "k" and "fraction"`);
      if ('k' in r && !(Number.isInteger(r.k) && (r.k as number) >= 1)) throw new RecipeError(file, `${at}.k: must be a positive integer`);
      if ('fraction' in r && !(typeof r.fraction === 'number' && r.fraction >= 0 && r.fraction < 1)) throw new RecipeError(file, `${at}.fraction: must be in [0, 1)`);
    }
  }
  if (typeof obj.result !== 'string') throw new RecipeError(file, '"result" must be a set expression over the subset names, e.g. "a & b - c"');
  parseSetExpression(obj.result, Object.keys(obj.subsets as object), file);
  if ('repeat' in obj) {
    if (!Array.isArray(obj.repeat)) throw new RecipeError(file, '"repeat" must be a list of {"subset": name, "times": n}');
    for (const [i, r] of (obj.repeat as unknown[]).entries()) {
      const e = r as Record<string, unknown>;
      if (!e || typeof e !== 'object' || typeof e.subset !== 'string' || !(e.subset in (obj.subsets as object))) throw new RecipeError(file, `repeat[${i}].subset: must name a subset of the recipe`);
      if (!(Number.isInteger(e.times) && (e.times as number) >= 1 && (e.times as number) <= 1000)) throw new RecipeError(file, `repeat[${i}].times: a whole number from 1 to 1000`);
      const bad = Object.keys(e).find((k) => k !== 'subset' && k !== 'times');
      if (bad) throw new RecipeError(file, `repeat[${i}]: unknown key "${bad}" (subset, times)`);
    }
  }
  return obj as unknown as Recipe;
}

type SetNode = { name: string } | { op: '&' | '|' | '-'; a: SetNode; b: SetNode };

function parseSetExpression(src: string, names: readonly string[], file: string): SetNode {
  const toks = src.replace(/∩/g, '&').replace(/∪/g, '|').replace(/−/g, '-').match(/[A-Za-z_][A-Za-z0-9_]*|[&|()-]|\S/g) ?? [];
  let p = 0;
  const fail = (problem: string): never => { throw new RecipeError(file, `"result" ${JSON.stringify(src)}: ${problem}`); };
  const atom = (): SetNode => {
    const t = toks[p++];
    if (t === '(') {
      const e = union();
      if (toks[p++] !== ')') fail('missing ")"');
      return e;
    }
    if (t === undefined) return fail('unexpected end');
    if (!NAME.test(t)) return fail(`unexpected "${t}"`);
    if (!names.includes(t)) return fail(`no subset named "${t}" (subsets: ${names.join(', ')})`);
    return { name: t };
  };
  const inter = (): SetNode => {
    let a = atom();
    while (toks[p] === '&') { p++; a = { op: '&', a, b: atom() }; }
    return a;
  };
  const union = (): SetNode => {
    let a = inter();
    while (toks[p] === '|' || toks[p] === '-') { const op = toks[p++] as '|' | '-'; a = { op, a, b: inter() }; }
    return a;
  };
  const root = union();
  if (p < toks.length) fail(`unexpected "${toks[p]}"`);
  return root;
}

export interface RecipeRecord {
  recipe: Recipe;
  detector: DetectorInfo | null;
  /** The WordNet and ImageNet-21k wnid list (sha256) that text_based subsets used; null when none is used. */
  text_based: TextBasedInfo | null;
  pool: unknown;
  subsets: Record<string, { uids: number; distinct: number; rows_read: number; threshold?: number | null; sha256?: string; groups?: number }>;
  result: { uids: number; distinct: number };
}

export interface RecipeRun {
  words: Uint32Array;
  record: RecipeRecord;
}

export interface RecipeOptions {
  detector?: LanguageDetector;
  /** WordNet and the ImageNet-21k wnids, for text_based subsets. */
  textBased?: TextBasedAssets;
  /** GPU, centroids, targets and npz embeddings, for image_based subsets. */
  imageBased?: ImageBasedInputs;
  onProgress?: (rows: number, file: string) => void;
  /** Identity of the pool (e.g. server/filters/metadata-dir.ts poolIdentity), copied into the record. */
  pool?: unknown;
  /** Runs the passes that need no language detector (see RunOptions.runner); default: in this thread. */
  runner?: KeepRunner;
  /** Name used in errors (default "recipe"). */
  file?: string;
  /** Reads the bytes of a `subset` rule's file (its path as the recipe writes it); without it such rules are refused. */
  loadSubset?: (path: string) => Promise<Uint8Array>;
  /** Embeddings, GPU and centroid files for dedup "embedding" and balance "clusters". */
  curate?: CurateInputs;
}

/** Runs a recipe over the metadata files. Nothing is written here: the caller writes the result and record. */
export async function runRecipe(files: readonly MetadataFile[], recipe: Recipe, options: RecipeOptions = {}): Promise<RecipeRun> {
  const file = options.file ?? 'recipe';
  const schema = await metadataSchema(files);
  const fields: readonly Field[] = schema?.schema.fields ?? [];
  // compile every expression first, so a typo fails before any pass over the pool
  const compiled = new Map<string, { where?: CompiledExpression; top?: CompiledExpression }>();
  const compile = (name: string, key: string, src: string, want: 'bool' | 'num') => {
    try {
      return compileExpression(src, fields, want);
    } catch (err) {
      if (err instanceof ExpressionError) throw new RecipeError(file, `subsets.${name}.${key}: ${err.message}`);
      throw err;
    }
  };
  let usesLang = false;
  for (const [name, rule] of Object.entries(recipe.subsets)) {
    const c: { where?: CompiledExpression; top?: CompiledExpression } = {};
    if ('where' in rule && rule.where !== undefined) c.where = compile(name, 'where', rule.where, 'bool');
    if ('top' in rule) c.top = compile(name, 'top', rule.top, 'num');
    if ('baseline' in rule && (rule.baseline === 'basic_filter' || rule.baseline === 'laion2b' || rule.baseline === 'text_based')) usesLang = true;
    if ('baseline' in rule && rule.baseline === 'text_based' && !options.textBased) {
      throw new RecipeError(file, `subsets.${name}: text_based needs WordNet 3.0 and the ImageNet-21k WordNet id list, and none was given`);
    }
    if ('baseline' in rule && (rule.baseline === 'image_based' || rule.baseline === 'image_based_intersect_clip_score')) {
      usesLang = true;
      if (!options.imageBased) throw new RecipeError(file, `subsets.${name}: ${rule.baseline} needs the pool centroids and the ImageNet-1k target features, and none were given`);
    }
    if (c.where?.usesLang || c.top?.usesLang) usesLang = true;
    if ('subset' in rule && !options.loadSubset) throw new RecipeError(file, `subsets.${name}: subset files cannot be read here`);
    if ('balance' in rule && rule.balance !== 'clusters') c.top = compile(name, 'balance', rule.balance, 'num');
    compiled.set(name, c);
  }
  if (usesLang && !options.detector) throw new RecipeError(file, 'this recipe needs language id (basic_filter, text_based, laion2b or lang()), and no detector is available');

  const results = new Map<string, Uint32Array>();
  const usesWordNet = Object.values(recipe.subsets).some((r) => 'baseline' in r && r.baseline === 'text_based');
  const record: RecipeRecord = {
    recipe, detector: usesLang ? detectorInfo(options.detector!) : null, text_based: usesWordNet ? options.textBased!.info : null,
    pool: options.pool ?? null, subsets: {}, result: { uids: 0, distinct: 0 },
  };
  for (const [name, rule] of Object.entries(recipe.subsets)) {
    let words: Uint32Array;
    let rowsRead = 0;
    let threshold: number | undefined;
    let sha256: string | undefined;
    let groups: number | undefined;
    if ('dedup' in rule || 'balance' in rule) {
      const of = rule.of !== undefined ? uniqueSorted(results.get(rule.of)!) : undefined;
      const where = `${file}: subsets.${name}`;
      try {
        const r = 'dedup' in rule
          ? await runDedup(files, rule, of, options.curate ?? {}, where, options.onProgress)
          : await runBalance(files, rule, compiled.get(name)!.top, of, options.curate ?? {}, where, options.onProgress);
        words = r.words;
        rowsRead = r.rowsRead;
        groups = r.groups;
      } catch (err) {
        if (err instanceof FormatError && err.message.startsWith(where)) throw new RecipeError(file, `subsets.${name}: ${err.message.slice(where.length + 2)}`);
        throw err;
      }
    } else if ('subset' in rule) {
      let bytes: Uint8Array;
      try {
        bytes = await options.loadSubset!(rule.subset);
        words = decodeSubsetWords(bytes, rule.subset);
      } catch (err) {
        throw new RecipeError(file, `subsets.${name}: ${(err as Error).message}`);
      }
      if (!isSortedWords(words)) words = sortUids(words);
      sha256 = await sha256Hex(bytes);
    } else if ('baseline' in rule) {
      const { baseline, ...params } = rule;
      const r = await runBaseline(files, { name: baseline, ...params }, { detector: options.detector, textBased: options.textBased, imageBased: options.imageBased, onProgress: options.onProgress, runner: options.runner });
      words = r.words;
      rowsRead = r.rows;
      threshold = r.threshold;
      if (baseline === 'laion2b' && record.detector) record.detector.standsInFor = r.detector?.standsInFor;
    } else if (!('top' in rule) && options.runner && !compiled.get(name)!.where!.usesLang) {
      // a plain `where` needs no detector: the runner may split it over threads
      const r = await options.runner({ kind: 'where', where: rule.where }, { onProgress: options.onProgress });
      words = sortUids(r.words);
      rowsRead = r.rows;
    } else {
      const c = compiled.get(name)!;
      const cols = [...new Set(['uid', ...(c.where?.columns ?? []), ...(c.top?.columns ?? [])])];
      const kept = new UidWordList();
      const scores: number[] = [];
      const readsUid = [...(c.where?.columns ?? []), ...(c.top?.columns ?? [])].includes('uid');
      for await (const chunk of scanMetadata(files, cols, { uidWords: !readsUid })) {
        const uids = checkedUidColumn(chunk.column('uid'), chunk.file, chunk.firstRow);
        const mask = c.where ? (await c.where.evaluate(chunk, options.detector)) as Uint8Array : undefined;
        if (c.top) {
          const s = (await c.top.evaluate(chunk, options.detector)) as Float64Array;
          for (let i = 0; i < chunk.rows; i++) if (!mask || mask[i]) scores.push(s[i]!);
        }
        pushUids(kept, uids, mask);
        rowsRead += chunk.rows;
        options.onProgress?.(rowsRead, chunk.file);
      }
      words = kept.finish();
      if (c.top && 'top' in rule) {
        const s = Float64Array.from(scores);
        if (rule.fraction !== undefined) {
          threshold = s.length ? thresholdForFraction64(s, rule.fraction) : NaN;
        } else {
          const valid = s.filter((x) => x === x).sort();
          threshold = valid.length ? valid[Math.max(0, valid.length - rule.k!)]! : NaN;
        }
        const top = new UidWordList();
        for (let i = 0; i < s.length; i++) if (s[i]! >= threshold) top.push(words, i);
        words = top.finish();
      }
      words = sortUids(words);
    }
    results.set(name, words);
    record.subsets[name] = { uids: uidCount(words), distinct: countDistinctSorted(words), rows_read: rowsRead };
    if (threshold !== undefined) record.subsets[name]!.threshold = Number.isNaN(threshold) ? null : threshold;
    if (sha256 !== undefined) record.subsets[name]!.sha256 = sha256;
    if (groups !== undefined) record.subsets[name]!.groups = groups;
  }
  const tree = parseSetExpression(recipe.result, Object.keys(recipe.subsets), file);
  const evalSet = (n: SetNode): Uint32Array => {
    if ('name' in n) return results.get(n.name)!;
    const a = uniqueSorted(evalSet(n.a));
    const b = uniqueSorted(evalSet(n.b));
    return n.op === '&' ? intersectSorted(a, b) : n.op === '|' ? unionSorted(a, b) : subtractSorted(a, b);
  };
  const words = applyRepeats(evalSet(tree), (recipe.repeat ?? []).map((r) => ({ members: uniqueSorted(results.get(r.subset)!), times: r.times })));
  record.result = { uids: uidCount(words), distinct: countDistinctSorted(words) };
  return { words, record };
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
