// Model Shelf in the ComfyUI page: the "Model Shelf" sidebar tab, completion toasts, loader
// nodes for models dragged onto the canvas, loader combos that follow the library, and the
// models a loaded workflow describes (kept for the server, fetched on request). The only module
// here with effects at import: it registers the extension "model-shelf.sidebar". Served at
// /extensions/<folder>/model-shelf.js, so ComfyUI's scripts are two levels up.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { shelfClient } from "./common/client.js";
import { followLibrary } from "./common/combos.js";
import { addStylesheet } from "./common/dom.js";
import { eventHub } from "./common/events.js";
import { installCanvasDrop } from "./common/loaders.js";
import { copyModelsOntoNodes, missingModels, workflowModels } from "./common/workflow-models.js";
import { showMissingModels } from "./views/missing-models.js";
import { installAlternatives } from "./common/alternatives.js";
import { mountPanel } from "./views/panel.js";

const state = { view: "library" }; // what the panel shows, kept while the tab is closed
let events = null; // registered at setup: the page warns about message types nobody heard
let loadedWorkflow = null; // the graph data of the workflow being loaded

function toast(severity, summary, detail) {
  const toasts = app.extensionManager?.toast;
  if (toasts?.add) toasts.add({ severity, summary, detail, life: severity === "error" ? 8000 : 4000 });
  else console.info(`[Model Shelf] ${summary}: ${detail}`);
}

function announceTasks() {
  const told = new Set();
  events.on("model-shelf.task", (detail) => {
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

/** After a workflow is loaded: offer to fetch the models it describes that ComfyUI lacks. */
async function offerMissing(graphData) {
  const entries = workflowModels(graphData);
  if (!entries.length) return;
  const missing = await missingModels(api, entries);
  if (missing.length) showMissingModels(missing, { client: shelfClient(api), events, toast });
}

app.registerExtension({
  name: "model-shelf.sidebar",
  async setup() {
    addStylesheet("./model-shelf.css", import.meta.url);
    events = eventHub(api);
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
        panel = mountPanel(element, { app, api, events, toast, state });
      },
      destroy() {
        panel?.destroy();
        panel = null;
      },
    });
    installCanvasDrop(app, (error) => toast("warn", "Model Shelf", error.message));
    announceTasks();
    followLibrary(app, api, events);
    installAlternatives(app, api, toast); // issue #14: pick a stand-in for a missing model
  },
  beforeConfigureGraph(graphData) {
    loadedWorkflow = graphData;
    try {
      copyModelsOntoNodes(graphData);
    } catch (error) {
      console.warn("[Model Shelf] cannot read the workflow's models", error);
    }
  },
  async afterConfigureGraph() {
    const graphData = loadedWorkflow;
    loadedWorkflow = null;
    if (!graphData) return;
    try {
      await offerMissing(graphData);
    } catch (error) {
      console.warn("[Model Shelf] cannot check the workflow's models", error);
    }
  },
});
