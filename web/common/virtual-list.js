// A virtualized list for tens of thousands of rows: only the rows in view (plus a margin) exist
// in the DOM, row elements are reused, and rows are fetched a page at a time as they come into
// view. Exports only (see dom.js).

const OVERSCAN_ROWS = 8;

/**
 * new VirtualList(container, {rowHeight, pageSize, fetchPage(offset, limit, signal) ->
 *   {total, items}, renderRow(element, item, index), createRow()})
 * Call `reset()` when the query changes: pages fetched for an older query are ignored.
 */
export class VirtualList {
  constructor(container, { rowHeight = 44, pageSize = 200, fetchPage, renderRow, createRow }) {
    this.rowHeight = rowHeight;
    this.pageSize = pageSize;
    this.fetchPage = fetchPage;
    this.renderRow = renderRow;
    this.createRow = createRow;
    this.total = 0;
    this.generation = 0;
    this.pages = new Map(); // page number -> items (or a Promise while loading)
    this.pool = [];
    this.onTotal = null;
    this.onError = null;

    this.viewport = document.createElement("div");
    this.viewport.className = "ms-vlist";
    this.viewport.setAttribute("role", "list");
    this.spacer = document.createElement("div");
    this.spacer.className = "ms-vlist-spacer";
    this.viewport.append(this.spacer);
    container.append(this.viewport);
    this._frame = 0;
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    this._resize = new ResizeObserver(() => this.schedule());
    this._resize.observe(this.viewport);
  }

  /** Forget every row and load from the top (a new query). Returns the first page's promise. */
  reset({ keepScroll = false } = {}) {
    this.generation += 1;
    this._abort?.abort();
    this._abort = new AbortController();
    this.pages.clear();
    if (!keepScroll) this.viewport.scrollTop = 0;
    return this.load(Math.floor(this.viewport.scrollTop / this.rowHeight / this.pageSize));
  }

  /** Fetch page `page` for the current generation, unless it is loaded or loading. */
  load(page) {
    if (this.pages.has(page)) return this.pages.get(page);
    const generation = this.generation;
    const promise = this.fetchPage(page * this.pageSize, this.pageSize, this._abort?.signal).then(
      (result) => {
        if (generation !== this.generation) return; // an answer to an older query
        this.pages.set(page, result.items);
        this.setTotal(result.total);
        this.schedule();
      },
      (error) => {
        if (generation === this.generation) this.pages.delete(page);
        if (error?.name !== "AbortError") this.onError?.(error);
      },
    );
    this.pages.set(page, promise);
    return promise;
  }

  setTotal(total) {
    if (total === this.total && this.spacer.style.height) return;
    this.total = total;
    this.spacer.style.height = `${total * this.rowHeight}px`;
    this.onTotal?.(total);
  }

  item(index) {
    const page = this.pages.get(Math.floor(index / this.pageSize));
    return Array.isArray(page) ? page[index % this.pageSize] : undefined;
  }

  schedule() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.render();
    });
  }

  /** Place the rows in view; ask for missing pages. */
  render() {
    // No more than the window shows: before the page's styles apply, the list is as tall as
    // its spacer (every row), and rows made for that would stay in the DOM.
    const height = Math.min(this.viewport.clientHeight || 600, window.innerHeight || 600);
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / this.rowHeight) - OVERSCAN_ROWS);
    const last = Math.min(
      this.total - 1,
      Math.ceil((this.viewport.scrollTop + height) / this.rowHeight) + OVERSCAN_ROWS,
    );
    const wanted = last >= first ? last - first + 1 : 0;
    while (this.pool.length < wanted) {
      const row = this.createRow();
      row.classList.add("ms-vlist-row");
      row.style.height = `${this.rowHeight}px`;
      this.viewport.append(row);
      this.pool.push(row);
    }
    while (this.pool.length > wanted + 2 * OVERSCAN_ROWS) this.pool.pop().remove(); // after a resize
    for (let i = 0; i < this.pool.length; i += 1) {
      const row = this.pool[i];
      if (i >= wanted) {
        // Out of use: hidden, and holding no item (it must not open or drag a stale model).
        if (!row.hidden) this.renderRow(row, null, -1);
        row.hidden = true;
        delete row.dataset.index;
        continue;
      }
      const index = first + i;
      const item = this.item(index);
      row.hidden = false;
      row.style.transform = `translateY(${index * this.rowHeight}px)`;
      row.dataset.index = String(index);
      if (item === undefined) {
        this.load(Math.floor(index / this.pageSize));
        row.classList.add("ms-loading");
        this.renderRow(row, null, index);
      } else {
        row.classList.remove("ms-loading");
        this.renderRow(row, item, index);
      }
    }
  }

  /** Items currently loaded (for tests and the drawer). */
  visibleItems() {
    return this.pool.filter((r) => !r.hidden && r.dataset.id).map((r) => r.dataset.id);
  }

  destroy() {
    this._resize.disconnect();
    this._abort?.abort();
    cancelAnimationFrame(this._frame);
    this.viewport.remove();
  }
}
