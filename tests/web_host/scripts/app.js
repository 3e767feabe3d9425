// Stand-in for the ComfyUI page's `app` (ComfyUI_frontend, src/scripts/app.ts, as served at
// /scripts/app.js for extensions; shapes as of frontend 1.2x with ComfyUI 0.3.64): just what
// extensions such as Model Shelf use.
//
// - app.registerExtension({name, setup}): collected; `setup(app)` runs after every extension
//   module is imported (the real app imports them all from GET /extensions, in parallel).
// - app.extensionManager.registerSidebarTab({id, icon, title, tooltip, type: "custom",
//   render(el), destroy?}): a button in the side toolbar; clicking it mounts the tab's content
//   (render(el) on a fresh element each time, as the real sidebar remounts it); clicking again
//   closes it.
// - app.extensionManager.toast.add({severity, summary, detail, life}): PrimeVue's toast.
// - app.graph (LGraph: add, _nodes, setDirtyCanvas), app.canvas (LGraphCanvas:
//   convertEventToCanvasOffset), app.canvasEl (the <canvas>), and window.LiteGraph.createNode
//   with the loader nodes' widgets (as ComfyUI's node definitions declare them).

import { api } from "./api.js";

const NODE_WIDGETS = {
  CheckpointLoaderSimple: ["ckpt_name"],
  LoraLoader: ["lora_name", "strength_model", "strength_clip"],
  VAELoader: ["vae_name"],
  CLIPLoader: ["clip_name", "type"],
  UNETLoader: ["unet_name", "weight_dtype"],
  ControlNetLoader: ["control_net_name"],
  UpscaleModelLoader: ["model_name"],
};

class LGraphNode {
  constructor(type) {
    this.type = type;
    this.pos = [0, 0];
    this.widgets = NODE_WIDGETS[type].map((name) => ({ name, value: null, callback: null }));
  }
}

globalThis.LiteGraph = {
  createNode(type) {
    return NODE_WIDGETS[type] ? new LGraphNode(type) : null;
  },
};

class LGraph {
  constructor() {
    this._nodes = [];
    this.dirty = 0;
  }

  add(node) {
    node.id = this._nodes.length + 1;
    this._nodes.push(node);
    document.dispatchEvent(new CustomEvent("stand-in:node-added", { detail: node }));
  }

  setDirtyCanvas() {
    this.dirty += 1;
  }
}

class LGraphCanvas {
  constructor(canvas) {
    this.canvas = canvas;
    this.offset = [0, 0];
    this.scale = 1;
  }

  /** Page coordinates -> graph coordinates (no pan or zoom here). */
  convertEventToCanvasOffset(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) / this.scale - this.offset[0], (event.clientY - rect.top) / this.scale - this.offset[1]];
  }

  setDirty() {}
}

class ExtensionManager {
  constructor(app) {
    this.app = app;
    this.sidebarTabs = [];
    this.toast = { add: (message) => app.showToast(message) };
  }

  registerSidebarTab(tab) {
    if (tab.type !== "custom" || typeof tab.render !== "function") {
      throw new Error("this stand-in only hosts custom sidebar tabs");
    }
    this.sidebarTabs.push(tab);
    const button = document.createElement("button");
    button.className = "side-bar-button";
    button.dataset.tab = tab.id;
    button.title = tab.tooltip ?? tab.title;
    button.setAttribute("aria-label", tab.title);
    button.innerHTML = `<i class="${tab.icon}"></i><span>${tab.title}</span>`;
    button.addEventListener("click", () => this.app.toggleTab(tab));
    document.getElementById("side-toolbar").append(button);
  }

  unregisterSidebarTab(id) {
    const index = this.sidebarTabs.findIndex((tab) => tab.id === id);
    if (index >= 0) this.sidebarTabs.splice(index, 1)[0].destroy?.();
  }
}

class ComfyApp {
  constructor() {
    this.extensions = [];
    this.extensionManager = new ExtensionManager(this);
    this.graph = new LGraph();
    this.canvasEl = null;
    this.canvas = null;
    this.openTab = null;
  }

  registerExtension(extension) {
    if (!extension.name) throw new Error("Extensions must have a 'name' property.");
    if (this.extensions.some((e) => e.name === extension.name)) {
      throw new Error(`Extension named '${extension.name}' already registered.`);
    }
    this.extensions.push(extension);
  }

  /** What the real app does at start: import every extension, then run their setup. */
  async setup() {
    this.canvasEl = document.getElementById("graph-canvas");
    this.canvas = new LGraphCanvas(this.canvasEl);
    const urls = await api.getExtensions();
    await Promise.all(
      urls.map(async (url) => {
        try {
          await import(api.fileURL(url));
        } catch (error) {
          console.error("Error loading extension", url, error);
          window.__extensionErrors = [...(window.__extensionErrors ?? []), `${url}: ${error}`];
        }
      }),
    );
    for (const extension of this.extensions) await extension.setup?.(this);
    document.body.dataset.ready = "true";
  }

  toggleTab(tab) {
    const panel = document.getElementById("side-panel");
    if (this.openTab === tab.id) {
      this.openTab = null;
      panel.replaceChildren();
      panel.hidden = true;
      return;
    }
    this.openTab = tab.id;
    const content = document.createElement("div");
    content.className = "sidebar-content-container";
    panel.replaceChildren(content);
    panel.hidden = false;
    tab.render(content);
  }

  showToast({ severity = "info", summary = "", detail = "", life = 3000 }) {
    const toast = document.createElement("div");
    toast.className = `p-toast-message p-toast-message-${severity}`;
    toast.setAttribute("role", "alert");
    toast.dataset.severity = severity;
    toast.innerHTML = `<div class="p-toast-summary"></div><div class="p-toast-detail"></div>`;
    toast.firstChild.textContent = summary;
    toast.lastChild.textContent = detail;
    document.getElementById("toasts").append(toast);
    setTimeout(() => toast.remove(), Math.max(life, 10000)); // kept longer: tests read them
  }
}

export const app = new ComfyApp();
