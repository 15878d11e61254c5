/**
 * `dcw uids encode|decode`: between a text list of hex uids (one per line) and the subset file the official
 * scripts use (np.save of a sorted [('f0','<u8'),('f1','<u8')] array, duplicates kept as repeats).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { countDistinctSorted, decodeSubsetWords, encodeSubsetWords, formatUidText, isSortedWords, parseUidText, sortUidWords, uidCount } from '../../../src/core/formats/uid.ts';
import { writeFileAtomic } from '../../io/streams.ts';

async function readInput(path: string): Promise<Uint8Array> {
  if (path !== '-') return new Uint8Array(await readFile(path));
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

export function registerUids(program: Command): void {
  const uids = program.command('uids').description('convert between hex uid lists and subset .npy files');

  uids
    .command('encode')
    .description('one 32-hex uid per line → subset .npy, byte-identical to the official np.save (sorted, duplicates kept)')
    .requiredOption('--in <file>', "text file of uids, one per line ('-' for stdin)")
    .requiredOption('--out <file>', 'subset file to write (.npy)')
    .action(async (opts: { in: string; out: string }) => {
      const words = parseUidText(await readInput(opts.in), opts.in === '-' ? 'stdin' : opts.in);
      const sorted = sortUidWords(words);
      await writeFileAtomic(opts.out, encodeSubsetWords(sorted, { sorted: true }));
      const n = uidCount(sorted);
      console.error(`wrote ${n} uids (${countDistinctSorted(sorted)} distinct) to ${opts.out}`);
    });

  uids
    .command('decode')
    .description('subset .npy (or raw headerless u8,u8 records) → sorted hex uids, one per line')
    .argument('<subset>', 'subset file')
    .option('--out <file>', 'write the list to a file instead of stdout')
    .action(async (subset: string, opts: { out?: string }) => {
      let words = decodeSubsetWords(new Uint8Array(await readFile(subset)), subset);
      if (!isSortedWords(words)) words = sortUidWords(words);
      const text = formatUidText(words);
      if (opts.out) await writeFileAtomic(opts.out, text);
      else await new Promise<void>((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())));
    });
}
