/**
 * `npm run bench:fuzz`: the long version of the readers' seeded mutation fuzzing (CI runs a few thousand
 * cases per reader with fixed seeds; this runs as many as you ask, by default 20,000 per reader).
 *   node --import tsx bench/fuzz.ts [--cases N] [--seed S] [--only tar,npy,...]
 * Prints a table (cases, accepted, rejected with FormatError, cases/s) and writes bench/out/fuzz.json.
 * Any exception other than a FormatError, or a case over its time limit, stops the run with the seed and case.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readImageSize } from '../src/core/formats/image.ts';
import { readNpy } from '../src/core/formats/npy.ts';
import { readNpz } from '../src/core/formats/npz.ts';
import { readParquet } from '../src/core/formats/parquet.ts';
import { readTar } from '../src/core/formats/tar.ts';
import { decodeSubsetWords, parseUidText } from '../src/core/formats/uid.ts';
import { readSamples } from '../src/core/formats/webdataset.ts';
import { SharpImageCodec } from '../server/io/image-codec.ts';
import { fuzzReader } from '../test/helpers/fuzz.ts';

const ROOT = resolve(import.meta.dirname, '..');
const FIX = join(ROOT, 'test/fixtures');
const { values: args } = parseArgs({
  options: { cases: { type: 'string', default: '20000' }, seed: { type: 'string', default: '1' }, only: { type: 'string' } },
});
const cases = Number(args.cases);
const seed = Number(args.seed);
const file = (...p: string[]) => new Uint8Array(readFileSync(join(FIX, ...p)));

function streamOf(bytes: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.subarray(at, (at += chunk)));
    },
  });
}

const codec = new SharpImageCodec();
const readers: Record<string, { seeds: Uint8Array[]; read: (b: Uint8Array) => Promise<unknown> | unknown; cases?: number }> = {
  tar: {
    seeds: ['gnu.tar', 'pax.tar', 'ustar.tar', 'shard.tar'].map((n) => file('tar', n)),
    read: async (b) => {
      for await (const m of readTar(streamOf(b, 509), 'fuzz.tar', { maxMemberBytes: 1 << 16 })) await m.bytes();
      for await (const s of readSamples(streamOf(b, 4096), 'fuzz.tar')) void s;
    },
  },
  npy: {
    seeds: ['f4_3x4.npy', 'f2_2x3x4.npy', 'i8_5.npy', 'be_f8_2x3x4.npy', 'fortran_i4_2x3x4.npy', 'v2_f4_3x4.npy', 'v3_f4_3x4.npy', 'b1_2x3x4.npy'].map((n) => file('numpy/npy', n)),
    read: (b) => readNpy(b, 'fuzz.npy', { float16: 'float32' }),
  },
  npz: {
    seeds: ['embeddings_f2_stored.npz', 'embeddings_f4_compressed.npz', 'positional_stored.npz'].map((n) => file('numpy/npz', n)),
    read: (b) => readNpz(b, 'fuzz.npz'),
  },
  subset: {
    seeds: ['uids_100.npy', 'uids_100.raw', 'uids_2dup.npy', 'uids_100_be.npy'].map((n) => file('numpy/uids', n)),
    read: (b) => decodeSubsetWords(b, 'fuzz.npy'),
  },
  'uid text': { seeds: [file('numpy/uids', 'uids_100.txt')], read: (b) => parseUidText(b, 'fuzz.txt') },
  parquet: {
    seeds: ['commonpool-50.snappy.parquet', 'commonpool-50.rowgroups.parquet', 'commonpool-50.gzip.parquet', 'commonpool-50.zstd.parquet', 'other-types.parquet'].map((n) => file('parquet', n)),
    read: async (b) => (await readParquet(b, 'fuzz.parquet')).toArray().length,
    cases: Math.ceil(cases / 4), // each case decodes a whole table
  },
  'image header': {
    seeds: ['photo-q95.jpg', 'photo-progressive.jpg', 'photo.png', 'palette.png', 'photo-lossless.webp', 'alpha.webp', 'pattern.gif'].map((n) => file('images', n)),
    read: (b) => readImageSize(b, 'fuzz'),
  },
  'image decode (sharp)': {
    seeds: ['photo-q95.jpg', 'photo.png', 'photo-q80.webp'].map((n) => file('images', n)),
    read: (b) => codec.decode(b, 'fuzz'),
    cases: Math.ceil(cases / 10),
  },
};

const only = args.only?.split(',');
const rows: { reader: string; cases: number; accepted: number; rejected: number; perSecond: number }[] = [];
for (const [name, r] of Object.entries(readers)) {
  if (only && !only.includes(name)) continue;
  const started = performance.now();
  const report = await fuzzReader(r.seeds, r.read, { seed, cases: r.cases ?? cases, perCaseMs: 5000 });
  const seconds = (performance.now() - started) / 1000;
  rows.push({ reader: name, ...report, perSecond: report.cases / seconds });
  console.error(`${name}: ${report.cases} cases in ${seconds.toFixed(1)} s`);
}

console.log('\n| reader | cases | accepted | rejected (FormatError) | cases/s |\n|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.reader} | ${r.cases} | ${r.accepted} | ${r.rejected} | ${r.perSecond.toFixed(0)} |`);
console.log('\nno reader threw anything but a FormatError, and no case hung.');
mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
writeFileSync(join(ROOT, 'bench/out/fuzz.json'), JSON.stringify({ seed, date: new Date().toISOString(), node: process.version, rows }, null, 2));
