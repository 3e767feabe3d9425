// The Settings view: library root, download limits, Hugging Face token and Civitai key.
// Credentials come back masked only; an empty field leaves a stored one as it is.
// Exports only (see ../common/dom.js).

import { addStylesheet, button, el } from "../common/dom.js";

const MIB = 1024 * 1024;

export class SettingsView {
  constructor(shared) {
    addStylesheet("./settings.css", import.meta.url);
    this.shared = shared;
    this.client = shared.client;
    this.form = el("form.ms-settings", { "data-testid": "settings", onsubmit: (event) => { event.preventDefault(); this.save(); } });
    this.element = el("section.ms-view.ms-settings-view", {}, this.form);
  }

  field(label, input, note) {
    return el("label.ms-field", {}, el("span", {}, label), input, note ? el("small.ms-note", {}, note) : null);
  }

  secretField(label, name, view) {
    const input = el("input.ms-input", {
      type: "password",
      name,
      autocomplete: "off",
      placeholder: view.set ? `${view.masked} (${view.source})` : "not set",
      "aria-label": label,
    });
    const clearButton = view.source === "stored"
      ? button("Remove", "pi-trash", async () => this.save({ [name]: "" }), { compact: true })
      : null;
    this.inputs[name] = input;
    return el("div.ms-secret", {}, this.field(label, input), clearButton);
  }

  async load() {
    let view;
    try {
      view = await this.client.settings();
    } catch (error) {
      this.form.replaceChildren(el("p.ms-note", {}, error.message));
      return;
    }
    this.view = view;
    this.inputs = {};
    const root = el("input.ms-input", { name: "root", value: view.pending_root ?? view.root, disabled: !view.root_editable, "aria-label": "Library root" });
    const concurrency = el("input.ms-input", { type: "number", min: 1, max: 32, name: "concurrency", value: view.concurrency, "aria-label": "Downloads at once" });
    const bandwidth = el("input.ms-input", {
      type: "number",
      min: 0,
      step: "0.1",
      name: "bandwidth",
      value: view.bandwidth_limit_bytes_per_second / MIB,
      "aria-label": "Bandwidth limit (MiB/s)",
    });
    // Issue #11: a workflow's downloads may reach this machine or its network only on these.
    const fetchHosts = el("input.ms-input", {
      name: "allowed_fetch_hosts",
      value: view.allowed_fetch_hosts.join(", "),
      placeholder: "mirror.lan, 10.0.0.5:8080",
      "aria-label": "Private hosts workflows may download from",
    });
    Object.assign(this.inputs, { root, concurrency, bandwidth, fetchHosts });
    this.form.replaceChildren(
      this.field("Library root", root, view.pending_root ? `Used after a restart (now: ${view.root})` : `From ${view.root_source}`),
      this.field("Downloads at once", concurrency),
      this.field("Bandwidth limit, MiB/s (0: none)", bandwidth),
      this.field(
        "Private hosts workflows may download from",
        fetchHosts,
        "host or host:port, comma separated; others on this machine or network are refused",
      ),
      this.secretField("Hugging Face token", "hf_token", view.hf_token),
      this.secretField("Civitai API key", "civitai_api_key", view.civitai_api_key),
      el("div.ms-row", {}, el("button.ms-btn.ms-primary", { type: "submit" }, "Save")),
    );
  }

  async save(extra = {}) {
    const view = this.view;
    const inputs = this.inputs;
    const changes = { ...extra };
    if (view.root_editable && inputs.root.value.trim() && inputs.root.value.trim() !== (view.pending_root ?? view.root)) {
      changes.root = inputs.root.value.trim();
    }
    const concurrency = Number(inputs.concurrency.value);
    if (concurrency !== view.concurrency) changes.concurrency = concurrency;
    const bandwidth = Math.round(Number(inputs.bandwidth.value) * MIB);
    if (bandwidth !== view.bandwidth_limit_bytes_per_second) changes.bandwidth_limit_bytes_per_second = bandwidth;
    const fetchHosts = inputs.fetchHosts.value.split(",").map((h) => h.trim().toLowerCase()).filter(Boolean);
    if (fetchHosts.join(",") !== view.allowed_fetch_hosts.join(",")) changes.allowed_fetch_hosts = fetchHosts;
    for (const name of ["hf_token", "civitai_api_key"]) {
      if (!(name in extra) && inputs[name].value.trim()) changes[name] = inputs[name].value.trim();
    }
    if (!Object.keys(changes).length) return;
    try {
      await this.client.saveSettings(changes);
      this.shared.toast("success", "Model Shelf", "Settings saved");
    } catch (error) {
      this.shared.toast("error", "Model Shelf", error.message);
    }
    this.load();
  }

  activate() {
    this.load();
  }
}
