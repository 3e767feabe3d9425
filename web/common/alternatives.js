// The missing-model path in the page (issue #14): when a run fails because Model Shelf could not
// provide a model (its waiting node's execution_error), offer the closest library models; picking
// one sets every widget of the workflow that named the missing model to it. Exports only.

import { button, el } from "./dom.js";
import { shelfClient } from "./client.js";

const AWAIT_NODES = new Set(["ModelShelfAwaitModel", "Missing model (Model Shelf)"]);
const MISSING = /Model '([^']+)' \(([a-z_]+)\)/;

/** Set every node widget whose value is `missing` to `chosen`; returns how many changed. */
export function replaceWidgetValue(graph, missing, chosen) {
  let changed = 0;
  for (const node of graph?._nodes ?? graph?.nodes ?? []) {
    for (const widget of node.widgets ?? []) {
      if (widget.value === missing) {
        widget.value = chosen;
        widget.callback?.(chosen);
        changed += 1;
      }
    }
  }
  if (changed) graph.setDirtyCanvas?.(true, true);
  return changed;
}

export function installAlternatives(app, api, toast) {
  const client = shelfClient(api);
  let box = null;
  api.addEventListener("execution_error", async ({ detail }) => {
    if (!AWAIT_NODES.has(detail?.node_type)) return;
    const found = MISSING.exec(detail.exception_message ?? "");
    if (!found) return;
    const [, missing, type] = found;
    let alternatives;
    try {
      alternatives = await client.alternatives(type, missing);
    } catch (error) {
      return;
    }
    box?.remove();
    box = el(
      "div.ms-alternatives",
      { "data-testid": "alternatives", role: "dialog", "aria-label": "Use another model" },
      el("p", {}, `'${missing}' (${type}) is not in the library and cannot be fetched. Use instead:`),
      alternatives.length ? null : el("p", {}, "No model of that type in the library."),
      ...alternatives.map((a) =>
        el(
          "div.ms-row",
          { "data-alternative": a.name },
          button(a.name, "pi-check", () => {
            const changed = replaceWidgetValue(app.graph, missing, a.name);
            toast("success", "Model Shelf", `${changed} widget(s) set to ${a.name}: run again`);
            box.remove();
          }, { compact: true }),
          el("small", {}, a.reason),
        ),
      ),
      button("Close", "pi-times", () => box.remove(), { compact: true }),
    );
    document.body.append(box);
  });
}
