// The Health view: disk usage per type folder, and each problem with its one-click fix.
// Exports only (see ../common/dom.js).

import { addStylesheet, button, clear, el } from "../common/dom.js";
import { formatBytes } from "../common/format.js";
import { debounce } from "../common/sequence.js";

const SEVERITY_ICONS = { ok: "pi-check-circle", info: "pi-info-circle", warning: "pi-exclamation-triangle", error: "pi-times-circle" };

export class HealthView {
  constructor(shared) {
    addStylesheet("./health.css", import.meta.url);
    this.shared = shared;
    this.client = shared.client;
    this.disk = el("div.ms-disk", { "data-testid": "disk" });
    this.sections = el("div.ms-sections", { "data-testid": "health-sections" });
    this.summary = el("p.ms-summary");
    // Changed files and left-overs are what the last sweep found (the report says when).
    this.swept = el("p.ms-swept", { "data-testid": "swept" });
    this.element = el(
      "section.ms-view.ms-health",
      {},
      el(
        "div.ms-row",
        {},
        this.summary,
        button("Refresh", "pi-refresh", () => this.reload(), { compact: true }),
        button("Check files", "pi-search", () => this.reload(true), {
          compact: true,
          title: "Look at every file now for changes and left-overs (can take a while)",
        }),
      ),
      this.swept,
      this.disk,
      this.sections,
    );
    this.reloadSoon = debounce(() => this.reload(), 500);
    shared.on("model-shelf.library-changed", () => !this.element.hidden && this.reloadSoon());
  }

  /** The fix button of a section, by its key. */
  fixes(section) {
    const c = this.client;
    switch (section.key) {
      case "corrupted":
        return [["Repair all", "pi-wrench", () => c.repair([], true)]];
      case "missing":
        return [
          ["Download again", "pi-download", () => c.repair([], true)],
          ["Forget them", "pi-eraser", () => c.purgeGhosts()],
        ];
      case "damaged":
        return [["Re-create records", "pi-wrench", () => c.repair([], true)]];
      case "changed":
      case "pending":
        return [["Verify now", "pi-verified", () => c.verify([])]];
      case "duplicates":
        return [["Merge duplicates", "pi-clone", () => c.dedupe(true)]];
      case "orphans":
        return [["Clean up", "pi-trash", () => c.clean()]];
      default:
        return [];
    }
  }

  async run(label, action) {
    try {
      await action();
      this.shared.toast("success", "Model Shelf", `${label}: done`);
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
    this.reload();
  }

  async reload(sweep = false) {
    let report;
    try {
      report = await this.client.health(sweep);
    } catch (error) {
      this.summary.textContent = error.message;
      return;
    }
    this.summary.textContent = report.ok
      ? `All good: ${report.models.toLocaleString()} models`
      : `${report.models.toLocaleString()} models; some need a look`;
    this.swept.textContent = report.swept_at
      ? `Files last checked for changes and left-overs: ${new Date(report.swept_at).toLocaleString()}`
      : "Files not checked for changes and left-overs yet (Check files)";
    this.renderDisk(report.disk.disk);
    clear(this.sections);
    for (const section of [report.corrupted, report.missing, report.damaged, report.changed, report.pending, report.duplicates, report.orphans, ...(report.failing_loads ? [report.failing_loads] : [])]) {
      const items = section.items.slice(0, 20).map((item) =>
        el("li", {}, item.name, item.size !== null && item.size !== undefined ? ` (${formatBytes(item.size)})` : "", item.detail ? `: ${item.detail}` : ""),
      );
      const fixes = section.count && section.severity !== "ok" ? this.fixes(section) : [];
      this.sections.append(
        el(
          `div.ms-section.ms-severity-${section.severity}`,
          { "data-section": section.key },
          el(
            "div.ms-section-head",
            {},
            el("i", { class: `pi ${SEVERITY_ICONS[section.severity] ?? "pi-circle"}`, "aria-hidden": "true" }),
            el("span.ms-section-title", {}, section.title),
            el("span.ms-section-count", {}, String(section.count)),
          ),
          items.length ? el("ul.ms-items", {}, items) : null,
          fixes.length
            ? el("div.ms-row", {}, fixes.map(([label, iconName, action]) => button(label, iconName, () => this.run(label, action))))
            : null,
        ),
      );
    }
    this.shared.setCount?.("health", report.ok ? 0 : report.corrupted.count + report.missing.count + report.damaged.count);
  }

  renderDisk(disk) {
    clear(this.disk);
    const used = Math.round(disk.used_fraction * 100);
    const biggest = Math.max(1, ...disk.types.map((t) => t.bytes));
    this.disk.append(
      el("div.ms-disk-head", {}, `Disk: ${formatBytes(disk.free_bytes)} free of ${formatBytes(disk.total_bytes)} (${used}% used)`),
      el("progress.ms-progress", { max: 1, value: disk.used_fraction, class: disk.used_fraction > disk.warn_used_fraction ? "ms-progress ms-warn" : "ms-progress" }),
      el(
        "table.ms-types",
        {},
        disk.types.map((t) =>
          el(
            "tr",
            { "data-type": t.type },
            el("td", {}, t.type),
            el("td.ms-num", {}, t.models.toLocaleString()),
            el("td.ms-num", {}, formatBytes(t.bytes)),
            el("td.ms-bar-cell", {}, el("span.ms-bar", { style: { width: `${(100 * t.bytes) / biggest}%` } })),
          ),
        ),
      ),
    );
  }

  activate() {
    this.reload();
  }

  destroy() {
    this.reloadSoon.cancel();
  }
}
