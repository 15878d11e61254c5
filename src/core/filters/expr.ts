/**
 * A small, safe expression language over metadata columns, compiled to vectorised passes over a row
 * group's columns (no eval, no Function): every node computes a whole column at once.
 *
 *   min(original_width, original_height) >= 200 and words(text) > 2 and lang(text) == "en"
 *   clip_l14_similarity_score >= 0.25 or (text ~ "(?i)\\bdog\\b" and not len(text) < 10)
 *
 * Values: numbers (null → NaN; a comparison with NaN is false except !=, as in pandas), booleans, strings (null
 * kept; == with null is false, != true). Operators: or, and, not; == != < <= > >=; + - * / %; unary -;
 * `~` regex match (JavaScript RegExp with the u flag; a leading (?i) means case-insensitive).
 * Functions: min(a, b, …), max(a, b, …), abs(x), len(s) (Python len: code points; a list's length),
 * words(s) (len(s.split())), lower(s), lang(s) (language id, fastText label such as "en"),
 * contains(s, "sub"), startswith(s, "p"), endswith(s, "p"), is_null(x).
 * A float32 column compared with a number literal is compared in float32, as numpy does.
 */
import { Type, type Field } from 'apache-arrow';
import type { LanguageDetector } from '../text/langid.ts';
import { listLengthColumn, numberColumn, perString, pyLenAt, pyWordCountAt, stringsOf, textAt, type FlatStrings } from './columns.ts';
import { pyLen, pyWordCount } from './pystr.ts';
import type { Chunk } from './scan.ts';

export class ExpressionError extends Error {
  override readonly name = 'ExpressionError';
  constructor(readonly source: string, readonly at: number, problem: string) {
    super(`expression ${JSON.stringify(source)}: at character ${at + 1}: ${problem}`);
  }
}

type Ty = 'num' | 'bool' | 'str' | 'list';
type Node =
  | { k: 'num'; v: number; at: number }
  | { k: 'str'; v: string; at: number }
  | { k: 'bool'; v: boolean; at: number }
  | { k: 'col'; name: string; ty: Ty; f32: boolean; at: number }
  | { k: 'un'; op: 'not' | 'neg'; a: Node; at: number }
  | { k: 'bin'; op: string; a: Node; b: Node; at: number }
  | { k: 'call'; fn: string; args: Node[]; at: number; re?: RegExp };

interface Tok { t: 'num' | 'str' | 'id' | 'op' | 'end'; v: string; at: number }

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) { i++; continue; }
    const at = i;
    const num = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(src.slice(i));
    if (num) { out.push({ t: 'num', v: num[0], at }); i += num[0].length; continue; }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
    if (id) { out.push({ t: 'id', v: id[0], at }); i += id[0].length; continue; }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let v = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) {
          const e = src[j + 1]!;
          v += e === 'n' ? '\n' : e === 't' ? '\t' : e === c || e === '\\' ? e : '\\' + e;
          j += 2;
        } else v += src[j++];
      }
      if (j >= src.length) throw new ExpressionError(src, at, 'unterminated string');
      out.push({ t: 'str', v, at });
      i = j + 1;
      continue;
    }
    const op = /^(?:==|!=|<=|>=|&&|\|\||[<>+\-*/%(),~!])/.exec(src.slice(i));
    if (!op) throw new ExpressionError(src, at, `unexpected character ${JSON.stringify(c)}`);
    const map: Record<string, string> = { '&&': 'and', '||': 'or', '!': 'not' };
    out.push({ t: map[op[0]] ? 'id' : 'op', v: map[op[0]] ?? op[0], at });
    i += op[0].length;
  }
  out.push({ t: 'end', v: '', at: src.length });
  return out;
}

const FUNCTIONS: Record<string, { args: [number, number]; ret: Ty }> = {
  min: { args: [1, 99], ret: 'num' }, max: { args: [1, 99], ret: 'num' }, abs: { args: [1, 1], ret: 'num' },
  len: { args: [1, 1], ret: 'num' }, words: { args: [1, 1], ret: 'num' }, lower: { args: [1, 1], ret: 'str' },
  lang: { args: [1, 1], ret: 'str' }, contains: { args: [2, 2], ret: 'bool' }, startswith: { args: [2, 2], ret: 'bool' },
  endswith: { args: [2, 2], ret: 'bool' }, is_null: { args: [1, 1], ret: 'bool' },
};

function fieldType(f: Field): { ty: Ty; f32: boolean } | undefined {
  const id = f.type.typeId;
  if (id === Type.Int || id === Type.Float) return { ty: 'num', f32: id === Type.Float && (f.type as { precision: number }).precision === 1 };
  if (id === Type.Bool) return { ty: 'num', f32: false };
  if (id === Type.Utf8 || id === Type.LargeUtf8) return { ty: 'str', f32: false };
  if (id === Type.List) return { ty: 'list', f32: false };
  return undefined;
}

/** A compiled expression: its columns, whether it needs language id, and its evaluation on a chunk. */
export interface Compiled {
  source: string;
  type: Ty;
  columns: string[];
  usesLang: boolean;
}
export interface CompiledExpression extends Compiled {
  evaluate(chunk: Chunk, detector?: LanguageDetector): Promise<Uint8Array | Float64Array | FlatStrings | (string | null)[]>;
}

/** Parses and type-checks `source` against the metadata schema's fields. */
export function compileExpression(source: string, fields: readonly Field[], want?: 'bool' | 'num'): CompiledExpression {
  const toks = tokenize(source);
  let p = 0;
  const peek = () => toks[p]!;
  const fail = (at: number, problem: string): never => { throw new ExpressionError(source, at, problem); };
  const expect = (v: string) => {
    if (peek().v !== v || peek().t === 'str') fail(peek().at, `expected "${v}"${peek().t === 'end' ? ' before the end' : `, found "${peek().v}"`}`);
    p++;
  };
  const columns = new Set<string>();
  let usesLang = false;
  const typeOf = (n: Node): Ty => (n.k === 'num' ? 'num' : n.k === 'str' ? 'str' : n.k === 'bool' ? 'bool' : n.k === 'col' ? n.ty
    : n.k === 'un' ? (n.op === 'not' ? 'bool' : 'num') : n.k === 'call' ? (n.fn === '~' ? 'bool' : FUNCTIONS[n.fn]!.ret)
    : ['+', '-', '*', '/', '%'].includes(n.op) ? 'num' : 'bool');
  const need = (n: Node, ty: Ty, what: string) => {
    const got = typeOf(n);
    if (got !== ty) fail(n.at, `${what} needs ${ty === 'num' ? 'a number' : ty === 'str' ? 'a string' : ty === 'bool' ? 'a condition' : 'a list'}, got ${got === 'num' ? 'a number' : got === 'str' ? 'a string' : got === 'bool' ? 'a condition' : 'a list'}`);
  };

  const primary = (): Node => {
    const t = peek();
    if (t.t === 'num') { p++; return { k: 'num', v: Number(t.v), at: t.at }; }
    if (t.t === 'str') { p++; return { k: 'str', v: t.v, at: t.at }; }
    if (t.t === 'op' && t.v === '(') { p++; const e = or(); expect(')'); return e; }
    if (t.t === 'id') {
      p++;
      if (t.v === 'true' || t.v === 'false') return { k: 'bool', v: t.v === 'true', at: t.at };
      if (peek().v === '(' && peek().t === 'op') {
        const spec = FUNCTIONS[t.v] ?? fail(t.at, `unknown function "${t.v}" (functions: ${Object.keys(FUNCTIONS).join(', ')})`);
        p++;
        const args: Node[] = [];
        if (peek().v !== ')') {
          args.push(or());
          while (peek().v === ',' && peek().t === 'op') { p++; args.push(or()); }
        }
        expect(')');
        if (args.length < spec.args[0] || args.length > spec.args[1]) fail(t.at, `${t.v}() takes ${spec.args[0] === spec.args[1] ? spec.args[0] : `${spec.args[0]} or more`} argument(s), got ${args.length}`);
        const node: Node = { k: 'call', fn: t.v, args, at: t.at };
        if (t.v === 'min' || t.v === 'max' || t.v === 'abs') args.forEach((a) => need(a, 'num', `${t.v}()`));
        if (t.v === 'len') { const ty = typeOf(args[0]!); if (ty !== 'str' && ty !== 'list') need(args[0]!, 'str', 'len()'); }
        if (['words', 'lower', 'lang', 'contains', 'startswith', 'endswith'].includes(t.v)) need(args[0]!, 'str', `${t.v}()`);
        if (['contains', 'startswith', 'endswith'].includes(t.v) && args[1]!.k !== 'str') fail(args[1]!.at, `${t.v}() needs a string literal as its second argument`);
        if (t.v === 'lang') usesLang = true;
        return node;
      }
      if (['and', 'or', 'not'].includes(t.v)) fail(t.at, `unexpected "${t.v}"`);
      const field = fields.find((f) => f.name === t.v);
      if (!field) fail(t.at, `unknown column "${t.v}" (columns: ${fields.map((f) => f.name).join(', ')})`);
      const ft = fieldType(field!) ?? fail(t.at, `column "${t.v}" has type ${String(field!.type)}, which expressions cannot use`);
      columns.add(t.v);
      return { k: 'col', name: t.v, ty: ft.ty, f32: ft.f32, at: t.at };
    }
    return fail(t.at, t.t === 'end' ? 'unexpected end of expression' : `unexpected "${t.v}"`);
  };
  const unary = (): Node => {
    const t = peek();
    if (t.t === 'op' && t.v === '-') { p++; const a = unary(); need(a, 'num', 'unary "-"'); return { k: 'un', op: 'neg', a, at: t.at }; }
    return primary();
  };
  const binary = (next: () => Node, ops: string[], ty: Ty): Node => {
    let a = next();
    while (peek().t === 'op' && ops.includes(peek().v)) {
      const t = toks[p++]!;
      const b = next();
      need(a, ty, `"${t.v}"`);
      need(b, ty, `"${t.v}"`);
      a = { k: 'bin', op: t.v, a, b, at: t.at };
    }
    return a;
  };
  const mul = () => binary(unary, ['*', '/', '%'], 'num');
  const add = () => binary(mul, ['+', '-'], 'num');
  const cmp = (): Node => {
    const a = add();
    const t = peek();
    if (t.t !== 'op' || !['==', '!=', '<', '<=', '>', '>=', '~'].includes(t.v)) return a;
    p++;
    const b = add();
    const ta = typeOf(a);
    if (t.v === '~') {
      need(a, 'str', '"~"');
      if (b.k !== 'str') fail(b.at, '"~" needs a string literal (a regular expression) on its right');
      let pattern = (b as { v: string }).v;
      let flags = 'u';
      if (pattern.startsWith('(?i)')) { pattern = pattern.slice(4); flags += 'i'; }
      let re: RegExp | undefined;
      try { re = new RegExp(pattern, flags); } catch (err) { fail(b.at, `bad regular expression: ${(err as Error).message}`); }
      return { k: 'call', fn: '~', args: [a], at: t.at, re };
    }
    if (ta === 'str') {
      if (t.v !== '==' && t.v !== '!=') fail(t.at, `strings compare only with == and !=`);
      need(b, 'str', `"${t.v}"`);
    } else {
      need(a, 'num', `"${t.v}"`);
      need(b, 'num', `"${t.v}"`);
    }
    return { k: 'bin', op: t.v, a, b, at: t.at };
  };
  const not = (): Node => {
    const t = peek();
    if (t.t === 'id' && t.v === 'not') { p++; const a = not(); need(a, 'bool', '"not"'); return { k: 'un', op: 'not', a, at: t.at }; }
    return cmp();
  };
  const logic = (next: () => Node, word: string): Node => {
    let a = next();
    while (peek().t === 'id' && peek().v === word) {
      const t = toks[p++]!;
      const b = next();
      need(a, 'bool', `"${word}"`);
      need(b, 'bool', `"${word}"`);
      a = { k: 'bin', op: word, a, b, at: t.at };
    }
    return a;
  };
  const and = () => logic(not, 'and');
  const or = (): Node => logic(and, 'or');

  const root = or();
  if (peek().t !== 'end') fail(peek().at, `unexpected "${peek().v}"`);
  const type = typeOf(root);
  if (want && type !== want) need(root, want, 'a filter');
  if (type === 'list') fail(root.at, 'a list column can only be used in len()');

  return {
    source, type, columns: [...columns], usesLang,
    async evaluate(chunk, detector) {
      if (usesLang && !detector) throw new ExpressionError(source, 0, 'lang() needs a language detector');
      const v = await evalNode(root, chunk, detector, undefined, new Map());
      const rows = chunk.rows;
      // a constant expression ("true", "1 + 2") becomes a column
      if (typeof v === 'boolean') return new Uint8Array(rows).fill(v ? 1 : 0);
      if (typeof v === 'number') return new Float64Array(rows).fill(v);
      if (typeof v === 'string') return new Array<string>(rows).fill(v);
      return v;
    },
  };
}

/** A string column: bytes as read, or JS strings made by a function (lower, lang). */
type Strs = FlatStrings | (string | null)[];
type Val = Float64Array | Uint8Array | Strs | number | string | boolean;

const isFlatStrings = (v: Val): v is FlatStrings => typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
const isStrs = (v: Val): v is Strs => Array.isArray(v) || isFlatStrings(v);
/** Row i of a string value (a literal is the same in every row). */
const strAt = (v: Val, i: number): string | null => (typeof v === 'string' ? v : Array.isArray(v) ? v[i]! : textAt(v as FlatStrings, i));

async function evalNode(n: Node, chunk: Chunk, detector: LanguageDetector | undefined, active: Uint8Array | undefined, cache: Map<string, Val>): Promise<Val> {
  const rows = chunk.rows;
  switch (n.k) {
    case 'num': case 'str': case 'bool': return n.v;
    case 'col': {
      const key = `${n.name}:${n.ty}`;
      let v = cache.get(key);
      if (!v) {
        const col = chunk.column(n.name);
        v = n.ty === 'num' ? numberColumn(col, chunk.file, n.name) : n.ty === 'str' ? stringsOf(col, chunk.file, n.name) : listLengthColumn(col, chunk.file, n.name);
        cache.set(key, v);
      }
      return v;
    }
    case 'un': {
      const a = await evalNode(n.a, chunk, detector, active, cache);
      // plain loops: typed-array map/from with a callback cost a call per row
      if (n.op === 'neg') {
        if (typeof a === 'number') return -a;
        const x = a as Float64Array;
        const out = new Float64Array(rows);
        for (let i = 0; i < rows; i++) out[i] = -x[i]!;
        return out;
      }
      if (typeof a === 'boolean') return !a;
      const m = a as Uint8Array;
      const out = new Uint8Array(rows);
      for (let i = 0; i < rows; i++) out[i] = 1 - m[i]!;
      return out;
    }
    case 'bin': {
      if (n.op === 'and' || n.op === 'or') {
        const a = toMask(await evalNode(n.a, chunk, detector, active, cache), rows);
        // the right side's lang() only runs on rows where the left side has not decided
        // (and so do words() and len(): values on rows already decided are never looked at)
        const isAnd = n.op === 'and';
        // masks hold 0 and 1 only
        let open: Uint8Array;
        if (isAnd && !active) open = a;
        else {
          open = new Uint8Array(rows);
          if (isAnd) for (let i = 0; i < rows; i++) open[i] = a[i]! & active![i]!;
          else if (active) for (let i = 0; i < rows; i++) open[i] = (1 - a[i]!) & active[i]!;
          else for (let i = 0; i < rows; i++) open[i] = 1 - a[i]!;
        }
        const b = toMask(await evalNode(n.b, chunk, detector, open, cache), rows);
        const out = new Uint8Array(rows);
        if (isAnd) for (let i = 0; i < rows; i++) out[i] = a[i]! & b[i]!;
        else for (let i = 0; i < rows; i++) out[i] = a[i]! | b[i]!;
        return out;
      }
      const a = await evalNode(n.a, chunk, detector, active, cache);
      const b = await evalNode(n.b, chunk, detector, active, cache);
      if (typeof a === 'string' || isStrs(a)) {
        const eq = n.op === '==';
        const out = new Uint8Array(rows);
        for (let i = 0; i < rows; i++) {
          const x = strAt(a, i);
          const y = strAt(b, i);
          out[i] = x === null || y === null ? (eq ? 0 : 1) : (x === y) === eq ? 1 : 0;
        }
        return out;
      }
      // a float32 column against a literal compares in float32 (numpy casts the Python scalar)
      const f32 = (x: Node, y: Node) => x.k === 'col' && x.f32 && y.k === 'num';
      const av = f32(n.b, n.a) ? Math.fround(a as number) : a;
      const bv = f32(n.a, n.b) ? Math.fround(b as number) : b;
      return numeric(n.op, av as Float64Array | number, bv as Float64Array | number, rows);
    }
    case 'call': {
      const args = await Promise.all(n.args.map((a) => evalNode(a, chunk, detector, active, cache)));
      const col = (v: Val) => (typeof v === 'number' ? new Float64Array(rows).fill(v) : v as Float64Array);
      const strs = (v: Val): (string | null)[] => Array.from({ length: rows }, (_, i) => strAt(v, i));
      switch (n.fn) {
        case 'min': case 'max': {
          // numpy.minimum/maximum: NaN wins
          const cols = args.map(col);
          const out = new Float64Array(rows);
          const first = cols[0]!;
          const second = cols[1];
          if (second) {
            if (n.fn === 'min') for (let i = 0; i < rows; i++) out[i] = Math.min(first[i]!, second[i]!);
            else for (let i = 0; i < rows; i++) out[i] = Math.max(first[i]!, second[i]!);
          } else out.set(first);
          for (const c of cols.slice(2)) {
            if (n.fn === 'min') for (let i = 0; i < rows; i++) out[i] = Math.min(out[i]!, c[i]!);
            else for (let i = 0; i < rows; i++) out[i] = Math.max(out[i]!, c[i]!);
          }
          return out;
        }
        case 'abs': {
          const x = col(args[0]!);
          const out = new Float64Array(rows);
          for (let i = 0; i < rows; i++) out[i] = Math.abs(x[i]!);
          return out;
        }
        case 'len': {
          const a = args[0]!;
          if (isFlatStrings(a)) return perString(a, pyLenAt, active);
          return typeof a === 'string' || Array.isArray(a) ? Float64Array.from(strs(a), (s) => (s === null ? NaN : pyLen(s))) : a;
        }
        case 'words': {
          const a = args[0]!;
          if (isFlatStrings(a)) return perString(a, pyWordCountAt, active);
          return Float64Array.from(strs(a), (s) => (s === null ? NaN : pyWordCount(s)));
        }
        case 'lower': return strs(args[0]!).map((s) => (s === null ? null : s.toLowerCase()));
        case 'is_null': {
          const a = args[0]!;
          if (isFlatStrings(a)) return a.valid ? a.valid.map((x) => 1 - x) : new Uint8Array(rows);
          return typeof a === 'object' ? Uint8Array.from(a as ArrayLike<unknown>, (x) => (x === null || (typeof x === 'number' && Number.isNaN(x)) ? 1 : 0)) : new Uint8Array(rows);
        }
        case 'contains': case 'startswith': case 'endswith': {
          const needle = n.args[1]!.k === 'str' ? (n.args[1] as { v: string }).v : '';
          const test = n.fn === 'contains' ? (s: string) => s.includes(needle) : n.fn === 'startswith' ? (s: string) => s.startsWith(needle) : (s: string) => s.endsWith(needle);
          return Uint8Array.from(strs(args[0]!), (s) => (s !== null && test(s) ? 1 : 0));
        }
        case '~': return Uint8Array.from(strs(args[0]!), (s) => (s !== null && n.re!.test(s) ? 1 : 0));
        case 'lang': {
          const texts = args[0]!;
          const ask: number[] = [];
          for (let i = 0; i < rows; i++) if (strAt(texts, i) !== null && (!active || active[i])) ask.push(i);
          const labels = await detector!.detect(ask.map((i) => strAt(texts, i)!));
          const out: (string | null)[] = new Array(rows).fill(null);
          ask.forEach((r, k) => (out[r] = labels[k]!));
          return out;
        }
      }
    }
  }
  throw new Error('unreachable');
}

function toMask(v: Val, rows: number): Uint8Array {
  return typeof v === 'boolean' ? new Uint8Array(rows).fill(v ? 1 : 0) : v as Uint8Array;
}

function numeric(op: string, a: Float64Array | number, b: Float64Array | number, rows: number): Float64Array | Uint8Array {
  const arith = ['+', '-', '*', '/', '%'].includes(op);
  if (!arith && typeof a !== 'number' && typeof b === 'number') return compareScalar(op, a, b, rows);
  const A = typeof a === 'number' ? new Float64Array(rows).fill(a) : a;
  const B = typeof b === 'number' ? new Float64Array(rows).fill(b) : b;
  const out = arith ? new Float64Array(rows) : new Uint8Array(rows);
  // one loop per operator, so each is a tight loop
  switch (op) {
    case '+': for (let i = 0; i < rows; i++) out[i] = A[i]! + B[i]!; break;
    case '-': for (let i = 0; i < rows; i++) out[i] = A[i]! - B[i]!; break;
    case '*': for (let i = 0; i < rows; i++) out[i] = A[i]! * B[i]!; break;
    case '/': for (let i = 0; i < rows; i++) out[i] = A[i]! / B[i]!; break;
    case '%': for (let i = 0; i < rows; i++) out[i] = A[i]! - Math.floor(A[i]! / B[i]!) * B[i]!; break; // Python's modulo
    case '==': for (let i = 0; i < rows; i++) out[i] = A[i]! === B[i]! ? 1 : 0; break;
    case '!=': for (let i = 0; i < rows; i++) out[i] = A[i]! !== B[i]! ? 1 : 0; break;
    case '<': for (let i = 0; i < rows; i++) out[i] = A[i]! < B[i]! ? 1 : 0; break;
    case '<=': for (let i = 0; i < rows; i++) out[i] = A[i]! <= B[i]! ? 1 : 0; break;
    case '>': for (let i = 0; i < rows; i++) out[i] = A[i]! > B[i]! ? 1 : 0; break;
    case '>=': for (let i = 0; i < rows; i++) out[i] = A[i]! >= B[i]! ? 1 : 0; break;
  }
  return out;
}

/** A column against a number (the usual `score >= 0.3`), without spreading the number into a column. */
function compareScalar(op: string, A: Float64Array, y: number, rows: number): Uint8Array {
  const out = new Uint8Array(rows);
  switch (op) {
    case '==': for (let i = 0; i < rows; i++) out[i] = A[i]! === y ? 1 : 0; break;
    case '!=': for (let i = 0; i < rows; i++) out[i] = A[i]! !== y ? 1 : 0; break;
    case '<': for (let i = 0; i < rows; i++) out[i] = A[i]! < y ? 1 : 0; break;
    case '<=': for (let i = 0; i < rows; i++) out[i] = A[i]! <= y ? 1 : 0; break;
    case '>': for (let i = 0; i < rows; i++) out[i] = A[i]! > y ? 1 : 0; break;
    case '>=': for (let i = 0; i < rows; i++) out[i] = A[i]! >= y ? 1 : 0; break;
  }
  return out;
}
