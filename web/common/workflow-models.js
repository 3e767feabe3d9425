// The models a loaded workflow describes (frontend schema zModelFile: {name, url, directory,
// hash?, hash_type?}). Exports only (see dom.js).
//
// Both frontends (1.27, 1.49) rebuild the workflow from the graph when they queue it, and the
// graph keeps no top-level `models` list: the server would never see it. Each node's
// `properties.models` survives, so on load the entries are copied onto the nodes that use them.

function entriesOf(list) {
  return Array.isArray(list) ? list.filter((m) => m && typeof m.name === "string" && m.name) : [];
}

/** Does the widget value `value` name the model file `name` (maybe in a subfolder)? */
function names(value, name) {
  if (typeof value !== "string") return false;
  const plain = value.replaceAll("\\", "/");
  return plain === name || plain.endsWith(`/${name}`);
}

function widgetValues(node) {
  const values = node?.widgets_values;
  if (Array.isArray(values)) return values;
  return values && typeof values === "object" ? Object.values(values) : [];
}

function sameEntry(a, b) {
  return a.name === b.name && (a.directory ?? "") === (b.directory ?? "");
}

/**
 * Copy the workflow's top-level `models` entries onto `properties.models` of each node (also in
 * subgraphs) whose widgets name the entry's file. Changes `graphData` in place (call it from
 * `beforeConfigureGraph`, before the graph is built from it). Returns how many were copied.
 */
export function copyModelsOntoNodes(graphData) {
  const entries = entriesOf(graphData?.models);
  if (!entries.length) return 0;
  const nodes = [
    ...(graphData.nodes ?? []),
    ...(graphData.definitions?.subgraphs ?? []).flatMap((s) => s?.nodes ?? []),
  ];
  let copied = 0;
  for (const node of nodes) {
    const values = widgetValues(node);
    const used = entries.filter((entry) => values.some((value) => names(value, entry.name)));
    if (!used.length) continue;
    node.properties = node.properties && typeof node.properties === "object" ? node.properties : {};
    const own = entriesOf(node.properties.models);
    for (const entry of used) {
      if (own.some((m) => sameEntry(m, entry))) continue;
      own.push({ ...entry });
      copied += 1;
    }
    node.properties.models = own;
  }
  return copied;
}

/** Every entry of a workflow (top level, nodes, subgraphs), one per directory and name. */
export function workflowModels(graphData) {
  const all = [
    ...entriesOf(graphData?.models),
    ...(graphData?.nodes ?? []).flatMap((n) => entriesOf(n?.properties?.models)),
    ...(graphData?.definitions?.subgraphs ?? []).flatMap((s) =>
      (s?.nodes ?? []).flatMap((n) => entriesOf(n?.properties?.models)),
    ),
  ];
  const unique = [];
  for (const entry of all) {
    if (entry.directory && !unique.some((m) => sameEntry(m, entry))) unique.push(entry);
  }
  return unique;
}

/** The entries ComfyUI does not list (GET /models/{folder}, what its combos offer). */
export async function missingModels(api, entries) {
  const lists = new Map();
  const listed = async (folder) => {
    if (!lists.has(folder)) {
      lists.set(
        folder,
        api.fetchApi(`/models/${encodeURIComponent(folder)}`).then(
          (response) => (response.ok ? response.json() : []),
          () => [],
        ),
      );
    }
    return lists.get(folder);
  };
  const missing = [];
  for (const entry of entries) {
    const files = await listed(entry.directory);
    if (!files.some((file) => names(file, entry.name))) missing.push(entry);
  }
  return missing;
}
