/**
 * The pictures a grid shows, as object URLs the table worker makes from the stored shards: each fetched once,
 * the oldest forgotten past `max` (the worker then frees their URLs), misses (null: not stored yet) forgotten on
 * demand so that pictures stored since are fetched again. Shared by the Inspect grid and the duplicate groups.
 */
import { tableWorker } from './workers.ts';

export class Thumbnails {
  private readonly urls = new Map<string, string | null>();
  private readonly pending = new Set<string>();
  private imagesVersion = 0;

  constructor(private readonly max: number) {}

  /** The picture's URL, null where the pool has none stored, undefined while unknown. */
  get(uid: string): string | null | undefined {
    return this.urls.get(uid);
  }

  /**
   * Forgets the misses when `imagesVersion` (bumped as more shards are stored) moved since the last call, so that
   * pictures stored since are asked for again.
   */
  forgetMissingSince(imagesVersion: number): void {
    if (imagesVersion === this.imagesVersion) return;
    this.imagesVersion = imagesVersion;
    for (const [uid, url] of this.urls) if (url === null) this.urls.delete(uid);
  }

  /** Fetches the pictures not yet known or asked for; resolves to whether any arrived. */
  async fetch(uids: Iterable<string>): Promise<boolean> {
    const want = [...uids].filter((uid) => !this.urls.has(uid) && !this.pending.has(uid));
    if (!want.length) return false;
    for (const uid of want) this.pending.add(uid);
    const got = await tableWorker().images(want);
    for (const g of got) {
      this.pending.delete(g.uid);
      this.urls.set(g.uid, g.url);
    }
    // the oldest first (a Map keeps insertion order)
    const released: string[] = [];
    for (const [uid, url] of this.urls) {
      if (this.urls.size <= this.max) break;
      if (url) released.push(url);
      this.urls.delete(uid);
    }
    if (released.length) void tableWorker().release(released);
    return true;
  }

  /** Frees every URL (the view is going away). */
  releaseAll(): void {
    void tableWorker().release([...this.urls.values()].filter((u): u is string => u !== null));
    this.urls.clear();
  }
}
