/**
 * The task list: DataComp's `tasklist.yml` (and the embedded suite's, written in the same layout by
 * src/core/pool/tasks.ts). evaluate.py reads it with `yaml.safe_load` and uses, per task key: `name`
 * (default: the key), `size`, `main_metric` (default "acc1"). The other fields (`num_classes`,
 * `random_score`, `tags`, `time`…) are informational.
 *
 * No YAML library is installed, so `parseYamlSubset` reads the subset these files use: block mappings by
 * indentation, block sequences ("- item"), empty flow collections ([] and {}), simple flow sequences of
 * scalars, plain and quoted scalars resolved as YAML 1.1 (PyYAML) does for ints, floats, null and booleans,
 * comments, and the "---" / "..." document markers. Anything else is a FormatError naming the line.
 */
import { FormatError } from '../formats/errors.ts';

export type YamlValue = null | boolean | number | string | YamlValue[] | Map<string, YamlValue>;

interface Line {
  no: number;
  indent: number;
  text: string;
}

/** Removes a comment that starts at a '#' preceded by whitespace (or at the start), outside quotes. */
function stripComment(s: string): string {
  let quote: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#' && (i === 0 || s[i - 1] === ' ' || s[i - 1] === '\t')) {
      return s.slice(0, i);
    }
  }
  return s;
}

// YAML 1.1 core resolvers as PyYAML applies them (the common forms).
const INT = /^[-+]?(?:0|[1-9][0-9_]*)$/;
const FLOAT = /^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+][0-9]+)?$/;
const NULLS = new Set(['~', 'null', 'Null', 'NULL', '']);
const TRUES = new Set(['yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON']);
const FALSES = new Set(['no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF']);

function scalar(raw: string, fail: (p: string) => never): YamlValue {
  const s = raw.trim();
  if (s.startsWith('"')) {
    if (!s.endsWith('"') || s.length < 2) fail('unterminated double-quoted string');
    try {
      return JSON.parse(s) as string;
    } catch {
      return fail('unsupported escape in a double-quoted string');
    }
  }
  if (s.startsWith("'")) {
    if (!s.endsWith("'") || s.length < 2) fail('unterminated single-quoted string');
    return s.slice(1, -1).replace(/''/g, "'");
  }
  if (s === '[]') return [];
  if (s === '{}') return new Map();
  if (s.startsWith('[') && s.endsWith(']')) return s.slice(1, -1).split(',').map((x) => scalar(x, fail));
  if (s.startsWith('{') || s.startsWith('&') || s.startsWith('*') || s.startsWith('!') || s.startsWith('|') || s.startsWith('>')) {
    fail(`unsupported YAML construct ${JSON.stringify(s.slice(0, 20))}`);
  }
  if (NULLS.has(s)) return null;
  if (TRUES.has(s)) return true;
  if (FALSES.has(s)) return false;
  if (INT.test(s)) return Number(s.replace(/_/g, ''));
  if (FLOAT.test(s) && /[0-9]/.test(s)) return Number(s.replace(/_/g, ''));
  if (/^[-+]?\.(?:inf|Inf|INF)$/.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^\.(?:nan|NaN|NAN)$/.test(s)) return NaN;
  return s;
}

/** Parses the YAML subset described above; `file` names the source in errors. */
export function parseYamlSubset(text: string, file: string): YamlValue {
  const lines: Line[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    if (raw.includes('\t') && /^\s*\t/.test(raw)) throw new FormatError(file, `line ${i + 1}: tab in indentation`);
    const body = stripComment(raw).trimEnd();
    if (!body.trim()) continue;
    if (body === '---' || body === '...') continue;
    lines.push({ no: i + 1, indent: body.length - body.trimStart().length, text: body.trimStart() });
  }
  let pos = 0;
  const failAt = (line: Line | undefined) => (problem: string): never => {
    throw new FormatError(file, line ? `line ${line.no}: ${problem}` : problem);
  };

  const parseBlock = (indent: number): YamlValue => {
    const first = lines[pos]!;
    if (first.text.startsWith('- ') || first.text === '-') {
      const list: YamlValue[] = [];
      while (pos < lines.length && lines[pos]!.indent === indent && (lines[pos]!.text.startsWith('- ') || lines[pos]!.text === '-')) {
        const line = lines[pos++]!;
        const item = line.text.slice(1).trim();
        if (/^[^"'\[{][^:]*:(\s|$)/.test(item)) failAt(line)('mappings inside sequences are not supported');
        list.push(scalar(item, failAt(line)));
      }
      return list;
    }
    const map = new Map<string, YamlValue>();
    while (pos < lines.length && lines[pos]!.indent === indent) {
      const line = lines[pos]!;
      const fail = failAt(line);
      if (line.text.startsWith('- ')) fail('a sequence item where a mapping key was expected');
      const m = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^:]+?)\s*:(?:\s+(.*))?$/.exec(line.text);
      if (!m) fail(`expected "key: value", got ${JSON.stringify(line.text)}`);
      const key = String(scalar(m![1]!, fail));
      if (map.has(key)) fail(`duplicate key ${JSON.stringify(key)}`);
      pos++;
      const rest = m![2];
      if (rest !== undefined && rest.trim() !== '') {
        map.set(key, scalar(rest, fail));
      } else if (pos < lines.length && (lines[pos]!.indent > indent || (lines[pos]!.indent === indent && lines[pos]!.text.startsWith('- ')))) {
        map.set(key, parseBlock(lines[pos]!.indent));
      } else {
        map.set(key, null);
      }
    }
    if (pos < lines.length && lines[pos]!.indent > indent) failAt(lines[pos])('unexpected indentation');
    return map;
  };

  if (!lines.length) return null;
  const value = parseBlock(lines[0]!.indent);
  if (pos < lines.length) failAt(lines[pos])('unexpected indentation');
  return value;
}

export interface EvalTask {
  /** Key in tasklist.yml, e.g. "vtab/cifar100" (also names the data folder). */
  key: string;
  /** `name` (the key when absent): results are keyed by it. */
  name: string;
  size?: number;
  /** `main_metric`, default "acc1" (evaluate.py). */
  mainMetric: string;
  numClasses?: number;
  randomScore?: number;
  tags: string[];
  /** Every field as written. */
  fields: Map<string, YamlValue>;
}

/** Reads a tasklist.yml: the tasks in file order. */
export function parseTasklist(text: string, file: string): EvalTask[] {
  const doc = parseYamlSubset(text, file);
  if (!(doc instanceof Map)) throw new FormatError(file, 'not a mapping of task keys to task descriptions');
  const tasks: EvalTask[] = [];
  for (const [key, value] of doc) {
    const fields = value instanceof Map ? value : new Map<string, YamlValue>();
    if (value !== null && !(value instanceof Map)) throw new FormatError(file, `task ${key}: not a mapping`);
    const num = (name: string): number | undefined => {
      const v = fields.get(name);
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'number') throw new FormatError(file, `task ${key}: ${name} is not a number`);
      return v;
    };
    const name = fields.get('name');
    const mainMetric = fields.get('main_metric');
    const tags = fields.get('tags');
    tasks.push({
      key,
      name: name === undefined || name === null ? key : String(name),
      size: num('size'),
      mainMetric: mainMetric === undefined || mainMetric === null ? 'acc1' : String(mainMetric),
      numClasses: num('num_classes'),
      randomScore: num('random_score'),
      tags: Array.isArray(tags) ? tags.map(String) : [],
      fields,
    });
  }
  return tasks;
}

/** How DataComp's eval_utils/main.py dispatches a task key. */
export type TaskFamily = 'retrieval' | 'wilds' | 'fairness' | 'misc' | 'webdataset';

export function taskFamily(key: string): TaskFamily {
  for (const prefix of ['retrieval', 'wilds', 'fairness', 'misc'] as const) if (key.startsWith(`${prefix}/`)) return prefix;
  return 'webdataset';
}
