// Stand-in for the ComfyUI page's `api` (ComfyUI_frontend, src/scripts/api.ts, served at
// /scripts/api.js): an EventTarget; `apiURL(route)` is api_base + "/api" + route and
// `fetchApi(route, options)` fetches it with the user header; `addEventListener(type, fn)`
// registers the type, and websocket messages {type, data} of registered types are dispatched as
// CustomEvent(type, {detail: data}) (the real api does exactly that for types it does not know).

class ComfyApi extends EventTarget {
  constructor() {
    super();
    this.api_base = "";
    this.user = "default";
    this.registered = new Set();
    this.socket = null;
  }

  apiURL(route) {
    return `${this.api_base}/api${route}`;
  }

  fileURL(route) {
    return this.api_base + route;
  }

  fetchApi(route, options = {}) {
    const headers = new Headers(options.headers ?? {});
    headers.set("Comfy-User", this.user);
    return fetch(this.apiURL(route), { cache: "no-cache", ...options, headers });
  }

  addEventListener(type, callback, options) {
    super.addEventListener(type, callback, options);
    this.registered.add(type);
  }

  async getExtensions() {
    const response = await this.fetchApi("/extensions", { cache: "no-store" });
    return response.json();
  }

  /** Open the websocket (the real page does so at start). */
  init() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${this.api_base}/ws`;
    this.socket = new WebSocket(url);
    this.socket.addEventListener("message", (message) => {
      const { type, data } = JSON.parse(message.data);
      if (this.registered.has(type)) this.dispatchEvent(new CustomEvent(type, { detail: data }));
    });
    return new Promise((resolve) => this.socket.addEventListener("open", resolve, { once: true }));
  }
}

export const api = new ComfyApi();
