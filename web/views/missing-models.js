// "Missing models": shown when a loaded workflow describes models ComfyUI does not list. Each
// can be fetched into the library by the server (its own rules decide which sources are
// allowed; the page's own dialog allows only three hosts and downloads through the browser),
// one by one or all at once, with progress. Neither frontend (1.27 dialog, 1.49 errors panel)
// lets an extension add buttons to its own list, so this is a small dialog of ours. Exports
// only (see ../common/dom.js).

import { addStylesheet, button, el } from "../common/dom.js";
import { formatBytes } from "../common/format.js";

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

function sha256Of(entry) {
  const type = String(entry.hash_type ?? "").toLowerCase();
  return entry.hash && (type === "sha256" || type === "") ? entry.hash : undefined;
}

/**
 * Show the dialog for `missing` (zModelFile entries). `env` = {client, events, toast}.
 * Returns {element, close()}; a second call replaces the first dialog.
 */
export function showMissingModels(missing, env) {
  addStylesheet("./panel.css", import.meta.url); // buttons and bars, as in the panel
  addStylesheet("./missing-models.css", import.meta.url);
  document.querySelector(".ms-missing")?._close?.();
  const undo = [];
  const rows = new Map(); // task id -> row parts
  const items = missing.map((entry) => {
    const state = el("span.ms-missing-state", { "data-testid": "missing-state" });
    const bar = el("progress.ms-progress", { max: 1, value: 0, hidden: true });
    const fetchButton = button("Fetch", "pi-download", () => fetchOne(item), {
      compact: true,
      title: `Fetch ${entry.name} into the library`,
    });
    const row = el(
      "li.ms-missing-row",
      { "data-testid": "missing-model", "data-name": entry.name },
      el(
        "div.ms-missing-head",
        {},
        el(
          "span.ms-missing-name",
          { title: `${entry.directory}/${entry.name}` },
          el("strong", {}, entry.name),
          el("span.ms-missing-where", {}, ` ${entry.directory} · ${entry.url ? hostOf(entry.url) : "no link"}`),
        ),
        fetchButton,
      ),
      bar,
      state,
    );
    const item = { entry, row, state, bar, fetchButton, done: false };
    if (!entry.url) {
      fetchButton.disabled = true;
      state.textContent = "The workflow gives no link for it.";
    }
    return item;
  });

  async function fetchOne(item) {
    if (!item.entry.url || item.done || item.taskId) return;
    item.fetchButton.disabled = true;
    item.state.textContent = "Queued…";
    try {
      const { entry } = item;
      const task = await env.client.addDownload(entry.url, entry.directory, entry.name, sha256Of(entry), "workflow");
      item.taskId = task.task_id ?? task.id;
      rows.set(item.taskId, item);
      show(item, task);
    } catch (error) {
      item.fetchButton.disabled = false;
      item.state.textContent = error.message;
      item.row.dataset.state = "failed";
    }
  }

  function show(item, task) {
    item.row.dataset.state = task.state;
    const total = task.total_bytes ?? 0;
    const done = task.bytes_done ?? 0;
    if (task.state === "done") {
      item.done = true;
      item.bar.hidden = true;
      item.state.textContent = "In the library.";
    } else if (task.state === "failed" || task.state === "cancelled") {
      item.taskId = null;
      item.fetchButton.disabled = false;
      item.bar.hidden = true;
      item.state.textContent = `${task.state}: ${task.message ?? ""}`;
    } else {
      item.bar.hidden = false;
      item.bar.value = total ? done / total : 0;
      item.state.textContent = total ? `${task.state} ${formatBytes(done)} of ${formatBytes(total)}` : task.state;
    }
    refreshSummary();
  }

  undo.push(
    env.events.on("model-shelf.task", (event) => {
      const item = rows.get(event.task_id);
      if (item) show(item, event);
    }),
  );

  const fetchable = items.filter((item) => item.entry.url);
  const summary = el("p.ms-note", { "data-testid": "missing-summary" });
  const allButton = button("Fetch all", "pi-cloud-download", () => fetchable.forEach(fetchOne), {
    kind: "ms-primary",
  });
  function refreshSummary() {
    const ready = items.filter((item) => item.done).length;
    summary.textContent = `${ready} of ${items.length} in the library.`;
    allButton.disabled = fetchable.every((item) => item.done || item.taskId);
  }

  const dialog = el(
    "div.ms-missing.ms-panel",
    { role: "dialog", "aria-label": "Missing models", "data-testid": "missing-models" },
    el(
      "header.ms-missing-title",
      {},
      el("span", {}, `Model Shelf: this workflow misses ${items.length} model${items.length === 1 ? "" : "s"}`),
      button("Close", "pi-times", () => close(), { compact: true }),
    ),
    el("ul.ms-missing-list", {}, items.map((item) => item.row)),
    el("div.ms-row", {}, allButton, summary),
  );
  function close() {
    for (const fn of undo.splice(0)) fn();
    dialog.remove();
  }
  dialog._close = close;
  refreshSummary();
  document.body.append(dialog);
  return { element: dialog, close };
}
