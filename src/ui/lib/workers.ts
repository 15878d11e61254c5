/** The page's two workers, started on first use: ingest (writes IndexedDB) and the Inspect table (reads it). */
import * as Comlink from 'comlink';
import type { IngestWorkerApi } from '../../../workers/ingest.worker.ts';
import type { TableWorkerApi } from '../../../workers/table.worker.ts';

let ingest: Comlink.Remote<IngestWorkerApi> | undefined;
let table: Comlink.Remote<TableWorkerApi> | undefined;

export function ingestWorker(): Comlink.Remote<IngestWorkerApi> {
  ingest ??= Comlink.wrap<IngestWorkerApi>(new Worker(new URL('../../../workers/ingest.worker.ts', import.meta.url), { type: 'module', name: 'dcw-ingest' }));
  return ingest;
}

export function tableWorker(): Comlink.Remote<TableWorkerApi> {
  table ??= Comlink.wrap<TableWorkerApi>(new Worker(new URL('../../../workers/table.worker.ts', import.meta.url), { type: 'module', name: 'dcw-table' }));
  return table;
}
