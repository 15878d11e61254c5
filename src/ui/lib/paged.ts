/**
 * What the virtualised views (Grid, GroupsView) share: a long list fetched from a worker a page at a time, and
 * the viewport's size and scroll position.
 */

/**
 * Pages of a list asked for on demand, each once. `reset()` drops what was loaded (a new query) and makes the
 * answers to older requests stale, so a slow page of the old order never lands in the new one.
 */
export class PagedList<T> {
  private readonly pages = new Map<number, T[]>();
  private readonly pending = new Set<number>();
  private generation = 0;

  constructor(
    private readonly pageSize: number,
    private readonly fetchPage: (start: number, end: number) => Promise<T[]>,
    /** Called when a page arrives (the view bumps a counter its markup reads). */
    private readonly onArrive: () => void,
  ) {}

  at(pos: number): T | undefined {
    return this.pages.get(Math.floor(pos / this.pageSize))?.[pos % this.pageSize];
  }

  reset(): void {
    this.pages.clear();
    this.pending.clear();
    this.generation++;
  }

  /** Asks for the pages holding `positions` that are neither loaded nor on their way. */
  request(positions: readonly number[]): void {
    const generation = this.generation;
    for (const page of new Set(positions.map((p) => Math.floor(p / this.pageSize)))) {
      if (this.pages.has(page) || this.pending.has(page)) continue;
      this.pending.add(page);
      void this.fetchPage(page * this.pageSize, (page + 1) * this.pageSize).then((items) => {
        if (generation !== this.generation) return;
        this.pending.delete(page);
        this.pages.set(page, items);
        this.onArrive();
      });
    }
  }
}

/**
 * Follows an element's content size (ResizeObserver) and its scroll position (at most once per frame: scroll
 * events come faster than the views can re-render). Returns the function that stops both.
 */
export function trackViewport(el: HTMLElement, onSize: (width: number, height: number) => void, onScroll: (top: number) => void): () => void {
  const observer = new ResizeObserver(([entry]) => onSize(entry!.contentRect.width, entry!.contentRect.height));
  observer.observe(el);
  let frame = 0;
  const scrolled = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      onScroll(el.scrollTop);
    });
  };
  el.addEventListener('scroll', scrolled, { passive: true });
  return () => {
    observer.disconnect();
    el.removeEventListener('scroll', scrolled);
    if (frame) cancelAnimationFrame(frame);
  };
}
