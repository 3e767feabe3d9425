// Model Shelf in the ComfyUI page: the "Model Shelf" sidebar tab, completion toasts, and loader
// nodes for models dragged onto the canvas. The only module here with effects at import: it
// registers the extension "model-shelf.sidebar". Served at /extensions/<folder>/model-shelf.js,
// so ComfyUI's scripts are two levels up.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { addStylesheet } from "./common/dom.js";
import { installCanvasDrop } from "./common/loaders.js";
import { mountPanel } from "./views/panel.js";

const state = { view: "library" }; // what the panel shows, kept while the tab is closed

function toast(severity, summary, detail) {
  const toasts = app.extensionManager?.toast;
  if (toasts?.add) toasts.add({ severity, summary, detail, life: severity === "error" ? 8000 : 4000 });
  else console.info(`[Model Shelf] ${summary}: ${detail}`);
}

function announceTasks() {
  const told = new Set();
  api.addEventListener("model-shelf.task", ({ detail }) => {
    if (!detail || told.has(detail.task_id)) return;
    if (detail.state === "done") {
      told.add(detail.task_id);
      toast("success", "Download finished", detail.model_name ?? detail.task_id);
    } else if (detail.state === "failed") {
      told.add(detail.task_id);
      toast("error", "Download failed", `${detail.error_code ? `[${detail.error_code}] ` : ""}${detail.message ?? ""}`);
    }
  });
}

app.registerExtension({
  name: "model-shelf.sidebar",
  async setup() {
    addStylesheet("./model-shelf.css", import.meta.url);
    let panel = null;
    app.extensionManager.registerSidebarTab({
      id: "model-shelf",
      icon: "pi pi-box",
      title: "Model Shelf",
      tooltip: "Model Shelf: every model, downloads, health",
      type: "custom",
      render(element) {
        // Called each time the tab is opened: the previous panel's listeners go with it.
        panel?.destroy();
        panel = mountPanel(element, { app, api, toast, state });
      },
      destroy() {
        panel?.destroy();
        panel = null;
      },
    });
    installCanvasDrop(app, (error) => toast("warn", "Model Shelf", error.message));
    announceTasks();
  },
});
