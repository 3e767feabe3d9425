// Loader combos that follow the library: when a model arrives or goes, the open page's node
// definitions are refreshed as its own "Refresh" (R) does: `app.refreshComboInNodes()` in
// frontend 1.27, `app.reloadNodeDefs()` in 1.49 (the same work without its two toasts). Both
// replace each combo's options and keep every widget's value. Exports only (see dom.js).

import { debounce } from "./sequence.js";

const SETTLE_MS = 400; // a burst of changes (an import of many files) makes one refresh

async function listed(api, folder) {
  try {
    const response = await api.fetchApi(`/models/${encodeURIComponent(folder)}`);
    return response.ok ? JSON.stringify(await response.json()) : null;
  } catch {
    return null;
  }
}

/**
 * Refresh the page's combos after `model-shelf.library-changed` events, only when what ComfyUI
 * lists for a changed type folder differs from before (each refresh of the real page shows two
 * toasts and fetches every node definition). `events`: see events.js. Returns the undo.
 */
export function followLibrary(app, api, events) {
  const known = new Map(); // type folder -> JSON of ComfyUI's file list when last seen
  let pending = new Set();
  const check = debounce(async () => {
    const types = [...pending];
    pending = new Set();
    let changed = types.includes("*");
    for (const type of types.filter((t) => t !== "*")) {
      const now = await listed(api, type);
      if (now !== null && known.get(type) !== now) changed = true;
      if (now !== null) known.set(type, now);
    }
    if (!changed) return;
    if (app.reloadNodeDefs) await app.reloadNodeDefs();
    else await app.refreshComboInNodes?.();
  }, SETTLE_MS);
  const undo = events.on("model-shelf.library-changed", (detail) => {
    const types = Array.isArray(detail?.types) ? detail.types : [];
    for (const type of types) pending.add(type);
    // An event without types (a full rescan) may change any folder: refresh outright.
    if (!types.length) pending.add("*");
    check();
  });
  return () => {
    check.cancel();
    undo();
  };
}
