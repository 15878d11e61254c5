/**
 * Local folders for the ingest (src/core/pool/local-source.ts): the files under a File System Access directory
 * handle, and the handle's read permission. Used by the ingest worker and by the page; a handle is stored with
 * its pool record in IndexedDB, so after a reload one permission prompt lets the ingest resume.
 * (TypeScript's DOM lib lacks the async iteration and permission parts of the API, hence the local types.)
 */
import type { LocalFile } from '../src/core/pool/local-source.ts';

interface DirectoryHandle extends FileSystemDirectoryHandle {
  values(): AsyncIterable<FileSystemHandle>;
}

interface PermissionHandle {
  queryPermission?(descriptor: { mode: 'read' }): Promise<PermissionState>;
  requestPermission?(descriptor: { mode: 'read' }): Promise<PermissionState>;
}

/**
 * How deep a pick is read: the accepted layouts put files at most 3 levels down (`small/metadata/x.parquet`),
 * so picking a large unrelated folder (a home directory) does not walk all of it.
 */
export const MAX_DEPTH = 3;

/** The files under `handle`, with paths relative to it (`metadata/x.parquet`); hidden entries are skipped. */
export async function filesOfDirectory(handle: FileSystemDirectoryHandle, depth = MAX_DEPTH, prefix = ''): Promise<LocalFile[]> {
  const out: LocalFile[] = [];
  for await (const entry of (handle as DirectoryHandle).values()) {
    if (entry.name.startsWith('.')) continue;
    if (entry.kind === 'file') out.push({ path: prefix + entry.name, blob: await (entry as FileSystemFileHandle).getFile() });
    else if (depth > 1) out.push(...(await filesOfDirectory(entry as FileSystemDirectoryHandle, depth - 1, `${prefix}${entry.name}/`)));
  }
  return out;
}

/** The read permission on a handle now ('granted', 'prompt' or 'denied'); 'granted' where the API has no query. */
export async function readPermission(handle: FileSystemHandle): Promise<PermissionState> {
  const h = handle as unknown as PermissionHandle;
  return h.queryPermission ? h.queryPermission({ mode: 'read' }) : 'granted';
}

/** Asks for read permission (in the page, on a click: browsers prompt only on a user gesture). */
export async function requestReadPermission(handle: FileSystemHandle): Promise<PermissionState> {
  const h = handle as unknown as PermissionHandle;
  if (!h.requestPermission) return readPermission(handle);
  return h.requestPermission({ mode: 'read' });
}

/** Files from an `<input type=file webkitdirectory>`: paths relative to the chosen folder, and its name. */
export function filesOfInput(list: readonly File[]): { name: string; files: LocalFile[] } {
  const rel = list.map((f) => f.webkitRelativePath || f.name);
  const first = rel[0]?.split('/')[0] ?? '';
  const top = rel[0]?.includes('/') && rel.every((p) => p.split('/')[0] === first) ? first : '';
  const files = list.map((blob, i) => ({ blob, path: top ? rel[i]!.slice(top.length + 1) : rel[i]! }));
  return { name: top || (list.length === 1 ? list[0]!.name : `${list.length} files`), files };
}

/** The files under a dropped folder entry (the older entry API), relative to it, to MAX_DEPTH levels. */
async function filesOfDirectoryEntry(dir: FileSystemDirectoryEntry, depth = MAX_DEPTH, prefix = ''): Promise<LocalFile[]> {
  const reader = dir.createReader();
  const out: LocalFile[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const e of batch) {
      if (e.name.startsWith('.')) continue;
      if (e.isFile) out.push({ path: prefix + e.name, blob: await new Promise<File>((resolve, reject) => (e as FileSystemFileEntry).file(resolve, reject)) });
      else if (e.isDirectory && depth > 1) out.push(...(await filesOfDirectoryEntry(e as FileSystemDirectoryEntry, depth - 1, `${prefix}${e.name}/`)));
    }
  }
  return out;
}

/**
 * What was dropped, as a pick: one folder is the pick itself (paths relative to it); several items (or loose
 * files) are the children of a pick named after their count.
 */
export async function filesOfDrop(entries: readonly FileSystemEntry[]): Promise<{ name: string; files: LocalFile[] }> {
  if (entries.length === 1 && entries[0]!.isDirectory) {
    return { name: entries[0]!.name, files: await filesOfDirectoryEntry(entries[0] as FileSystemDirectoryEntry) };
  }
  const files: LocalFile[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isFile) files.push({ path: e.name, blob: await new Promise<File>((resolve, reject) => (e as FileSystemFileEntry).file(resolve, reject)) });
    else if (e.isDirectory) files.push(...(await filesOfDirectoryEntry(e as FileSystemDirectoryEntry, MAX_DEPTH - 1, `${e.name}/`)));
  }
  return { name: `${entries.length} dropped items`, files };
}
