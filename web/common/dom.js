// Small DOM helpers shared by the Model Shelf views. Exports only: ComfyUI loads every .js file
// under WEB_DIRECTORY as an extension script, so this module must do nothing when imported.

/**
 * Create an element: el("button.ms-btn", {title: "Pause", onclick}, "text", child, ...).
 * Attributes starting with "on" become listeners; "dataset" and "style" objects are merged.
 */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(node.style, value);
    } else if (key in node && typeof value !== "string") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, ...children);
  return node;
}

/** Append children to `node`: nested arrays are flattened; null, undefined and false skipped. */
export function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An icon: a PrimeIcons class inside ComfyUI (e.g. "pi pi-pause"). */
export function icon(name) {
  return el("i", { class: `pi ${name}`, "aria-hidden": "true" });
}

/** A button with an icon and a label (`compact`: smaller, for rows and headers). */
export function button(label, iconName, onclick, { compact = false, kind = "", title } = {}) {
  return el(
    `button.ms-btn${kind ? "." + kind : ""}${compact ? ".ms-compact" : ""}`,
    { type: "button", title: title ?? label, "aria-label": label, onclick },
    iconName ? icon(iconName) : null,
    el("span", {}, label),
  );
}

const loadedSheets = new Set();

/** Load the stylesheet at `url` (relative URLs resolve against `base`, an import.meta.url) once. */
export function addStylesheet(url, base) {
  const href = new URL(url, base).href;
  if (loadedSheets.has(href)) return;
  loadedSheets.add(href);
  document.head.append(el("link", { rel: "stylesheet", href }));
}

/** Remove every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}
