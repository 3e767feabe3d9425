// The Model Shelf HTTP API, through ComfyUI's `api.fetchApi` (which adds the "/api" prefix and
// the user header). Every path part from data goes through encodeURIComponent. Exports only.

const JSON_HEADERS = { "Content-Type": "application/json" };

/** An error answered by the API: `code` is stable (MODEL_NOT_FOUND, NAME_EXISTS, ...). */
export class ShelfApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = "ShelfApiError";
    this.code = code;
    this.status = status;
  }
}

const enc = encodeURIComponent;

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A client bound to ComfyUI's `api` object (or the stand-in page's). */
export function shelfClient(api) {
  async function call(path, { method = "GET", body, signal, headers, raw = false } = {}) {
    const options = { method, signal, headers: { ...(headers ?? {}) } };
    if (body !== undefined) {
      if (raw) {
        options.body = body;
      } else {
        options.body = JSON.stringify(body);
        Object.assign(options.headers, JSON_HEADERS);
      }
    } else if (method !== "GET") {
      // State-changing routes take JSON only (see server_routes/guard.py): send "{}".
      options.body = "{}";
      Object.assign(options.headers, JSON_HEADERS);
    }
    const response = await api.fetchApi(`/model-shelf${path}`, options);
    const type = response.headers.get("Content-Type") ?? "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const code = data?.code ?? `HTTP_${response.status}`;
      const message = data?.message ?? `${response.status} ${response.statusText}`;
      throw new ShelfApiError(code, message, response.status);
    }
    return data;
  }

  return {
    url: (path) => (api.apiURL ? api.apiURL(`/model-shelf${path}`) : `/api/model-shelf${path}`),
    // models
    listModels: (params, signal) => call(`/models${query(params)}`, { signal }),
    facets: () => call("/models/facets"),
    model: (id) => call(`/models/${enc(id)}`),
    editModel: (id, changes) => call(`/models/${enc(id)}`, { method: "PATCH", body: changes }),
    removeModel: (id) =>
      call(`/models/${enc(id)}`, { method: "DELETE", body: { confirm: true } }),
    // metadata from Civitai and Hugging Face (issue #12)
    metadataGrid: () => call("/metadata"),
    enrich: (ids = [], refresh = false) =>
      call("/metadata/enrich", { method: "POST", body: { ids, refresh } }),
    modelMetadata: (id) => call(`/models/${enc(id)}/metadata`),
    editMetadata: (id, values) => call(`/models/${enc(id)}/metadata`, { method: "PUT", body: values }),
    queueUpdate: (id) => call(`/models/${enc(id)}/update`, { method: "POST" }),
    // imports
    importPath: (path, type, mode = "copy", name) =>
      call("/import", { method: "POST", body: { path, type, mode, ...(name ? { name } : {}) } }),
    upload: (file, type, name) =>
      call(`/upload${query({ type, name: name ?? file.name })}`, {
        method: "POST",
        raw: true,
        body: file, // the browser streams it from disk; it is never read into memory here
        headers: { "Content-Type": "application/octet-stream", "X-Model-Shelf": "1" },
      }),
    // downloads
    /** A page of tasks, unfinished first: {total, offset, limit, items}. */
    downloads: (offset = 0, limit = 200) => call(`/downloads?offset=${offset}&limit=${limit}`),
    // origin "workflow": the source comes from a workflow, so the server fetches it only from
    // public addresses or hosts the user allowed (the add box sends the default, "user").
    addDownload: (source, type, name, sha256, origin) =>
      call("/downloads", {
        method: "POST",
        body: {
          source,
          ...(type ? { type } : {}),
          ...(name ? { name } : {}),
          ...(sha256 ? { sha256 } : {}),
          ...(origin ? { origin } : {}),
        },
      }),
    taskAction: (id, action) => call(`/downloads/${enc(id)}/${enc(action)}`, { method: "POST" }),
    allAction: (action) => call(`/downloads/all/${enc(action)}`, { method: "POST" }),
    // usage and advice (issue #14)
    usage: () => call("/usage"),
    cleanupPlan: (free) => call(`/usage/cleanup${query({ free })}`),
    cleanup: (free, ids) => call("/usage/cleanup", { method: "POST", body: { free, confirm: true, ...(ids ? { ids } : {}) } }),
    preloadSuggestions: () => call("/usage/preload"),
    preload: (name) => call("/usage/preload", { method: "POST", body: { name } }),
    alternatives: (type, name) => call(`/alternatives${query({ type, name })}`),
    // health
    // sweep: stat every file and look for left-overs first (seconds on a large library)
    health: (sweep = false) => (sweep ? call("/health/sweep", { method: "POST" }) : call("/health")),
    verify: (ids = []) => call("/health/verify", { method: "POST", body: { ids } }),
    repair: (ids = [], all = false) => call("/health/repair", { method: "POST", body: { ids, all } }),
    dedupe: (apply = false) => call("/health/dedupe", { method: "POST", body: { apply } }),
    purgeGhosts: () => call("/health/purge-ghosts", { method: "POST", body: {} }),
    clean: () => call("/health/clean", { method: "POST", body: {} }),
    // settings and service
    settings: () => call("/settings"),
    saveSettings: (changes) => call("/settings", { method: "PUT", body: changes }),
    stats: () => call("/stats"),
    types: () => call("/types"),
  };
}
