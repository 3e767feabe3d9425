// The standalone page's stand-in for ComfyUI's `api` (scripts/api.js): `fetchApi(route)` calls
// "/api" + route like ComfyUI's, and events the page listens to (`addEventListener`) arrive as
// CustomEvents with `.detail`, over Server-Sent Events (/api/model-shelf/events) instead of
// ComfyUI's websocket. The stream opens with the first listener.

class StandaloneApi extends EventTarget {
  constructor() {
    super();
    this.api_base = "";
    this.source = null;
    this.registered = new Set();
  }

  apiURL(route) {
    return `${this.api_base}/api${route}`;
  }

  fetchApi(route, options = {}) {
    return fetch(this.apiURL(route), { cache: "no-cache", ...options });
  }

  addEventListener(type, callback, options) {
    super.addEventListener(type, callback, options);
    if (this.registered.has(type)) return;
    this.registered.add(type);
    this.source ??= new EventSource(this.apiURL("/model-shelf/events"));
    this.source.addEventListener(type, (message) => {
      this.dispatchEvent(new CustomEvent(type, { detail: JSON.parse(message.data) }));
    });
  }
}

export const api = new StandaloneApi();
