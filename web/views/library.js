// The Library view: search as you type, filters, a virtualized list of every model, badges,
// and a detail drawer. Exports only (see ../common/dom.js).

import { addStylesheet, append, button, clear, el } from "../common/dom.js";
import { formatBytes, formatDate, shortHash } from "../common/format.js";
import { setModelDrag } from "../common/loaders.js";
import { debounce, latestOnly } from "../common/sequence.js";
import { VirtualList } from "../common/virtual-list.js";
import { loadTypeFolders } from "./types.js";
import { metadataSection } from "./model-metadata.js";

const ROW_HEIGHT = 46;
const PAGE_SIZE = 200;
const SORTS = [
  ["relevance", "Best match"],
  ["name", "Name"],
  ["newest", "Newest"],
  ["size", "Largest"],
  ["type", "Type"],
];
const STATUSES = ["verified", "unverified", "corrupted", "missing", "damaged", "pickle"];

function option(value, label, selected) {
  return el("option", { value, selected: selected === value }, label);
}

/** The badges of one model (status, and the pickle warning). */
export function badges(model) {
  const list = [];
  const status = model.status;
  const titles = {
    verified: "Digests known; the last check found the file intact",
    unverified: "Recorded without digests yet (they are computed in the background)",
    corrupted: "The file's content differs from its record",
    missing: "The file is gone; its record remains",
    damaged: "Record damaged: unreadable, or it lists files outside the library (Health: repair re-creates it)",
  };
  if (status) list.push(el(`span.ms-badge.ms-badge-${status}`, { title: titles[status] ?? status }, status));
  if (model.pickle) {
    list.push(
      el("span.ms-badge.ms-badge-pickle", { title: "Pickle format: loading it can run code" }, "pickle"),
    );
  }
  return list;
}

export class LibraryView {
  constructor(shared) {
    addStylesheet("./library.css", import.meta.url);
    this.shared = shared;
    this.client = shared.client;
    this.state = shared.state.library ?? (shared.state.library = { text: "", sort: "relevance" });

    this.search = el("input.ms-input.ms-search", {
      type: "search",
      placeholder: "Search models",
      "aria-label": "Search models",
      "data-testid": "search",
      value: this.state.text ?? "",
      oninput: () => this.query(),
    });
    this.typeSelect = this.select("type", "All types", []);
    loadTypeFolders(this.client).then(
      (types) => this.typeSelect.append(...types.map((t) => option(t, t, this.state.type))),
      () => {}, // the list shows the server's error; the filter keeps "All types"
    );
    this.archSelect = this.select("architecture", "Any architecture", []);
    this.tagSelect = this.select("tag", "Any tag", []);
    this.statusSelect = this.select("status", "Any status", STATUSES.map((s) => [s, s]));
    this.sortSelect = el(
      "select.ms-input",
      { "aria-label": "Sort", onchange: () => this.query(true) },
      SORTS.map(([v, l]) => option(v, l, this.state.sort)),
    );
    this.count = el("span.ms-count", { "data-testid": "model-count" });
    this.listHost = el("div.ms-list-host");
    this.drawer = el("aside.ms-drawer", { hidden: true, "data-testid": "drawer" });
    this.element = el(
      "section.ms-view.ms-library",
      {},
      el("div.ms-toolbar", {}, this.search),
      el(
        "div.ms-filters",
        {},
        this.typeSelect,
        this.archSelect,
        this.tagSelect,
        this.statusSelect,
        this.sortSelect,
      ),
      el("div.ms-summary", {}, this.count),
      this.listHost,
      this.drawer,
    );

    this.list = new VirtualList(this.listHost, {
      rowHeight: ROW_HEIGHT,
      pageSize: PAGE_SIZE,
      fetchPage: (offset, limit, signal) =>
        this.client.listModels({ ...this.params(), offset, limit }, signal),
      createRow: () => this.createRow(),
      renderRow: (row, model) => this.renderRow(row, model),
    });
    this.list.onTotal = (total) => {
      this.count.textContent = `${total.toLocaleString()} model${total === 1 ? "" : "s"}`;
    };
    this.list.onError = (error) => this.shared.toast("error", "Model Shelf", error.message);

    // Typing: debounced, and only the latest query's answer is shown (see latestOnly).
    this.runQuery = latestOnly(
      () => this.list.reset(),
      () => {},
      { delayMs: 150, onError: (error) => this.shared.toast("error", "Model Shelf", error.message) },
    );
    this.refreshSoon = debounce(() => this.refresh(), 300);
    shared.on("model-shelf.library-changed", () => this.refreshSoon());
    shared.on("model-shelf.root", () => this.refreshSoon());
    this.loadFacets();
    this.list.reset();
  }

  select(key, anyLabel, values) {
    const select = el(
      "select.ms-input",
      { "aria-label": anyLabel, "data-filter": key, onchange: () => this.query(true) },
      option("", anyLabel, this.state[key] ?? ""),
      values.map(([v, l]) => option(v, l, this.state[key])),
    );
    return select;
  }

  params() {
    return {
      text: this.search.value.trim(),
      type: this.filterValue(this.typeSelect, "type"),
      architecture: this.filterValue(this.archSelect, "architecture"),
      tag: this.filterValue(this.tagSelect, "tag"),
      status: this.statusSelect.value,
      sort: this.sortSelect.value,
    };
  }

  /** A filter's value; the saved one while its options are still on their way (they come
   *  from the server), so a reopened sidebar lists what its filters show. */
  filterValue(select, key) {
    const saved = this.state[key] ?? "";
    const arrived = [...select.options].some((o) => o.value === saved);
    return arrived ? select.value : saved;
  }

  query(now = false) {
    Object.assign(this.state, this.params());
    this.runQuery(this.params(), { now });
  }

  refresh() {
    this.list.reset({ keepScroll: true });
    this.loadFacets();
    if (this.openId) this.openDrawer(this.openId, { quiet: true });
  }

  async loadFacets() {
    try {
      const facets = await this.client.facets();
      this.fillSelect(this.archSelect, "architecture", "Any architecture", facets.architectures);
      this.fillSelect(this.tagSelect, "tag", "Any tag", facets.tags);
      this.shared.setCount?.("library", facets.total);
    } catch (error) {
      // The list shows the error; filters simply stay as they are.
    }
  }

  fillSelect(select, key, anyLabel, facets) {
    const current = this.filterValue(select, key);
    clear(select);
    select.append(option("", anyLabel, current));
    for (const facet of facets) {
      select.append(option(facet.value, `${facet.value} (${facet.count})`, current));
    }
    if (current && !facets.some((facet) => facet.value === current)) {
      select.append(option(current, `${current} (0)`, current)); // the filter shows what applies
    }
  }

  createRow() {
    const row = el("div.ms-model", {
      role: "listitem",
      draggable: "true",
      tabindex: "0",
      "data-testid": "model-row",
    });
    row.append(
      el("span.ms-model-main", {}, el("span.ms-model-name"), el("span.ms-model-folder")),
      el("span.ms-model-badges"),
      el("span.ms-model-size"),
    );
    row.addEventListener("click", () => row.dataset.id && this.openDrawer(row.dataset.id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && row.dataset.id) this.openDrawer(row.dataset.id);
    });
    row.addEventListener("dragstart", (event) => {
      if (!row._model) return event.preventDefault();
      setModelDrag(event, row._model);
    });
    return row;
  }

  renderRow(row, model) {
    row._model = model;
    const [main, badgeHost, size] = row.children;
    if (!model) {
      delete row.dataset.id;
      main.firstChild.textContent = "…";
      main.lastChild.textContent = "";
      clear(badgeHost);
      size.textContent = "";
      return;
    }
    if (row.dataset.id === model.id && row.dataset.status === model.status) return;
    row.dataset.id = model.id;
    row.dataset.status = model.status;
    const slash = model.name.lastIndexOf("/");
    main.firstChild.textContent = model.name.slice(slash + 1);
    main.firstChild.title = `${model.type}/${model.name}`;
    main.lastChild.textContent =
      model.type + (slash >= 0 ? `/${model.name.slice(0, slash)}` : "") +
      (model.architecture ? ` · ${model.architecture}` : "");
    clear(badgeHost);
    badgeHost.append(...badges(model));
    size.textContent = formatBytes(model.size);
  }

  // -- the drawer -----------------------------------------------------------------------------

  async openDrawer(id, { quiet = false } = {}) {
    this.openId = id;
    try {
      const detail = await this.client.model(id);
      if (this.openId !== id) return; // another model was opened meanwhile
      this.renderDrawer(detail);
    } catch (error) {
      if (error.code === "MODEL_NOT_FOUND") return this.closeDrawer();
      if (!quiet) this.shared.toast("error", "Model Shelf", error.message);
    }
  }

  closeDrawer() {
    this.openId = null;
    this.drawer.hidden = true;
    clear(this.drawer);
  }

  renderDrawer(detail) {
    const record = detail.record;
    const client = this.client;
    const toast = this.shared.toast;
    clear(this.drawer);
    const copy = (text) => async () => {
      try {
        await navigator.clipboard.writeText(text);
        toast("success", "Model Shelf", "Copied");
      } catch {
        toast("warn", "Model Shelf", text);
      }
    };
    const hashes = Object.values(record.hashes ?? {}).map((value) =>
      el(
        "div.ms-hash",
        {},
        el("code", { title: value }, `${value.split(":")[0]} ${shortHash(value, 16)}…`),
        button("Copy", "pi-copy", copy(value.split(":").pop()), { compact: true, title: `Copy ${value.split(":")[0]}` }),
      ),
    );
    const sources = (record.sources ?? []).map((source) =>
      el(
        "div.ms-source",
        {},
        el("a", { href: source.url, target: "_blank", rel: "noopener noreferrer" }, source.repo_id ?? source.url),
      ),
    );
    const probe = record.probe ?? {};
    const nameInput = el("input.ms-input", { value: record.name, "aria-label": "Name", "data-testid": "rename" });
    const tagsInput = el("input.ms-input", {
      value: (record.tags ?? []).join(", "),
      "aria-label": "Tags",
      placeholder: "tags, comma separated",
    });
    const aliasesInput = el("input.ms-input", {
      value: (record.aliases ?? []).join(", "),
      "aria-label": "Aliases",
      placeholder: "other names workflows use",
    });
    const split = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);
    const save = async () => {
      const changes = {};
      if (nameInput.value.trim() && nameInput.value.trim() !== record.name) changes.name = nameInput.value.trim();
      changes.tags = split(tagsInput.value);
      changes.aliases = split(aliasesInput.value);
      try {
        this.renderDrawer(await client.editModel(record.id, changes));
        toast("success", "Model Shelf", "Saved");
        this.refreshSoon();
      } catch (error) {
        toast("error", "Model Shelf", error.message);
      }
    };
    const remove = async () => {
      if (!confirm(`Delete ${record.type}/${record.name}? Its files are removed from disk.`)) return;
      try {
        await client.removeModel(record.id);
        toast("success", "Model Shelf", `Deleted ${record.type}/${record.name}`);
        this.closeDrawer();
        this.refreshSoon();
      } catch (error) {
        toast("error", "Model Shelf", error.message);
      }
    };
    const verify = async () => {
      try {
        const [result] = await client.verify([record.id]);
        toast(result.health === "ok" ? "success" : "error", "Model Shelf", `${result.model}: ${result.health}${result.detail ? ` (${result.detail})` : ""}`);
        this.openDrawer(record.id, { quiet: true });
        this.refreshSoon();
      } catch (error) {
        toast("error", "Model Shelf", error.message);
      }
    };
    const facts = [
      ["Type", record.type],
      ["Size", formatBytes(record.size)],
      ["Architecture", probe.architecture ?? "unknown"],
      ["Kind", probe.kind ?? "unknown"],
      ["Format", probe.format ?? "unknown"],
      ["Parameters", probe.parameter_count ? Number(probe.parameter_count).toLocaleString() : "–"],
      ["Used", `${record.usage?.count ?? 0} times, last ${formatDate(record.usage?.last_used)}`],
      ["Added", formatDate(record.created_at)],
      // Digests computed on import already vouch for the file; this is the last re-check.
      ["Last checked", record.verified_at ? formatDate(record.verified_at)
        : record.hash_state === "hashed" ? "on import" : "not yet"],
    ];
    append(
      this.drawer,
      el(
        "header.ms-drawer-head",
        {},
        el("div.ms-drawer-title", {}, record.name.split("/").pop()),
        button("Close", "pi-times", () => this.closeDrawer(), { compact: true }),
      ),
      el("div.ms-model-badges", {}, badges({ status: detail.status, pickle: probe.format === "pickle" })),
      record.health_detail ? el("p.ms-note", {}, record.health_detail) : null,
      el("div.ms-path", { title: detail.path }, detail.path),
      detail.previews?.length ? el("img.ms-preview", { src: client.url(detail.previews[0].replace(/^\/model-shelf/, "")), alt: "" }) : null,
      el("dl.ms-facts", {}, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      metadataSection(this.shared, record.id), // issue #12
      el("h4", {}, "Hashes"),
      hashes.length ? hashes : el("p.ms-note", {}, "Not computed yet"),
      sources.length ? [el("h4", {}, "Sources"), sources] : null,
      el("h4", {}, "Edit"),
      el("label.ms-field", {}, el("span", {}, "Name"), nameInput),
      el("label.ms-field", {}, el("span", {}, "Aliases"), aliasesInput),
      el("label.ms-field", {}, el("span", {}, "Tags"), tagsInput),
      el(
        "div.ms-row",
        {},
        button("Save", "pi-check", save, { kind: "ms-primary" }),
        button("Verify", "pi-verified", verify),
        button("Delete", "pi-trash", remove, { kind: "ms-danger" }),
      ),
    );
    this.drawer.hidden = false;
  }

  activate() {
    this.list.schedule();
  }

  destroy() {
    this.runQuery.cancel();
    this.refreshSoon.cancel();
    this.list.destroy();
  }
}

