// The Model Shelf panel: its views (the VIEWS list below: Library, Downloads, Health, Settings)
// and import by dropping files anywhere on it. Exports only (see ../common/dom.js); the entry
// module mounts it.

import { addStylesheet, button, clear, el, icon } from "../common/dom.js";
import { shelfClient } from "../common/client.js";
import { LibraryView } from "./library.js";
import { ModelGridView } from "./model-grid.js";
import { DownloadsView } from "./downloads.js";
import { HealthView } from "./health.js";
import { SettingsView } from "./settings.js";
import { UsageView } from "./usage.js";
import { loadTypeFolders } from "./types.js";

// Every view, in tab order: [key, tab label, icon, class]. A view class takes `shared` (below),
// has `element`, and may have activate() (shown) and destroy(). Add a view by adding a line.
const VIEWS = [
  ["library", "Library", "pi-th-large", LibraryView],
  ["gallery", "Gallery", "pi-images", ModelGridView], // issue #12
  ["downloads", "Downloads", "pi-download", DownloadsView],
  ["health", "Health", "pi-heart", HealthView],
  ["usage", "Usage", "pi-chart-bar", UsageView],
  ["settings", "Settings", "pi-cog", SettingsView],
];

/**
 * Build the panel inside `root`. `env` = {app, api, events (see ../common/events.js),
 * toast(severity, summary, detail), state}.
 * Returns {destroy()}: removes listeners and timers (the sidebar re-renders on every open).
 */
export function mountPanel(root, env) {
  addStylesheet("./panel.css", import.meta.url);
  const client = shelfClient(env.api);
  const listeners = [];
  const shared = {
    ...env,
    client,
    /** api.addEventListener, undone when the panel goes away. */
    on(type, fn) {
      listeners.push(env.events.on(type, (detail) => fn(detail ?? {})));
    },
    show: (name) => select(name),
    /** A number on a view's tab (models, active downloads, problems); 0 hides it. */
    setCount(name, count) {
      const badge = tabs.querySelector(`[data-count="${name}"]`);
      if (badge) badge.textContent = count ? count.toLocaleString() : "";
    },
  };
  const state = env.state ?? {};

  clear(root);
  // The page mounts a custom tab in a bare <div> of no height inside its scrolling sidebar:
  // make that div fill the sidebar, so the panel scrolls inside itself (see panel.css).
  root.classList.add("ms-host");
  const tabs = el("nav.ms-tabs", { role: "tablist" });
  const body = el("div.ms-body");
  const dropzone = el("div.ms-dropzone", { hidden: true }, icon("pi-upload"), el("span", {}, "Drop model files to import them"));
  const panel = el("div.ms-panel", { "data-testid": "model-shelf-panel" }, tabs, body, dropzone);
  root.append(panel);

  const views = new Map();
  const tabButtons = new Map();
  for (const [name, label, iconName] of VIEWS) {
    const tab = el(
      "button.ms-tab",
      { type: "button", role: "tab", title: label, "data-view": name, onclick: () => select(name) },
      icon(iconName),
      el("span.ms-tab-label", {}, label),
      el("span.ms-tab-count", { "data-count": name }),
    );
    tabButtons.set(name, tab);
    tabs.append(tab);
  }

  function select(name) {
    state.view = name;
    for (const [key, tab] of tabButtons) {
      tab.classList.toggle("ms-active", key === name);
      tab.setAttribute("aria-selected", String(key === name));
    }
    for (const [key, view] of views) view.element.hidden = key !== name;
    if (!views.has(name)) {
      const View = VIEWS.find(([key]) => key === name)[3];
      const view = new View(shared);
      views.set(name, view);
      body.append(view.element);
    }
    views.get(name).activate?.();
  }

  // Import by dropping files on the panel (not models dragged out of the list).
  let depth = 0;
  const hasFiles = (event) => event.dataTransfer?.types?.includes("Files");
  panel.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    dropzone.hidden = false;
  });
  panel.addEventListener("dragleave", (event) => {
    if (!hasFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) dropzone.hidden = true;
  });
  panel.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  panel.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.stopPropagation(); // ComfyUI would load a dropped file as a workflow
    depth = 0;
    dropzone.hidden = true;
    askImport([...event.dataTransfer.files]);
  });

  async function askImport(files) {
    if (!files.length) return;
    let types;
    try {
      types = await loadTypeFolders(client);
    } catch (error) {
      env.toast("error", "Model Shelf", `Cannot import now: ${error.message}`);
      return;
    }
    const type = el(
      "select.ms-input",
      { "aria-label": "Import as type", "data-testid": "import-type" },
      types.map((t) => el("option", { value: t, selected: t === (state.importType ?? "checkpoints") }, t)),
    );
    const dialog = el(
      "div.ms-dialog",
      { role: "dialog", "aria-label": "Import files" },
      el("div.ms-dialog-title", {}, `Import ${files.length} file${files.length > 1 ? "s" : ""}`),
      el("ul.ms-file-list", {}, files.map((f) => el("li", {}, f.name))),
      el("label.ms-field", {}, el("span", {}, "Type folder"), type),
      el(
        "div.ms-row",
        {},
        button("Import", "pi-check", () => {
          state.importType = type.value;
          dialog.remove();
          upload(files, type.value);
        }, { kind: "ms-primary" }),
        button("Cancel", "pi-times", () => dialog.remove()),
      ),
    );
    panel.append(dialog);
  }

  async function upload(files, type) {
    for (const file of files) {
      env.toast("info", "Model Shelf", `Importing ${file.name}…`);
      try {
        const answer = await client.upload(file, type);
        env.toast("success", "Model Shelf", `Imported ${answer.record.type}/${answer.record.name}`);
      } catch (error) {
        env.toast("error", "Model Shelf", `${file.name}: ${error.message}`);
      }
    }
  }

  select(state.view ?? "library");

  return {
    element: panel,
    select,
    destroy() {
      for (const undo of listeners.splice(0)) undo();
      for (const view of views.values()) view.destroy?.();
      views.clear();
      panel.remove();
      root.classList.remove("ms-host");
    },
  };
}
