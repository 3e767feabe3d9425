// Stand-in for the ComfyUI page's `api` (ComfyUI_frontend, src/scripts/api.ts, served at
// /scripts/api.js): an EventTarget; `apiURL(route)` is api_base + "/api" + route and
// `fetchApi(route, options)` fetches it with the user header; `addEventListener(type, fn)`
// registers the type, and websocket messages {type, data} of registered types are dispatched as
// CustomEvent(type, {detail: data}); a message of a type nobody registered is reported once per
// type, as the real api does: console.warn("Unhandled message:", data, Error("Unknown message
// type <type>")). `queuePrompt(number, {output, workflow})` posts /prompt as the real one does.

class ComfyApi extends EventTarget {
  constructor() {
    super();
    this.api_base = "";
    this.user = "default";
    this.registered = new Set();
    this.reportedUnknownMessageTypes = new Set();
    this.socket = null;
    this.clientId = "stand-in-client";
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

  async queuePrompt(number, { output, workflow }) {
    const body = { client_id: this.clientId, prompt: output, extra_data: { extra_pnginfo: { workflow } } };
    const response = await this.fetchApi("/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    return response.json();
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
      if (this.registered.has(type)) {
        this.dispatchEvent(new CustomEvent(type, { detail: data }));
      } else if (!this.reportedUnknownMessageTypes.has(type)) {
        this.reportedUnknownMessageTypes.add(type);
        console.warn("Unhandled message:", message.data, new Error(`Unknown message type ${type}`));
      }
    });
    return new Promise((resolve) => this.socket.addEventListener("open", resolve, { once: true }));
  }
}

export const api = new ComfyApi();
