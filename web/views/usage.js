// The Usage view (issue #14): uses over the last 30 days, bytes by type with the never-used part,
// the most used models, cleanup advice under a storage target (dry run, then one confirmed
// action) and preload suggestions. The chart is SVG drawn by hand. Exports only.

import { addStylesheet, button, clear, el } from "../common/dom.js";
import { formatBytes, formatDate } from "../common/format.js";
import { debounce } from "../common/sequence.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

/** Bars of uses per day (`days`: [{day, uses, runs}], oldest first). */
export function usesChart(days, width = 300, height = 90) {
  const top = Math.max(1, ...days.map((d) => d.uses));
  const step = width / Math.max(1, days.length);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 14}`, class: "ms-chart", role: "img", "data-testid": "usage-chart" });
  chart.append(svg("title", {}, "Uses per day, last 30 days"));
  days.forEach((d, i) => {
    const h = Math.round((d.uses / top) * height);
    const bar = svg("rect", { x: (i * step + 1).toFixed(1), y: height - h, width: Math.max(1, step - 2).toFixed(1), height: h, class: "ms-chart-bar", "data-day": d.day });
    bar.append(svg("title", {}, `${d.day}: ${d.uses} uses, ${d.runs} runs`));
    chart.append(bar);
  });
  chart.append(svg("line", { x1: 0, y1: height + 0.5, x2: width, y2: height + 0.5, class: "ms-chart-axis" }));
  if (days.length) {
    chart.append(svg("text", { x: 0, y: height + 12, class: "ms-chart-label" }, days[0].day.slice(5)));
    chart.append(svg("text", { x: width, y: height + 12, class: "ms-chart-label", "text-anchor": "end" }, "today"));
  }
  return chart;
}

/** One stacked bar per type: used bytes, then never-used bytes. */
export function bytesChart(types, width = 300) {
  const biggest = Math.max(1, ...types.map((t) => t.bytes));
  const rowHeight = 16;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${types.length * rowHeight}`, class: "ms-chart", role: "img", "data-testid": "bytes-chart" });
  chart.append(svg("title", {}, "Bytes by type; the lighter part was never used"));
  const barX = 110;
  types.forEach((t, i) => {
    const y = i * rowHeight;
    const full = ((width - barX) * t.bytes) / biggest;
    const never = ((width - barX) * t.never_used_bytes) / biggest;
    chart.append(svg("text", { x: 0, y: y + 11, class: "ms-chart-label" }, t.type));
    chart.append(svg("rect", { x: barX, y: y + 3, width: Math.max(1, full - never), height: 10, class: "ms-chart-bar" }));
    if (never > 0) chart.append(svg("rect", { x: barX + full - never, y: y + 3, width: never, height: 10, class: "ms-chart-never", "data-type": t.type }));
  });
  return chart;
}

export class UsageView {
  constructor(shared) {
    addStylesheet("./usage.css", import.meta.url);
    this.shared = shared;
    this.client = shared.client;
    this.summary = el("p.ms-summary");
    this.charts = el("div.ms-usage-charts");
    this.top = el("table.ms-usage-top", { "data-testid": "usage-top" });
    this.target = el("input.ms-input", { name: "free", placeholder: "free e.g. 50GiB", size: 10 });
    this.plan = el("div.ms-usage-plan", { "data-testid": "cleanup-plan" });
    this.preload = el("div.ms-usage-preload", { "data-testid": "preload" });
    this.element = el(
      "section.ms-view.ms-usage",
      { "data-testid": "usage" },
      el("div.ms-row", {}, this.summary, button("Refresh", "pi-refresh", () => this.reload(), { compact: true })),
      this.charts,
      this.top,
      el("h4", {}, "Cleanup advice"),
      el("form.ms-row", { onsubmit: (e) => (e.preventDefault(), this.showPlan()) }, this.target, button("Show plan", "pi-search", () => this.showPlan(), { compact: true })),
      this.plan,
      el("h4", {}, "Preload"),
      this.preload,
    );
    this.reloadSoon = debounce(() => this.reload(), 500);
    shared.on("model-shelf.library-changed", () => !this.element.hidden && this.reloadSoon());
  }

  activate() {
    this.reload();
  }

  async reload() {
    let report;
    try {
      report = await this.client.usage();
    } catch (error) {
      this.summary.textContent = error.message;
      return;
    }
    const week = report.days.slice(-7).reduce((n, d) => n + d.uses, 0);
    this.summary.textContent = `${report.used_models} of ${report.models} models used; ${week} uses this week; never used: ${formatBytes(report.never_used_bytes)} of ${formatBytes(report.total_bytes)}`;
    clear(this.charts);
    this.charts.append(
      el("figure", {}, usesChart(report.days), el("figcaption", {}, "Uses per day (30 days)")),
      el("figure", {}, bytesChart(report.types), el("figcaption", {}, "Bytes by type (light: never used)")),
    );
    clear(this.top);
    this.top.append(el("tr", {}, el("th", {}, "Model"), el("th.ms-num", {}, "Uses"), el("th.ms-num", {}, "7 d"), el("th.ms-num", {}, "Last used")));
    for (const item of report.items.slice(0, 10)) {
      const workflows = item.workflows.map((w) => w.name ?? w.key).join(", ");
      this.top.append(
        el(
          "tr",
          { "data-model": item.name, title: workflows ? `Workflows: ${workflows}` : "" },
          el("td", {}, item.name),
          el("td.ms-num", {}, String(item.uses)),
          el("td.ms-num", {}, String(item.uses_7d)),
          el("td.ms-num", {}, item.last_used ? formatDate(item.last_used) : "never"),
        ),
      );
    }
    this.loadPreload();
  }

  async showPlan() {
    const free = this.target.value.trim();
    clear(this.plan);
    if (!free) return;
    let plan;
    try {
      plan = await this.client.cleanupPlan(free);
    } catch (error) {
      this.plan.append(el("p.ms-error", {}, error.message));
      return;
    }
    const list = el("ul.ms-items", {}, plan.items.map((i) => el("li", { "data-item": i.name }, `${i.name} (${formatBytes(i.size)}): ${i.reason}`)));
    this.plan.append(
      el("p", {}, `Frees ${formatBytes(plan.planned_bytes)} of ${formatBytes(plan.target_bytes)}${plan.enough ? "" : " (not enough can go safely)"}; ${plan.recent_kept} used this week kept.`),
      list,
      plan.items.length ? button("Remove these (records kept, fetched again when needed)", "pi-trash", () => this.apply(free), { kind: "danger" }) : null,
    );
  }

  async apply(free) {
    if (!window.confirm(`Remove the listed models to free ${free}? Their records stay and a workflow fetches them again.`)) return;
    try {
      const result = await this.client.cleanup(free);
      this.shared.toast("success", "Model Shelf", `${formatBytes(result.freed_bytes)} freed`);
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
    clear(this.plan);
    this.reload();
  }

  async loadPreload() {
    let suggestions;
    try {
      suggestions = await this.client.preloadSuggestions();
    } catch (error) {
      return;
    }
    clear(this.preload);
    if (!suggestions.length) this.preload.append(el("p.ms-muted", {}, "Nothing to preload."));
    for (const s of suggestions) {
      this.preload.append(
        el("div.ms-row", { "data-suggestion": s.name }, el("span", {}, `${s.name}: ${s.reason}`), button("Fetch", "pi-download", () => this.fetch(s.name), { compact: true })),
      );
    }
  }

  async fetch(name) {
    try {
      await this.client.preload(name);
      this.shared.toast("success", "Model Shelf", `${name}: download queued`);
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
    this.loadPreload();
  }
}
