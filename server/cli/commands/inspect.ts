/**
 * `dcw inspect FILE`: what is in any file the workbench reads — webdataset tars, npy/npz (subset files
 * included), parquet. The kind is told from the file's magic bytes, not its name, so a misnamed file is
 * still described (and a garbage one is refused with one line naming it).
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { FormatError } from '../../../src/core/formats/errors.ts';
import { formatNpySummary, readNpyHeader, summarizeNpy } from '../../../src/core/formats/npy.ts';
import { formatNpzSummary, summarizeNpz } from '../../../src/core/formats/npz.ts';
import { parquetSchemaSummary } from '../../../src/core/formats/parquet.ts';
import { readSafetensors } from '../../../src/core/model/safetensors.ts';
import { formatSubsetSummary, summarizeSubset } from '../../../src/core/formats/uid.ts';
import { describeTar } from '../../../src/core/formats/webdataset.ts';
import { openRangedFile } from '../../io/ranged-file.ts';
import { fileReadStream } from '../../io/streams.ts';
import { formatBytes } from '../progress.ts';

export type FileKind = 'tar' | 'npy' | 'npz' | 'parquet' | 'raw-subset' | 'safetensors';

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
const startsWith = (bytes: Uint8Array, magic: number[]) => magic.every((b, i) => bytes[i] === b);

/** Tells the kind of file from its first bytes (and, for headerless subsets, its name and size). */
export function sniffKind(head: Uint8Array, name: string, size: number): FileKind | undefined {
  if (startsWith(head, NPY_MAGIC)) return 'npy';
  if (startsWith(head, [0x50, 0x41, 0x52, 0x31])) return 'parquet'; // PAR1
  if (startsWith(head, [0x50, 0x4b])) return 'npz'; // PK zip
  // ustar magic at offset 257 ("ustar\0" POSIX, "ustar " GNU)
  if (head.length >= 262 && String.fromCharCode(...head.subarray(257, 262)) === 'ustar') return 'tar';
  if (name.endsWith('.tar')) return 'tar'; // v7 tars have no magic; the reader checks the checksums
  if (name.endsWith('.npy') && size % 16 === 0) return 'raw-subset';
  // safetensors has no magic: an 8-byte header length, then a JSON object
  if (name.endsWith('.safetensors') || (head.length > 9 && head[8] === 0x7b)) return 'safetensors';
  return undefined;
}

export async function inspectFile(path: string): Promise<string> {
  const info = await stat(path);
  if (!info.isFile()) throw new FormatError(path, 'not a regular file');
  const file = await openRangedFile(path);
  try {
    const head = await file.slice(0, 64 * 1024);
    const kind = sniffKind(head, basename(path), info.size);
    const header = `${path}  ${formatBytes(info.size)}`;
    switch (kind) {
      case 'tar': {
        const s = await describeTar(fileReadStream(path), path);
        const kinds = Object.entries(s.kinds).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(', ');
        const lines = [`${header}  tar: ${s.members} members (${kinds}), ${formatBytes(s.fileBytes)} of file data`];
        lines.push(`  webdataset samples: ${s.samples}${s.filesOutsideSamples ? `  (${s.filesOutsideSamples} files outside samples)` : ''}`);
        for (const e of s.extensions) lines.push(`  .${e.ext.padEnd(8)} ${String(e.members).padStart(8)} members  ${formatBytes(e.bytes)}`);
        return lines.join('\n');
      }
      case 'npy': {
        const h = readNpyHeader(head, path, { fileSize: info.size });
        if (h.dtype === 'u8,u8') {
          const subset = summarizeSubset(await file.slice(0, info.size), path);
          return `${header}  ${formatSubsetSummary(subset)}`;
        }
        return `${header}  ${formatNpySummary(summarizeNpy(head, path, { fileSize: info.size }))}`;
      }
      case 'raw-subset':
        return `${header}  ${formatSubsetSummary(summarizeSubset(await file.slice(0, info.size), path))}`;
      case 'npz':
        return `${header}  npz\n${formatNpzSummary(summarizeNpz(await file.slice(0, info.size), path)).replace(/^/gm, '  ')}`;
      case 'parquet': {
        const s = await parquetSchemaSummary(file, path);
        const lines = [`${header}  parquet: ${s.rows} rows in ${s.rowGroups.length} row groups, ${s.codecs.join('/') || 'uncompressed'}${s.createdBy ? `, written by ${s.createdBy}` : ''}`];
        const width = Math.max(...s.columns.map((c) => c.name.length));
        for (const c of s.columns) {
          lines.push(`  ${c.name.padEnd(width)}  ${c.arrowType.padEnd(22)} ${c.parquetType}${c.nullable ? '' : ' NOT NULL'}${c.problem ? `  (${c.problem})` : ''}`);
        }
        return lines.join('\n');
      }
      case 'safetensors': {
        const { tensors, metadata } = readSafetensors(await file.slice(0, info.size), path);
        let params = 0;
        const lines = [`${header}  safetensors: ${tensors.size} tensors${Object.keys(metadata).length ? `, metadata ${JSON.stringify(metadata)}` : ''}`];
        const width = Math.max(0, ...[...tensors.keys()].map((k) => k.length));
        for (const [name, t] of tensors) {
          params += t.shape.reduce((a, b) => a * b, 1);
          lines.push(`  ${name.padEnd(width)}  ${t.dtype.padEnd(4)} [${t.shape.join(', ')}]`);
        }
        lines.push(`  ${params.toLocaleString('en-US')} parameters`);
        return lines.join('\n');
      }
      default:
        throw new FormatError(path, 'not a file dcw knows (tar, npy, npz, parquet, safetensors)');
    }
  } finally {
    await file.close();
  }
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('summarise any supported file: tar/webdataset, npy, npz, subset, parquet, safetensors')
    .argument('<files...>', 'files to describe')
    .action(async (files: string[]) => {
      for (const path of files) console.log(await inspectFile(path));
    });
}
