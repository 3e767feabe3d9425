// The Gallery view (issue #12): every model as a card with its thumbnail, trust badge, base
// model, trigger words (with a copy button), a link to its page and "Update available"; a
// filter by base model and by name. The cards sit in rows of a virtual list, so 5,000 models
// keep only the rows in view in the DOM. Exports only (see ../common/dom.js).

import { addStylesheet, button, clear, el } from "../common/dom.js";
import { debounce } from "../common/sequence.js";
import { VirtualList } from "../common/virtual-list.js";
import { NOT_FETCHED, pageLink, triggerWords, trustBadge, updateButton } from "./model-metadata.js";

const CARD_WIDTH = 168;
const ROW_HEIGHT = 236;

export class ModelGridView {
  constructor(shared) {
    addStylesheet("./model-grid.css", import.meta.url);
    this.shared = shared;
    this.client = shared.client;
    this.state = shared.state.grid ?? (shared.state.grid = { text: "", base: "" });
    this.cards = [];
    this.filtered = [];
    this.columns = 1;

    this.search = el("input.ms-input.ms-search", {
      type: "search",
      placeholder: "Filter by name",
      "aria-label": "Filter by name",
      "data-testid": "grid-search",
      value: this.state.text,
      oninput: () => {
        this.state.text = this.search.value;
        this.apply();
      },
    });
    this.baseSelect = el("select.ms-input", {
      "aria-label": "Base model",
      "data-testid": "base-filter",
      onchange: () => {
        this.state.base = this.baseSelect.value;
        this.apply();
      },
    });
    this.count = el("span.ms-count", { "data-testid": "grid-count" });
    this.lookup = button("Look up", "pi-search", () => this.enrich(), { compact: true, title: "Look models up on Civitai and Hugging Face" });
    this.host = el("div.ms-list-host.ms-grid-host");
    this.element = el(
      "section.ms-view.ms-gallery",
      { "data-testid": "gallery" },
      el("div.ms-toolbar", {}, this.search, this.baseSelect, this.lookup),
      el("div.ms-summary", {}, this.count),
      this.host,
    );
    this.list = new VirtualList(this.host, {
      rowHeight: ROW_HEIGHT,
      pageSize: 50,
      fetchPage: (offset, limit) => Promise.resolve(this.page(offset, limit)),
      createRow: () => el("div.ms-grid-row", { role: "listitem" }),
      renderRow: (row, cards) => this.renderRow(row, cards),
    });
    this.list.onError = (error) => this.shared.toast("error", "Model Shelf", error.message);
    this.resize = new ResizeObserver(() => this.layout());
    this.resize.observe(this.host);
    this.reloadSoon = debounce(() => this.reload(), 500);
    shared.on("model-shelf.library-changed", () => this.reloadSoon());
    this.reload();
  }

  async reload() {
    try {
      const data = await this.client.metadataGrid();
      this.cards = data.models;
      const bases = Object.entries(data.base_models);
      clear(this.baseSelect);
      this.baseSelect.append(
        el("option", { value: "" }, "Any base model"),
        ...bases.map(([b, n]) => el("option", { value: b, selected: b === this.state.base }, `${b} (${n})`)),
      );
      this.apply();
    } catch (error) {
      this.count.textContent = error.message;
    }
  }

  apply() {
    const text = (this.state.text ?? "").toLowerCase();
    const base = this.state.base;
    this.filtered = this.cards.filter(
      (c) =>
        (!base || c.base_model === base) &&
        (!text || c.name.toLowerCase().includes(text) || (c.title ?? "").toLowerCase().includes(text)),
    );
    this.generation = (this.generation ?? 0) + 1; // new data: every row draws its cards again
    const n = this.filtered.length;
    this.count.textContent = `${n.toLocaleString()} model${n === 1 ? "" : "s"}`;
    this.list.reset();
  }

  layout() {
    const columns = Math.max(1, Math.floor((this.host.clientWidth || CARD_WIDTH) / CARD_WIDTH));
    if (columns !== this.columns) {
      this.columns = columns;
      this.list.reset({ keepScroll: true });
    }
  }

  /** Rows of `columns` cards, as the virtual list's pages. */
  page(offset, limit) {
    const rows = [];
    const total = Math.ceil(this.filtered.length / this.columns);
    for (let r = offset; r < Math.min(total, offset + limit); r += 1) {
      rows.push(this.filtered.slice(r * this.columns, (r + 1) * this.columns));
    }
    return { total, items: rows };
  }

  renderRow(row, cards) {
    const key = cards ? `${this.generation}:${cards.map((c) => c.id).join(",")}` : "";
    if (row._key === key) return; // already showing these cards: scrolling only moves the row
    row._key = key;
    row.replaceChildren(...(cards ?? []).map((card) => this.card(card)));
  }

  card(card) {
    const thumb = card.thumbnail
      ? el("img.ms-thumb", { src: this.client.url(card.thumbnail.replace(/^\/model-shelf/, "")), alt: "", loading: "lazy", decoding: "async" })
      : el("div.ms-thumb.ms-thumb-empty", {}, card.status === "not_fetched" ? NOT_FETCHED : "no preview");
    const label = card.name.split("/").pop();
    return el(
      "article.ms-card",
      { "data-testid": "model-card", "data-id": card.id, title: `${card.type}/${card.name}` },
      thumb,
      el("div.ms-card-head", {}, el("span.ms-card-name", {}, card.title ?? label), trustBadge(card.trust)),
      el("div.ms-card-sub", {}, card.base_model ?? card.type),
      triggerWords(card.trained_words, this.shared.toast),
      el("div.ms-card-links", {}, pageLink(card.page_url), updateButton(this.shared, card.id, card.update)),
    );
  }

  async enrich() {
    this.lookup.disabled = true;
    try {
      const report = await this.client.enrich();
      const found = Object.values(report.trust).reduce((a, b) => a + b, 0);
      this.shared.toast(report.offline ? "warn" : "success", "Model Shelf", report.offline ? `Offline: ${NOT_FETCHED}` : `${found} of ${report.checked} models found`);
      await this.reload();
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    } finally {
      this.lookup.disabled = false;
    }
  }

  activate() {
    this.layout();
    this.list.schedule();
  }

  destroy() {
    this.reloadSoon.cancel?.();
    this.resize.disconnect();
    this.list.destroy();
  }
}
