// The Downloads view: add by pasted link, live progress (speed, ETA), pause/resume/cancel/retry
// one or all. Progress arrives as "model-shelf.task" events. Exports only (see ../common/dom.js).

import { addStylesheet, append, button, clear, el } from "../common/dom.js";
import { formatBytes, formatEta, formatSpeed } from "../common/format.js";
import { debounce } from "../common/sequence.js";
import { loadTypeFolders } from "./types.js";

const ACTIVE = new Set(["queued", "downloading", "verifying"]);

/** "peer 1.0 GB, store 2 MB · saved 1.0 GB" when a LAN peer or a team store sent bytes. */
function fromTeam(sources) {
  const team = Object.entries(sources ?? {}).filter(([kind, n]) => kind !== "internet" && n > 0);
  if (!team.length) return "";
  const saved = team.reduce((sum, [, n]) => sum + n, 0);
  return `from ${team.map(([kind, n]) => `${kind} ${formatBytes(n)}`).join(", ")} · saved ${formatBytes(saved)}`;
}

function actionsFor(state) {
  switch (state) {
    case "queued":
    case "downloading":
    case "verifying":
      return ["pause", "cancel"];
    case "paused":
      return ["resume", "cancel"];
    case "failed":
      return ["retry", "cancel"];
    case "cancelled":
      return ["retry"];
    default:
      return [];
  }
}

const ACTION_ICONS = { pause: "pi-pause", resume: "pi-play", cancel: "pi-times", retry: "pi-refresh" };

export class DownloadsView {
  constructor(shared) {
    addStylesheet("./downloads.css", import.meta.url);
    this.shared = shared;
    this.client = shared.client;
    this.tasks = new Map();
    this.rows = new Map();

    this.source = el("input.ms-input", {
      type: "url",
      placeholder: "Paste a link: https://…, Hugging Face or Civitai",
      "aria-label": "Download source",
      "data-testid": "download-source",
      onkeydown: (event) => event.key === "Enter" && this.add(),
    });
    this.type = el(
      "select.ms-input",
      { "aria-label": "Type folder", "data-testid": "download-type" },
      el("option", { value: "" }, "Type: from the file"),
    );
    loadTypeFolders(this.client).then(
      (types) => this.type.append(...types.map((t) => el("option", { value: t }, t))),
      () => {}, // "from the file" still works; adding shows any server error
    );
    this.list = el("div.ms-tasks", { "data-testid": "tasks" });
    this.empty = el("p.ms-note", {}, "No downloads yet.");
    this.element = el(
      "section.ms-view.ms-downloads",
      {},
      el(
        "div.ms-toolbar",
        {},
        this.source,
        this.type,
        button("Add", "pi-plus", () => this.add(), { kind: "ms-primary" }),
      ),
      el(
        "div.ms-row.ms-bulk",
        {},
        button("Pause all", "pi-pause", () => this.all("pause")),
        button("Resume all", "pi-play", () => this.all("resume")),
        button("Cancel all", "pi-times", () => confirm("Cancel every unfinished download?") && this.all("cancel")),
      ),
      this.empty,
      this.list,
    );
    this.reloadSoon = debounce(() => this.reload(), 200);
    shared.on("model-shelf.task", (event) => this.onProgress(event));
    this.reload();
  }

  async add() {
    const source = this.source.value.trim();
    if (!source) return;
    try {
      const task = await this.client.addDownload(source, this.type.value || undefined);
      this.source.value = "";
      this.upsert(task);
      if (task.state === "done") {
        this.shared.toast("info", "Model Shelf", task.message ?? `${task.model_name} is already in the library`);
      }
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
  }

  async all(action) {
    try {
      for (const task of await this.client.allAction(action)) this.upsert(task);
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
  }

  async act(id, action) {
    try {
      this.upsert(await this.client.taskAction(id, action));
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
  }

  async reload() {
    try {
      // The first page: every unfinished task, then the latest finished ones.
      const page = await this.client.downloads();
      this.tasks.clear();
      for (const row of this.rows.values()) row.remove();
      this.rows.clear();
      for (const task of page.items) this.upsert(task);
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
  }

  /** A progress event: {task_id, state, bytes_done, total_bytes, speed_bytes_per_second, ...}. */
  onProgress(event) {
    const task = this.tasks.get(event.task_id);
    if (!task) return this.reloadSoon(); // added elsewhere (the CLI, a workflow)
    this.upsert({
      ...task,
      state: event.state,
      bytes_done: event.bytes_done,
      total_bytes: event.total_bytes ?? task.total_bytes,
      speed_bytes_per_second: event.speed_bytes_per_second,
      eta_seconds: event.eta_seconds,
      message: event.message,
      error_code: event.error_code,
      model_name: event.model_name ?? task.model_name,
      byte_sources: event.byte_sources ?? task.byte_sources,
      seq: event.seq,
    });
  }

  /** Show `task` (an answer or an event), unless what is shown is newer: an answer can arrive
   * after an event that already says more (see EventHub.sequence on the server). */
  upsert(task) {
    const shown = this.tasks.get(task.id);
    if (shown && (shown.seq ?? 0) > (task.seq ?? 0)) return;
    this.tasks.set(task.id, task);
    let row = this.rows.get(task.id);
    if (!row) {
      row = el("div.ms-task", { "data-testid": "task", "data-task": task.id });
      this.rows.set(task.id, row);
      this.list.prepend(row);
    }
    this.renderTask(row, task);
    this.empty.hidden = this.rows.size > 0;
    const active = [...this.tasks.values()].filter((t) => ACTIVE.has(t.state)).length;
    this.shared.setCount?.("downloads", active);
  }

  renderTask(row, task) {
    row.dataset.state = task.state;
    clear(row);
    const title =
      task.model_name ?? (task.name || task.filename ? `${task.model_type ?? "?"}/${task.name ?? task.filename}` : task.source);
    const fraction = task.total_bytes ? Math.min(1, task.bytes_done / task.total_bytes) : null;
    const bar = el("progress.ms-progress", {
      max: 1,
      "data-testid": "progress",
      "aria-label": `Progress of ${title}`,
    });
    if (fraction !== null) bar.value = fraction;
    else if (task.state === "done") bar.value = 1;
    else bar.removeAttribute("value"); // indeterminate until the size is known
    const numbers = [
      task.total_bytes ? `${formatBytes(task.bytes_done)} / ${formatBytes(task.total_bytes)}` : formatBytes(task.bytes_done),
      task.state === "downloading" ? formatSpeed(task.speed_bytes_per_second) : "",
      task.state === "downloading" ? formatEta(task.eta_seconds) : "",
      fromTeam(task.byte_sources),
    ].filter(Boolean);
    append(
      row,
      el(
        "div.ms-task-head",
        {},
        el("span.ms-task-title", { title: task.source }, title),
        el(`span.ms-state.ms-state-${task.state}`, { "data-testid": "state" }, task.state),
      ),
      bar,
      el("div.ms-task-numbers", {}, numbers.join(" · ")),
      task.message ? el("div.ms-note", {}, task.error_code ? `[${task.error_code}] ${task.message}` : task.message) : null,
      el(
        "div.ms-row",
        {},
        actionsFor(task.state).map((action) =>
          button(action[0].toUpperCase() + action.slice(1), ACTION_ICONS[action], () => this.act(task.id, action), {
            compact: true,
            title: action,
          }),
        ),
      ),
    );
    for (const b of row.querySelectorAll("button")) b.dataset.action = b.title;
  }

  activate() {
    this.reload();
  }

  destroy() {
    this.reloadSoon.cancel();
  }
}
