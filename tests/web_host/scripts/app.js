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
// - The sidebar mounts a custom tab as the real one does (SideToolbar.vue + ExtensionSlot.vue):
//   render(el) gets a bare <div> with no height inside `.sidebar-content-container` (full
//   height, scrolling).
// - app.loadGraphData(graphData) (app.ts): extensions' beforeConfigureGraph(graphData,
//   missingNodeTypes) on a clone of the data, then the graph is built from it (nodes with their
//   widgets_values and properties; the top-level `models` is not kept), loadedGraphNode(node),
//   afterConfigureGraph(missingNodeTypes).
// - app.graphToPrompt() -> {workflow: graph.serialize(), output: the API prompt} and
//   app.queuePrompt(number) posting it (the workflow rebuilt from the graph, without `models`).
// - app.refreshComboInNodes() (frontend 1.27): GET /object_info, then each combo widget's
//   options.values replaced from its input spec; widget values are kept.

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

const MODEL_WIDGETS = new Set(["ckpt_name", "lora_name", "vae_name", "clip_name", "unet_name", "control_net_name", "model_name"]);

class LGraphNode {
  constructor(type) {
    this.type = type;
    this.pos = [0, 0];
    this.properties = {};
    this.widgets = NODE_WIDGETS[type].map((name) =>
      MODEL_WIDGETS.has(name)
        ? { name, type: "combo", value: null, callback: null, options: { values: [] } }
        : { name, type: "number", value: null, callback: null, options: {} },
    );
  }

  /** LGraphNode.configure: id, pos, widget values (positional), properties. */
  configure(data) {
    this.id = data.id;
    this.pos = [...(data.pos ?? [0, 0])];
    this.properties = structuredClone(data.properties ?? {});
    (data.widgets_values ?? []).forEach((value, i) => {
      if (this.widgets[i]) this.widgets[i].value = value;
    });
  }

  serialize() {
    return {
      id: this.id,
      type: this.type,
      pos: [...this.pos],
      properties: structuredClone(this.properties),
      widgets_values: this.widgets.map((w) => w.value),
    };
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

  get nodes() {
    return this._nodes;
  }

  clear() {
    this._nodes = [];
  }

  /** What the real LGraph.serialize keeps: nodes, links, extra; never a top-level `models`. */
  serialize() {
    return { version: 0.4, nodes: this._nodes.map((n) => n.serialize()), links: [], extra: {} };
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

  async #invoke(method, ...args) {
    for (const extension of this.extensions) {
      if (typeof extension[method] === "function") await extension[method](...args, this);
    }
  }

  async loadGraphData(graphData) {
    graphData = structuredClone(graphData);
    const missingNodeTypes = [];
    await this.#invoke("beforeConfigureGraph", graphData, missingNodeTypes);
    this.graph.clear();
    for (const data of graphData.nodes ?? []) {
      const node = globalThis.LiteGraph.createNode(data.type);
      if (!node) {
        missingNodeTypes.push(data.type);
        continue;
      }
      node.configure(data);
      this.graph._nodes.push(node);
    }
    for (const node of this.graph._nodes) await this.#invoke("loadedGraphNode", node);
    await this.#invoke("afterConfigureGraph", missingNodeTypes);
  }

  async graphToPrompt() {
    const output = {};
    for (const node of this.graph._nodes) {
      const inputs = {};
      for (const widget of node.widgets) inputs[widget.name] = widget.value;
      output[String(node.id)] = { class_type: node.type, inputs, _meta: { title: node.type } };
    }
    return { workflow: this.graph.serialize(), output };
  }

  async queuePrompt(number) {
    const prompt = await this.graphToPrompt();
    return api.queuePrompt(number, prompt);
  }

  async refreshComboInNodes() {
    const response = await api.fetchApi("/object_info", { cache: "no-store" });
    const defs = await response.json();
    for (const node of this.graph._nodes) {
      const required = defs[node.type]?.input?.required ?? {};
      for (const widget of node.widgets) {
        if (widget.type === "combo" && required[widget.name]) widget.options.values = required[widget.name][0];
      }
    }
    this.combosRefreshed = (this.combosRefreshed ?? 0) + 1;
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
    const slot = document.createElement("div"); // ExtensionSlot's bare <div>
    content.append(slot);
    panel.replaceChildren(content);
    panel.hidden = false;
    tab.render(slot);
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
