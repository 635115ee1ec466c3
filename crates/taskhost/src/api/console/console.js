// The taskhost console's script. Every change is a call of the /v1 API,
// authenticated by the session cookie and the console header.
"use strict";
const H = { "x-taskhost-console": "1" };

async function api(method, path, body, type) {
  const headers = Object.assign({}, H);
  if (type) headers["content-type"] = type;
  const r = await fetch(path, { method, headers, body, credentials: "same-origin" });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    throw new Error(json && json.error ? json.error.message : (text || r.statusText));
  }
  return json;
}

function flash(message, bad) {
  const el = document.getElementById("flash");
  if (!el) return;
  el.textContent = message;
  el.className = bad ? "bad" : "ok";
}

function shown(el, message) {
  if (!el) return;
  el.textContent = message || "";
  el.hidden = !message;
}

// Times in the viewer's zone; UTC stays in the title.
function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) t.textContent = d.toLocaleString();
  }
}

// Live pages: their <main> is fetched again and swapped, no reload.
async function refresh() {
  const main = document.querySelector("main");
  if (!main) return;
  const r = await fetch(location.href, { headers: H, credentials: "same-origin" });
  if (!r.ok) return;
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  const fresh = doc.querySelector("main");
  if (!fresh) return;
  const focused = document.activeElement && document.activeElement.id;
  main.replaceWith(fresh);
  localTimes(fresh);
  if (focused) { const f = document.getElementById(focused); if (f) f.focus(); }
}

function live() {
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  const every = parseInt(main.dataset.live, 10) || 3000;
  setTimeout(async () => { try { await refresh(); } finally { live(); } }, every);
}

document.addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-action]");
  if (b) {
    e.preventDefault();
    if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
    b.disabled = true;
    try {
      await api(b.dataset.method || "POST", b.dataset.action);
      flash(b.textContent + ": done");
      await refresh();
    } catch (err) {
      flash(err.message, true);
      b.disabled = false;
    }
    return;
  }
  const d = e.target.closest("button[data-download]");
  if (d) {
    e.preventDefault();
    const r = await fetch(d.dataset.download, { headers: H, credentials: "same-origin" });
    if (!r.ok) { flash("download failed: " + r.status, true); return; }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = d.dataset.filename || "plugin.wasm";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }
});

function setupUpload() {
  const form = document.getElementById("upload");
  if (!form) return;
  const error = document.getElementById("upload-error");
  const input = form.querySelector("input[type=file]");
  const drop = form.querySelector(".drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) input.files = e.dataTransfer.files;
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    shown(error, "");
    const file = input.files[0];
    if (!file) { shown(error, "choose a .wasm file"); return; }
    const q = new URLSearchParams({ name: form.name.value, version: form.version.value });
    try {
      await api("POST", "/v1/plugins?" + q, await file.arrayBuffer(), "application/wasm");
      flash("uploaded " + form.name.value + " " + form.version.value);
      location.reload();
    } catch (err) {
      shown(error, "Refused: " + err.message);
    }
  });
}

function setupSchedule() {
  const form = document.getElementById("schedule");
  if (!form) return;
  const body = document.querySelector("#preview tbody");
  const error = document.getElementById("preview-error");
  let timer = null;
  async function preview() {
    const q = new URLSearchParams({ expr: form.expr.value, timezone: form.timezone.value, count: "10" });
    try {
      const p = await api("GET", "/v1/cron/preview?" + q);
      shown(error, "");
      body.innerHTML = "";
      for (const f of p.fires) {
        const tr = document.createElement("tr");
        if (f.offset_changed) tr.className = "dst";
        for (const text of [f.local, f.utc, f.offset + (f.offset_changed ? " (clock change)" : "")]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
    } catch (err) {
      body.innerHTML = "";
      shown(error, err.message);
    }
  }
  for (const name of ["expr", "timezone"]) {
    form[name].addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(preview, 250); });
  }
  preview();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = document.getElementById("schedule-error");
    shown(err, "");
    let input;
    try { input = JSON.parse(form.input.value || "null"); } catch (x) { shown(err, "Input is not JSON: " + x.message); return; }
    const body = {
      name: form.name.value, plugin_id: form.plugin_id.value, input,
      trigger: { kind: "cron", expr: form.expr.value, timezone: form.timezone.value },
    };
    const id = form.dataset.id;
    try {
      if (id) {
        delete body.plugin_id; // a schedule keeps its plugin
        await api("PATCH", "/v1/schedules/" + encodeURIComponent(id), JSON.stringify(body), "application/json");
      } else {
        await api("POST", "/v1/schedules", JSON.stringify(body), "application/json");
      }
      location.href = "/schedules";
    } catch (x) {
      shown(err, x.message);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  setupUpload();
  setupSchedule();
  live();
});
