// What Civitai and Hugging Face say about a model (issue #12): the trust badge, trigger words
// with a copy button, the page link, "Update available", and the metadata part of the detail
// drawer. Exports only (see ../common/dom.js).

import { addStylesheet, button, el } from "../common/dom.js";

export const NOT_FETCHED = "metadata not fetched yet";

const TRUST_TITLES = {
  verified: "The source states this file's sha256, and it is this file's",
  likely: "File name and size equal what the source lists (no hash to compare)",
  guess: "Only the file name equals what the source lists",
};

/** The trust badge of a card or metadata view (nothing when there is no match). */
export function trustBadge(trust) {
  if (!trust) return null;
  return el(`span.ms-badge.ms-trust.ms-trust-${trust}`, { title: TRUST_TITLES[trust] ?? trust, "data-testid": "trust" }, trust);
}

/** Copy `text` to the clipboard (the async API where the page may, else a hidden textarea). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { style: { position: "fixed", opacity: "0" } });
    area.value = text;
    document.body.append(area);
    area.select();
    const done = document.execCommand?.("copy") ?? false;
    area.remove();
    return done;
  }
}

/** Trigger words as chips, with one button copying them all (comma separated). */
export function triggerWords(words, toast) {
  if (!words?.length) return null;
  const copy = button("Copy", "pi-copy", async (event) => {
    event.stopPropagation();
    const ok = await copyText(words.join(", "));
    toast?.(ok ? "success" : "warn", "Trigger words", ok ? `Copied: ${words.join(", ")}` : "Could not copy");
  }, { compact: true, title: "Copy the trigger words" });
  copy.dataset.testid = "copy-triggers";
  return el(
    "div.ms-triggers",
    {},
    words.slice(0, 6).map((w) => el("span.ms-chip", { title: w }, w)),
    copy,
  );
}

/** A link to the model's page, opened in a new tab. */
export function pageLink(url) {
  if (!url || !/^https?:\/\//.test(url)) return null;
  return el("a.ms-link", { href: url, target: "_blank", rel: "noopener noreferrer", title: url, onclick: (e) => e.stopPropagation() }, "Model page");
}

/** "Update available": one click queues the newer version in the download queue. */
export function updateButton(shared, modelId, label) {
  if (!label) return null;
  const update = button(`Update: ${label}`, "pi-arrow-circle-up", async (event) => {
    event.stopPropagation();
    try {
      const task = await shared.client.queueUpdate(modelId);
      shared.toast("info", "Model Shelf", `Downloading ${task.name ?? task.source}…`);
    } catch (error) {
      shared.toast("error", "Model Shelf", error.message);
    }
  }, { compact: true, kind: "ms-update", title: `Update available: ${label} (download it)` });
  update.dataset.testid = "update";
  return update;
}

/** The metadata part of the detail drawer for `modelId` (filled in when it arrives). */
export function metadataSection(shared, modelId) {
  addStylesheet("./model-grid.css", import.meta.url);
  const section = el("div.ms-metadata", { "data-testid": "metadata" }, el("p.ms-note", {}, "…"));
  shared.client.modelMetadata(modelId).then(
    (view) => {
      section.replaceChildren(...metadataRows(shared, modelId, view));
    },
    (error) => section.replaceChildren(el("p.ms-note", {}, error.message)),
  );
  return section;
}

function metadataRows(shared, modelId, view) {
  if (view.status !== "matched") {
    return [el("h4", {}, "Metadata"), el("p.ms-note", {}, view.message ?? NOT_FETCHED)];
  }
  const title = [view.model_name, view.version_name].filter(Boolean).join(" · ");
  const licence = view.licence
    ? view.licence.name ?? `commercial use: ${(view.licence.allow_commercial_use ?? []).join(", ") || "none"}`
    : null;
  return [
    el("h4", {}, "Metadata ", trustBadge(view.trust), el("span.ms-note", {}, ` from ${view.source}`)),
    el("div.ms-meta-title", {}, title),
    view.base_model ? el("div.ms-note", {}, `Base model: ${view.base_model}`) : null,
    licence ? el("div.ms-note", {}, `Licence: ${licence}`) : null,
    triggerWords(view.trained_words, shared.toast),
    el("div.ms-row", {}, pageLink(view.page_url), updateButton(shared, modelId, view.newer_version?.name ?? view.newer_version?.source)),
  ];
}
