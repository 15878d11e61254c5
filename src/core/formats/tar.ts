/**
 * Streaming tar: a reader that turns a web ReadableStream into members one at a time, and a writer that
 * produces the USTAR bytes webdataset's TarWriter (Python tarfile, USTAR format) writes.
 *
 * Reader, what it accepts:
 * - USTAR (name + prefix), POSIX pax extended ('x') and global ('g') headers (path, linkpath, size, mtime,
 *   uid, gid, uname, gname), GNU long names and link names (type 'L'/'K', "././@LongLink"), GNU base-256
 *   numbers, old v7 headers (no magic). GNU sparse members are refused rather than returned wrong.
 * - The end: the archive ends at the first zero block. Like GNU tar it tolerates a missing second zero
 *   block and a stream that ends at a header boundary without any end marker (`requireEndMarker`
 *   makes both an error). Unlike GNU tar, which only warns, a single zero block followed by more
 *   non-zero data is an error: it is a damaged archive, and reading on or stopping would both guess.
 *   Whatever follows the end marker (record padding, concatenated archives) is not read.
 * - Every header checksum is verified; every numeric field must be octal (or base-256); every size is
 *   checked against what the stream really holds ("truncated" otherwise).
 * - Member names are never handed on if unsafe: absolute paths, ".." components, NUL bytes, invalid
 *   UTF-8, and links whose target leaves the archive are FormatErrors naming the archive and member.
 *
 * Memory: one header block, at most `maxHeaderBytes` of pending pax/long-name data, and a member body
 * only when the caller asks for it with `bytes()` (refused over `maxMemberBytes`); `chunks()` streams a
 * body of any size, and an unread body is skipped without being buffered.
 */
import { FormatError } from './errors.ts';

export type TarMemberType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarReadOptions {
  /** Largest body `bytes()` will buffer; bigger members must be read with `chunks()`. Default 1 GiB. */
  maxMemberBytes?: number;
  /** Largest pax or GNU long-name header body. Default 1 MiB. */
  maxHeaderBytes?: number;
  /** Require the zero-block end marker instead of accepting EOF at a member boundary. Default false. */
  requireEndMarker?: boolean;
}

export const DEFAULT_MAX_MEMBER_BYTES = 1024 ** 3;
export const DEFAULT_MAX_HEADER_BYTES = 1024 ** 2;

export interface TarMemberInfo {
  readonly path: string;
  readonly type: TarMemberType;
  /** The raw typeflag character ('0', '5', 'x'…; '\0' for old regular files). */
  readonly typeflag: string;
  /** Bytes of body that follow the header (0 for directories and links). */
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch; fractional when a pax header says so. */
  readonly mtime: number;
  readonly uname: string;
  readonly gname: string;
  /** Target of a symlink or hard link, '' otherwise. */
  readonly linkpath: string;
  /** Offset of the member's (first) header in the stream. */
  readonly offset: number;
}

export interface TarMember extends TarMemberInfo {
  /** The whole body, at most `maxMemberBytes`. Call it, or `chunks()`, once, before moving to the next member. */
  bytes(): Promise<Uint8Array>;
  /**
   * The body as it arrives, without buffering. The chunks are views into the stream's own chunks: copy
   * what you keep if the stream's source reuses its buffers.
   */
  chunks(): AsyncGenerator<Uint8Array, void, undefined>;
}

const BLOCK = 512;
const EMPTY = new Uint8Array(0);
/** bytes() allocates at most this much ahead of the data that really arrived, whatever a header claims. */
const GROW_STEP = 8 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8');
const latin1 = new TextDecoder('latin1');
const encoder = new TextEncoder();

/** Pulls bytes from a stream reader in the amounts the tar parser asks for. */
class ByteSource {
  private pending: Uint8Array = EMPTY;
  private ended = false;
  /** Bytes handed out so far = the stream offset of the next byte. */
  offset = 0;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  private async fill(): Promise<boolean> {
    while (this.pending.length === 0) {
      if (this.ended) return false;
      const { done, value } = await this.reader.read();
      if (done) {
        this.ended = true;
        return false;
      }
      if (!(value instanceof Uint8Array)) throw new TypeError('tar reader: the stream must yield Uint8Array chunks');
      this.pending = value;
    }
    return true;
  }

  /** Up to `max` bytes as a view (no copy); empty only at the end of the stream. */
  async take(max: number): Promise<Uint8Array> {
    if (!(await this.fill())) return EMPTY;
    const n = Math.min(max, this.pending.length);
    const out = this.pending.subarray(0, n);
    this.pending = this.pending.subarray(n);
    this.offset += n;
    return out;
  }

  /** Fills `out` unless the stream ends first; returns how many bytes it copied. */
  async readInto(out: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < out.length) {
      const part = await this.take(out.length - filled);
      if (!part.length) break;
      out.set(part, filled);
      filled += part.length;
    }
    return filled;
  }

  /** Discards up to `n` bytes; returns how many there were. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const part = await this.take(left);
      if (!part.length) break;
      left -= part.length;
    }
    return n - left;
  }

  /** Lets go of the stream, cancelling it if unread data remains (so a file handle behind it closes). */
  async close(): Promise<void> {
    try {
      if (!this.ended) await this.reader.cancel();
    } catch {
      // The stream already failed; its error has been reported through read().
    } finally {
      this.reader.releaseLock();
    }
  }
}

const blockPadding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;
/** The pax values of a member that has none (most members). */
const NO_PAX: ReadonlyMap<string, string> = new Map();

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** The bytes of a NUL-terminated header field. */
function fieldBytes(block: Uint8Array, at: number, length: number): Uint8Array {
  const field = block.subarray(at, at + length);
  const nul = field.indexOf(0);
  return nul < 0 ? field : field.subarray(0, nul);
}

const show = (path: string): string => JSON.stringify(path);

/** Parses tar headers for one archive; every problem becomes a FormatError naming `archive`. */
class HeaderParser {
  constructor(readonly archive: string) {}

  fail(problem: string): FormatError {
    return new FormatError(this.archive, problem);
  }

  /**
   * A numeric field: octal digits with optional leading/trailing spaces and a NUL terminator (an empty
   * field reads as 0, as Python's tarfile reads it), or GNU base-256 when the top bit of the first byte is set.
   */
  number(block: Uint8Array, at: number, length: number, what: string, where: string): number {
    const first = block[at]!;
    if (first & 0x80) {
      if (first !== 0x80 && first !== 0xff) throw this.fail(`${where}: ${what} field is not a number`);
      let value = 0n;
      for (let i = 0; i < length; i++) value = (value << 8n) | BigInt(i === 0 ? first & 0x7f : block[at + i]!);
      if (first === 0xff) value -= 1n << BigInt(8 * length - 1);
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
        throw this.fail(`${where}: ${what} field is out of range`);
      }
      return Number(value);
    }
    // the field up to its NUL, without leading and trailing spaces, read digit by digit
    const stop = at + length;
    let end = at;
    while (end < stop && block[end] !== 0) end++;
    let from = at;
    while (from < end && block[from] === 0x20) from++;
    while (end > from && block[end - 1] === 0x20) end--;
    let value = 0;
    for (let i = from; i < end; i++) {
      const c = block[i]!;
      if (c < 0x30 || c > 0x37) throw this.fail(`${where}: ${what} field is not an octal number`);
      value = value * 8 + (c - 0x30);
    }
    if (!Number.isSafeInteger(value)) throw this.fail(`${where}: ${what} field is out of range`);
    return value;
  }

  verifyChecksum(block: Uint8Array, offset: number): void {
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) {
      const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
      unsigned += b;
      signed += b > 127 ? b - 256 : b;
    }
    let stored: number;
    try {
      stored = this.number(block, 148, 8, 'checksum', `header at offset ${offset}`);
    } catch {
      stored = -1;
    }
    // Some old tars summed signed bytes; GNU tar and Python accept either sum, and so do we.
    if (stored !== unsigned && stored !== signed) {
      throw this.fail(offset === 0 ? 'not a tar archive (bad header checksum at offset 0)' : `bad header checksum at offset ${offset}`);
    }
  }

  text(bytes: Uint8Array, what: string): string {
    try {
      return utf8.decode(bytes);
    } catch {
      throw this.fail(`${what} is not valid UTF-8`);
    }
  }

  /** The body of a GNU 'L'/'K' header: the name, NUL-terminated. A NUL inside the name is refused. */
  longName(body: Uint8Array, offset: number): string {
    let end = body.length;
    while (end > 0 && body[end - 1] === 0) end--;
    const name = body.subarray(0, end);
    if (name.includes(0)) throw this.fail(`GNU long name at offset ${offset} contains a NUL byte`);
    return this.text(name, `GNU long name at offset ${offset}`);
  }

  /** pax records: "LEN key=value\n", LEN counting the whole record in bytes. */
  pax(body: Uint8Array, offset: number, into: Map<string, string>): void {
    const where = `pax header at offset ${offset}`;
    let pos = 0;
    // Python's tarfile stops at a NUL where a record should start (some writers pad with NULs); so do we.
    while (pos < body.length && body[pos] !== 0) {
      let space = pos;
      while (space < body.length && space - pos < 20 && body[space] >= 0x30 && body[space]! <= 0x39) space++;
      if (space === pos || body[space] !== 0x20) throw this.fail(`${where}: malformed record length`);
      const digits = latin1.decode(body.subarray(pos, space));
      const length = Number(digits);
      const end = pos + length;
      if (length <= space - pos + 1 || end > body.length || body[end - 1] !== 0x0a) {
        throw this.fail(`${where}: record length ${digits} does not fit the header`);
      }
      const record = body.subarray(space + 1, end - 1);
      const eq = record.indexOf(0x3d);
      if (eq <= 0) throw this.fail(`${where}: record without a keyword`);
      const key = this.text(record.subarray(0, eq), `${where}: keyword`);
      const value = this.text(record.subarray(eq + 1), `${where}: value of ${key}`);
      if (key.startsWith('GNU.sparse.')) throw this.fail(`${where}: GNU sparse members are not supported`);
      into.set(key, value);
      pos = end;
    }
  }
}

/** Refuses names that could reach outside an extraction directory or be cut short by a C string. */
function checkMemberPath(parser: HeaderParser, path: string, offset: number): void {
  const where = `member ${show(path)} (header at offset ${offset})`;
  if (path === '') throw parser.fail(`member with an empty name at offset ${offset}`);
  if (path.includes('\0')) throw parser.fail(`${where}: name contains a NUL byte`);
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith('\\')) {
    throw parser.fail(`${where}: absolute path`);
  }
  // Backslash counts as a separator too: a Windows extractor would treat "..\\x" as a way out.
  if (path.split(/[\\/]/).includes('..')) throw parser.fail(`${where}: path with a ".." component`);
}

function checkLinkTarget(parser: HeaderParser, path: string, type: TarMemberType, target: string, offset: number): void {
  const where = `member ${show(path)} (header at offset ${offset})`;
  if (target === '') throw parser.fail(`${where}: ${type} without a target`);
  if (target.includes('\0')) throw parser.fail(`${where}: link target contains a NUL byte`);
  if (target.startsWith('/') || /^[A-Za-z]:[\\/]/.test(target) || target.startsWith('\\')) {
    throw parser.fail(`${where}: link target ${show(target)} is an absolute path`);
  }
  // A symlink resolves from its own folder, a hard link from the archive root; neither may climb above it.
  const parts = type === 'symlink' ? path.split(/[\\/]/).slice(0, -1) : [];
  let depth = parts.filter((p) => p !== '' && p !== '.').length;
  for (const part of target.split(/[\\/]/)) {
    if (part === '..') depth--;
    else if (part !== '' && part !== '.') depth++;
    if (depth < 0) throw parser.fail(`${where}: link target ${show(target)} leaves the archive`);
  }
}

function memberType(typeflag: string, path: string): TarMemberType {
  switch (typeflag) {
    case '0':
    case '7':
      return 'file';
    case '\0':
      // Pre-POSIX archives mark directories only by a trailing slash.
      return path.endsWith('/') ? 'directory' : 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '5':
      return 'directory';
    default:
      return 'other';
  }
}

/** Typeflags whose size field Python's tarfile ignores (it reads no body for them) while GNU tar skips a body. */
const BODILESS = new Set(['1', '2', '3', '4', '6']);

class Member implements TarMember {
  private consumed = 0;
  private claimed = false;
  private current = true;

  constructor(
    readonly info: TarMemberInfo,
    private readonly src: ByteSource,
    private readonly parser: HeaderParser,
    private readonly maxMemberBytes: number,
  ) {}

  get path() { return this.info.path; }
  get type() { return this.info.type; }
  get typeflag() { return this.info.typeflag; }
  get size() { return this.info.size; }
  get mode() { return this.info.mode; }
  get uid() { return this.info.uid; }
  get gid() { return this.info.gid; }
  get mtime() { return this.info.mtime; }
  get uname() { return this.info.uname; }
  get gname() { return this.info.gname; }
  get linkpath() { return this.info.linkpath; }
  get offset() { return this.info.offset; }

  private claim(): void {
    if (!this.current) throw new Error(`tar reader: the body of ${show(this.path)} was asked for after moving past it`);
    if (this.claimed) throw new Error(`tar reader: the body of ${show(this.path)} can be read only once`);
    this.claimed = true;
  }

  private truncated(): FormatError {
    return this.parser.fail(`truncated: member ${show(this.path)} declares ${this.size} bytes but the stream ends after ${this.consumed}`);
  }

  async bytes(): Promise<Uint8Array> {
    this.claim();
    if (this.size > this.maxMemberBytes) {
      throw this.parser.fail(
        `member ${show(this.path)} is ${this.size} bytes, over the ${this.maxMemberBytes}-byte limit for reading a member whole`,
      );
    }
    // Grow with the data that really arrives, so a lying size field cannot make us allocate it.
    let out = new Uint8Array(Math.min(this.size, GROW_STEP));
    let filled = 0;
    for await (const part of this.body()) {
      if (filled + part.length > out.length) {
        const grown = new Uint8Array(Math.min(this.size, Math.max(filled + part.length, out.length * 2)));
        grown.set(out.subarray(0, filled));
        out = grown;
      }
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  async *chunks(): AsyncGenerator<Uint8Array, void, undefined> {
    this.claim();
    yield* this.body();
  }

  private async *body(): AsyncGenerator<Uint8Array, void, undefined> {
    while (this.consumed < this.size) {
      if (!this.current) throw new Error(`tar reader: the body of ${show(this.path)} was read after moving past it`);
      const part = await this.src.take(this.size - this.consumed);
      if (!part.length) throw this.truncated();
      this.consumed += part.length;
      yield part;
    }
  }

  /** Skips what the caller left of the body, and the padding after it. */
  async finish(): Promise<void> {
    this.current = false;
    const left = this.size - this.consumed;
    if (left > 0) {
      this.consumed += await this.src.skip(left);
      if (this.consumed < this.size) throw this.truncated();
    }
    const pad = blockPadding(this.size);
    if ((await this.src.skip(pad)) < pad) throw this.parser.fail(`truncated: the stream ends inside the padding after ${show(this.path)}`);
  }

  detach(): void {
    this.current = false;
  }
}

/**
 * Reads the tar archive in `stream` member by member. `name` is how errors name the archive. Leaving the
 * loop early cancels the stream.
 */
export async function* readTar(
  stream: ReadableStream<Uint8Array>,
  name: string,
  options: TarReadOptions = {},
): AsyncGenerator<TarMember, void, undefined> {
  const maxMemberBytes = options.maxMemberBytes ?? DEFAULT_MAX_MEMBER_BYTES;
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const parser = new HeaderParser(name);
  const src = new ByteSource(stream.getReader());
  const block = new Uint8Array(BLOCK);
  // Extended headers that apply to the next member ('x', 'L', 'K') or to all later ones ('g').
  const globalPax = new Map<string, string>();
  let localPax: Map<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pendingSince = -1;
  let members = 0;
  let member: Member | undefined;

  const endWithoutMarker = (what: string): FormatError | undefined => {
    if (pendingSince >= 0) return parser.fail(`truncated: the extended header at offset ${pendingSince} has no member after it`);
    if (options.requireEndMarker) return parser.fail(`truncated: the archive ${what}, without the end-of-archive marker`);
    return undefined;
  };

  try {
    for (;;) {
      const offset = src.offset;
      const got = await src.readInto(block);
      if (got === 0) {
        if (offset === 0) throw parser.fail('empty stream, not a tar archive');
        const problem = endWithoutMarker(`ends after ${members} members`);
        if (problem) throw problem;
        return;
      }
      if (got < BLOCK) throw parser.fail(`truncated: the stream ends inside the header at offset ${offset}`);

      if (isZero(block)) {
        if (pendingSince >= 0) throw parser.fail(`the extended header at offset ${pendingSince} is followed by the end of the archive`);
        const next = await src.readInto(block);
        if (next === 0) {
          const problem = endWithoutMarker('ends after a single zero block');
          if (problem) throw problem;
          return;
        }
        if (!isZero(block.subarray(0, next))) {
          throw parser.fail(`a single zero block at offset ${offset} is followed by more data (damaged archive)`);
        }
        return;
      }

      parser.verifyChecksum(block, offset);
      const typeflag = String.fromCharCode(block[156]!);
      // magic "ustar\0" (POSIX; GNU's "ustar  " is not)
      const posix = block[257] === 0x75 && block[258] === 0x73 && block[259] === 0x74 && block[260] === 0x61 && block[261] === 0x72 && block[262] === 0;
      const rawName = fieldBytes(block, 0, 100);
      const rawPrefix = posix ? fieldBytes(block, 345, 155) : EMPTY;
      const headerWhere = `header at offset ${offset}`;

      if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
        const sizeField = parser.number(block, 124, 12, 'size', headerWhere);
        if (sizeField < 0) throw parser.fail(`${headerWhere}: negative size`);
        if (sizeField > maxHeaderBytes) {
          throw parser.fail(`${headerWhere}: extended header of ${sizeField} bytes, over the ${maxHeaderBytes}-byte limit`);
        }
        const body = new Uint8Array(sizeField);
        if ((await src.readInto(body)) < sizeField || (await src.skip(blockPadding(sizeField))) < blockPadding(sizeField)) {
          throw parser.fail(`truncated: the stream ends inside the extended header at offset ${offset}`);
        }
        if (pendingSince < 0 && typeflag !== 'g') pendingSince = offset;
        if (typeflag === 'x') {
          localPax ??= new Map();
          parser.pax(body, offset, localPax);
        } else if (typeflag === 'g') {
          parser.pax(body, offset, globalPax);
          let total = 0;
          for (const [k, v] of globalPax) total += k.length + v.length;
          if (total > maxHeaderBytes) throw parser.fail(`${headerWhere}: global pax headers exceed ${maxHeaderBytes} bytes`);
        } else if (typeflag === 'L') {
          longName = parser.longName(body, offset);
        } else {
          longLink = parser.longName(body, offset);
        }
        continue;
      }
      if (typeflag === 'S') throw parser.fail(`${headerWhere}: GNU sparse members are not supported`);

      let pax = NO_PAX;
      if (globalPax.size || localPax) {
        const merged = new Map(globalPax);
        for (const [k, v] of localPax ?? []) merged.set(k, v);
        pax = merged;
      }
      // An empty pax value means "no value": fall back to the header field.
      const paxValue = (key: string): string | undefined => (pax.get(key) ? pax.get(key) : undefined);

      let path = paxValue('path') ?? longName;
      if (path === undefined) {
        const joined = rawPrefix.length ? new Uint8Array([...rawPrefix, 0x2f, ...rawName]) : rawName;
        path = parser.text(joined, `member name at offset ${offset}`);
      }
      const where = `member ${show(path)} (header at offset ${offset})`;
      checkMemberPath(parser, path, offset);

      let size = parser.number(block, 124, 12, 'size', where);
      if (size < 0) throw parser.fail(`${where}: negative size`);
      const paxSize = paxValue('size');
      if (paxSize !== undefined) {
        if (!/^\d{1,16}$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) throw parser.fail(`${where}: pax size ${show(paxSize)} is not a size`);
        size = Number(paxSize);
      }
      const type = memberType(typeflag, path);
      if (BODILESS.has(typeflag) && size !== 0) {
        throw parser.fail(`${where}: a ${type === 'other' ? 'device or fifo' : type} with a body of ${size} bytes`);
      }
      if (type === 'directory') size = 0; // GNU tar and Python both ignore a directory's size field.
      let linkpath = '';
      if (type === 'symlink' || type === 'hardlink') {
        linkpath = paxValue('linkpath') ?? longLink ?? parser.text(fieldBytes(block, 157, 100), `link target of ${show(path)}`);
        checkLinkTarget(parser, path, type, linkpath, offset);
      }

      const numeric = (key: string, at: number, length: number, what: string): number => {
        const value = paxValue(key);
        if (value !== undefined && /^-?\d+(\.\d+)?$/.test(value) && Number.isFinite(Number(value))) return Number(value);
        return parser.number(block, at, length, what, where);
      };
      const info: TarMemberInfo = {
        path,
        type,
        typeflag,
        size,
        mode: parser.number(block, 100, 8, 'mode', where),
        uid: numeric('uid', 108, 8, 'uid'),
        gid: numeric('gid', 116, 8, 'gid'),
        mtime: numeric('mtime', 136, 12, 'mtime'),
        uname: paxValue('uname') ?? lenientUtf8.decode(fieldBytes(block, 265, 32)),
        gname: paxValue('gname') ?? lenientUtf8.decode(fieldBytes(block, 297, 32)),
        linkpath,
        offset: pendingSince >= 0 ? pendingSince : offset,
      };
      localPax = longName = longLink = undefined;
      pendingSince = -1;
      members++;
      member = new Member(info, src, parser, maxMemberBytes);
      yield member;
      await member.finish();
      member = undefined;
    }
  } finally {
    member?.detach();
    await src.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Writer

/** A body given as chunks, for members too large to hold in memory; the chunks must add up to `size`. */
export interface TarBody {
  size: number;
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export interface TarEntry {
  path: string;
  data: Uint8Array | TarBody;
  mode?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
}

export type TarEntryDefaults = Required<Pick<TarEntry, 'mode' | 'mtime' | 'uid' | 'gid' | 'uname' | 'gname'>>;

/**
 * What webdataset's TarWriter puts in every header (facts §1): mode 0o444, user and group "bigdata",
 * uid/gid 0. Its mtime is the wall clock unless given; ours is fixed at 0 so the same input gives the
 * same bytes.
 */
export const WEBDATASET_TAR_DEFAULTS: TarEntryDefaults = Object.freeze({
  mode: 0o444,
  mtime: 0,
  uid: 0,
  gid: 0,
  uname: 'bigdata',
  gname: 'bigdata',
});

/** Python's tarfile (and so webdataset) pads the archive to whole 10240-byte records, like `tar -b20`. */
const RECORD = 20 * BLOCK;
const MAX_OCTAL_12 = 8 ** 11; // 8 GiB: the first size that no longer fits the 12-byte field
const MAX_OCTAL_8 = 8 ** 7;
const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

function putText(block: Uint8Array, at: number, length: number, bytes: Uint8Array): void {
  block.set(bytes.subarray(0, length), at);
}

/** putText of a string's UTF-8 bytes; ASCII text (all the writer puts in a header) is copied without encoding. */
function putString(block: Uint8Array, at: number, length: number, text: string): void {
  if (!isAscii(text)) return putText(block, at, length, encoder.encode(text));
  const n = Math.min(length, text.length);
  for (let i = 0; i < n; i++) block[at + i] = text.charCodeAt(i);
}

function putOctal(block: Uint8Array, at: number, length: number, value: number): void {
  putString(block, at, length, value.toString(8).padStart(length - 1, '0'));
}

/** Python's tarfile USTAR split: the shortest prefix (at a '/') with prefix ≤ 155 and name ≤ 100 bytes. */
function splitUstarName(path: string): [prefix: string, name: string] | undefined {
  if (path.length <= 100) return ['', path];
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    const name = parts.slice(i).join('/');
    if (prefix.length <= 155 && name.length <= 100) return [prefix, name];
  }
  return undefined;
}

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  uname: string;
  gname: string;
}

/** One USTAR header block laid out as Python's tarfile writes it (devmajor/devminor left empty). */
function ustarBlock(f: UstarFields): Uint8Array {
  const block = new Uint8Array(BLOCK);
  putString(block, 0, 100, f.name);
  putOctal(block, 100, 8, f.mode & 0o7777);
  putOctal(block, 108, 8, f.uid);
  putOctal(block, 116, 8, f.gid);
  putOctal(block, 124, 12, f.size);
  putOctal(block, 136, 12, f.mtime);
  block.fill(0x20, 148, 156);
  block[156] = f.typeflag.charCodeAt(0);
  putString(block, 257, 8, 'ustar\x0000');
  putString(block, 265, 32, f.uname);
  putString(block, 297, 32, f.gname);
  putString(block, 345, 155, f.prefix);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  putString(block, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return block;
}

/** A pax record "LEN key=value\n" whose LEN counts its own digits. */
function paxRecord(key: string, value: string): Uint8Array {
  const body = encoder.encode(` ${key}=${value}\n`);
  let length = body.length;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  const digits = encoder.encode(String(length));
  const record = new Uint8Array(length);
  record.set(digits, 0);
  record.set(body, digits.length);
  return record;
}

function checkEntryPath(path: string): void {
  if (path === '' || path.includes('\0') || path.startsWith('/') || path.endsWith('/') || path.split('/').includes('..')) {
    throw new TypeError(`tar writer: refusing unsafe member path ${show(path)}`);
  }
}

/**
 * The header block(s) for a regular file of `size` bytes: one USTAR block, preceded by a pax 'x' header
 * when the path is not ASCII or does not fit name+prefix, or a number does not fit its octal field
 * (sizes ≥ 8 GiB among them). GNU tar and Python's tarfile read both without warnings.
 */
export function encodeTarHeader(entry: Omit<TarEntry, 'data'> & { size: number }, defaults: TarEntryDefaults = WEBDATASET_TAR_DEFAULTS): Uint8Array {
  checkEntryPath(entry.path);
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new TypeError(`tar writer: bad size ${entry.size} for ${show(entry.path)}`);
  const pax: [string, string][] = [];
  const split = isAscii(entry.path) ? splitUstarName(entry.path) : undefined;
  if (!split) pax.push(['path', entry.path]);
  const numeric = (key: string, value: number, limit: number): number => {
    if (Number.isInteger(value) && value >= 0 && value < limit) return value;
    pax.push([key, String(value)]);
    return 0;
  };
  const textField = (key: string, value: string): string => {
    if (isAscii(value) && value.length <= 32) return value;
    pax.push([key, value]);
    return '';
  };
  const mtime = entry.mtime ?? defaults.mtime;
  if (!Number.isFinite(mtime)) throw new TypeError(`tar writer: bad mtime ${mtime} for ${show(entry.path)}`);
  const wholeMtime = Math.floor(mtime);
  const mtimeField = wholeMtime >= 0 && wholeMtime < MAX_OCTAL_12 ? wholeMtime : 0;
  // pax carries what the octal field cannot: fractions, negative and far-future times.
  if (mtimeField !== mtime) pax.push(['mtime', Number.isInteger(mtime) ? String(mtime) : mtime.toFixed(9).replace(/0+$/, '')]);
  const fields: UstarFields = {
    // Like Python's pax writer: the USTAR name of a pax member is its path cut to 100 ASCII bytes.
    name: split ? split[1] : entry.path.replace(/[^\x00-\x7f]/g, '?').slice(0, 100),
    prefix: split ? split[0] : '',
    mode: entry.mode ?? defaults.mode,
    uid: numeric('uid', entry.uid ?? defaults.uid, MAX_OCTAL_8),
    gid: numeric('gid', entry.gid ?? defaults.gid, MAX_OCTAL_8),
    size: numeric('size', entry.size, MAX_OCTAL_12),
    mtime: mtimeField,
    typeflag: '0',
    uname: textField('uname', entry.uname ?? defaults.uname),
    gname: textField('gname', entry.gname ?? defaults.gname),
  };
  const header = ustarBlock(fields);
  if (!pax.length) return header;
  const records = pax.map(([k, v]) => paxRecord(k, v));
  const recordBytes = records.reduce((n, r) => n + r.length, 0);
  const paxHeader = ustarBlock({
    name: '././@PaxHeader', prefix: '', mode: 0, uid: 0, gid: 0, size: recordBytes, mtime: 0, typeflag: 'x', uname: '', gname: '',
  });
  const out = new Uint8Array(BLOCK + recordBytes + blockPadding(recordBytes) + BLOCK);
  out.set(paxHeader, 0);
  let at = BLOCK;
  for (const r of records) {
    out.set(r, at);
    at += r.length;
  }
  out.set(header, out.length - BLOCK);
  return out;
}

/** The zeros that pad a body of `size` bytes to whole blocks. */
export function tarPadding(size: number): Uint8Array {
  return new Uint8Array(blockPadding(size));
}

/** Two zero blocks, then zeros up to a whole 10240-byte record, for an archive of `written` bytes so far. */
export function tarEnd(written: number): Uint8Array {
  const total = written + 2 * BLOCK;
  return new Uint8Array(2 * BLOCK + ((RECORD - (total % RECORD)) % RECORD));
}

/** The chunks of one member: header(s), body, padding. */
async function* encodeMember(entry: TarEntry, defaults: TarEntryDefaults): AsyncGenerator<Uint8Array, void, undefined> {
  const { data } = entry;
  const size = data instanceof Uint8Array ? data.length : data.size;
  yield encodeTarHeader({ ...entry, size }, defaults);
  if (data instanceof Uint8Array) {
    if (data.length) yield data;
  } else {
    let written = 0;
    for await (const chunk of data.chunks) {
      written += chunk.length;
      if (written > size) break;
      if (chunk.length) yield chunk;
    }
    if (written !== size) throw new Error(`tar writer: the body of ${show(entry.path)} has ${written > size ? 'more' : 'fewer'} bytes than its size ${size}`);
  }
  if (blockPadding(size)) yield tarPadding(size);
}

/** The whole archive as chunks: every entry, then the end marker and record padding. */
export async function* encodeTar(
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
  defaults: TarEntryDefaults = WEBDATASET_TAR_DEFAULTS,
): AsyncGenerator<Uint8Array, void, undefined> {
  let written = 0;
  for await (const entry of entries) {
    for await (const chunk of encodeMember(entry, defaults)) {
      written += chunk.length;
      yield chunk;
    }
  }
  yield tarEnd(written);
}

/** A ReadableStream that pulls from an async iterator one chunk at a time (ReadableStream.from is not everywhere yet). */
export function streamFromIterator(chunks: AsyncIterator<Uint8Array> | AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = Symbol.asyncIterator in chunks ? chunks[Symbol.asyncIterator]() : chunks;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await it.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** The archive of `entries` as a stream, produced as fast as it is read. */
export function writeTar(
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
  defaults: TarEntryDefaults = WEBDATASET_TAR_DEFAULTS,
): ReadableStream<Uint8Array> {
  return streamFromIterator(encodeTar(entries, defaults));
}

/**
 * Push API: `add()` members, then `finish()`, while something reads `readable` (both wait for the reader
 * when it falls behind, so memory stays bounded). Entries' data is not copied: do not change it after add().
 */
export class TarWriter {
  readonly readable: ReadableStream<Uint8Array>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private written = 0;
  private finished = false;

  constructor(private readonly defaults: TarEntryDefaults = WEBDATASET_TAR_DEFAULTS) {
    const pipe = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 1024 * 1024, size: (chunk) => chunk.byteLength });
    this.readable = pipe.readable;
    this.writer = pipe.writable.getWriter();
  }

  private async push(chunk: Uint8Array): Promise<void> {
    await this.writer.ready;
    // Errors surface through `ready` and the reader; the per-chunk promise would only duplicate them.
    this.writer.write(chunk).catch(() => {});
    this.written += chunk.length;
  }

  async add(entry: TarEntry): Promise<void> {
    if (this.finished) throw new Error('tar writer: add() after finish()');
    for await (const chunk of encodeMember(entry, this.defaults)) await this.push(chunk);
  }

  /** Writes the end marker and closes `readable`; resolves once the reader has taken everything. */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.push(tarEnd(this.written));
    await this.writer.close();
  }

  /** Ends `readable` with an error, e.g. when the producer failed half-way. */
  async abort(reason?: unknown): Promise<void> {
    this.finished = true;
    await this.writer.abort(reason);
  }
}
