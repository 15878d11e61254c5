/**
 * JSON exactly as Python's `json.dumps(obj)` writes it with default arguments (what DataComp's evaluate.py
 * writes to eval_results.jsonl), and a reader that accepts what `json.loads` accepts.
 *
 * json.dumps defaults: separators ", " and ": ", ensure_ascii=True (every non-ASCII character as \uXXXX,
 * astral ones as a surrogate pair, lowercase hex), allow_nan=True (NaN, Infinity, -Infinity), floats
 * as `float.__repr__`, ints as decimal integers, dicts in insertion order.
 *
 * Python distinguishes 1 (int) from 1.0 (float); JavaScript does not. Here a `number` is always a Python
 * float and a `bigint` is a Python int. Objects are dicts in key order; note that JavaScript puts
 * integer-like keys ("0", "12") first in an object — pass a Map where such keys must keep their place.
 */

export type PyJson = null | boolean | number | bigint | string | PyJson[] | { [key: string]: PyJson } | Map<string, PyJson>;

/**
 * `repr(x)` of a Python float: the shortest digits that round-trip (JavaScript's Number→string finds the
 * same digits), written in positional form when the decimal exponent is in [-4, 16), else as d.ddde±XX.
 */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const exp = Number(exponent);
  // Python's float_repr_style 'short': decpt = exp + 1; exponent form when decpt <= -4 or decpt > 16
  const decpt = exp + 1;
  let body: string;
  if (decpt <= -4 || decpt > 16) {
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : '';
    body = `${digits[0]}${frac}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  } else if (decpt <= 0) {
    body = `0.${'0'.repeat(-decpt)}${digits}`;
  } else if (decpt >= digits.length) {
    body = `${digits}${'0'.repeat(decpt - digits.length)}.0`;
  } else {
    body = `${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  }
  return x < 0 ? `-${body}` : body;
}

/** json.dumps of a float: repr, except NaN / Infinity / -Infinity. */
function floatToJson(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  return pyFloatRepr(x);
}

const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/** json.dumps of a str with ensure_ascii=True. */
export function pyJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    const code = s.charCodeAt(i);
    const esc = ESCAPES[ch];
    if (esc) out += esc;
    else if (code >= 0x20 && code <= 0x7e) out += ch;
    // UTF-16 code units are exactly the \uXXXX units Python writes (a surrogate pair for astral characters)
    else out += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return `${out}"`;
}

/** `json.dumps(value)` with Python's default arguments. */
export function pyJsonDumps(value: PyJson): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return floatToJson(value);
    case 'bigint':
      return value.toString();
    case 'string':
      return pyJsonString(value);
    default:
      break;
  }
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(', ')}]`;
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  return `{${entries.map(([k, v]) => `${pyJsonString(k)}: ${pyJsonDumps(v)}`).join(', ')}}`;
}

/**
 * `json.loads`: standard JSON plus the NaN / Infinity / -Infinity tokens Python writes. Numbers come back as
 * JavaScript numbers (int or float alike). Throws a SyntaxError naming the offset of the first problem.
 * With `{ pyTypes: true }` the value keeps what Python would hold, so that pyJsonDumps writes it back as
 * `json.dumps(json.loads(text))` does: ints as bigint, floats as number, dicts as Maps (key order as read;
 * a repeated key keeps its first place and its last value, as a dict does).
 */
export function pyJsonLoads(text: string, options: { pyTypes?: boolean } = {}): unknown {
  const pyTypes = options.pyTypes === true;
  let pos = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at offset ${pos}`);
  };
  const ws = () => {
    while (pos < text.length && (text[pos] === ' ' || text[pos] === '\t' || text[pos] === '\n' || text[pos] === '\r')) pos++;
  };
  const literal = (word: string, value: unknown) => {
    if (text.startsWith(word, pos)) {
      pos += word.length;
      return value;
    }
    return fail('unexpected token');
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const parseValue = (depth: number): unknown => {
    if (depth > 1000) fail('nesting too deep');
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const obj: Record<string, unknown> | Map<string, unknown> = pyTypes ? new Map() : {};
      const put = (key: string, value: unknown) => (obj instanceof Map ? obj.set(key, value) : (obj[key] = value));
      ws();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected a string key');
        const key = parseString();
        ws();
        if (text[pos] !== ':') fail("expected ':'");
        pos++;
        put(key, parseValue(depth + 1));
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      pos++;
      const arr: unknown[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    if (c === 'N') return literal('NaN', NaN);
    if (c === 'I') return literal('Infinity', Infinity);
    if (c === '-' && text.startsWith('-Infinity', pos)) return literal('-Infinity', -Infinity);
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) return fail('unexpected token');
    pos += m[0].length;
    return pyTypes && /^-?\d+$/.test(m[0]) ? BigInt(m[0]) : Number(m[0]);
  };
  const parseString = (): string => {
    const start = pos;
    pos++;
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const ch = text.charCodeAt(pos);
      if (ch === 0x22) break;
      if (ch === 0x5c) pos += 2;
      else if (ch < 0x20) fail('control character in a string');
      else pos++;
    }
    pos++;
    // the string body is plain JSON now (no NaN tokens inside strings): let JSON.parse decode the escapes
    return JSON.parse(text.slice(start, pos)) as string;
  };
  const value = parseValue(0);
  ws();
  if (pos !== text.length) fail('extra data');
  return value;
}
