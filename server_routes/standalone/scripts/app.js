// The standalone page's stand-in for ComfyUI's `app` (scripts/app.js): just what the Model
// Shelf extension uses. `registerExtension`, then `setup(host, toasts)` runs every extension's
// setup; the one sidebar tab registered is rendered into `host`. There is no graph here, so
// dragging a model onto a canvas does nothing.

class ExtensionManager {
  constructor(app) {
    this.app = app;
    this.tabs = [];
    this.toast = {
      add: (message) => app.showToast(message),
    };
  }

  registerSidebarTab(tab) {
    this.tabs.push(tab);
    if (this.app.host && this.tabs.length === 1) tab.render(this.app.host);
  }

  unregisterSidebarTab(id) {
    const index = this.tabs.findIndex((tab) => tab.id === id);
    if (index >= 0) this.tabs.splice(index, 1)[0].destroy?.();
  }
}

class StandaloneApp {
  constructor() {
    this.extensions = [];
    this.extensionManager = new ExtensionManager(this);
    this.host = null;
    this.toasts = null;
    this.graph = null;
    this.canvas = null;
    this.canvasEl = null;
  }

  registerExtension(extension) {
    this.extensions.push(extension);
  }

  async setup(host, toasts) {
    this.host = host;
    this.toasts = toasts;
    for (const extension of this.extensions) await extension.setup?.(this);
    const [tab] = this.extensionManager.tabs;
    if (tab) tab.render(host);
  }

  showToast({ severity = "info", summary = "", detail = "", life = 4000 }) {
    if (!this.toasts) return;
    const toast = document.createElement("div");
    toast.className = `toast ${severity}`;
    toast.setAttribute("role", "status");
    const title = document.createElement("b");
    title.textContent = summary;
    toast.append(title, document.createTextNode(detail));
    this.toasts.append(toast);
    setTimeout(() => toast.remove(), life);
  }
}

export const app = new StandaloneApp();
