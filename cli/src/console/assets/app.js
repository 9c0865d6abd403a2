// Nur console: one page, routed by the URL's hash. Everything shown is
// built with DOM calls (text nodes only), never HTML from the server.
"use strict";

const $ = (id) => document.getElementById(id);
const main = $("main");
let ctx = { namespace: "" };
let cleanups = [];

// h("tag.class", {attr: value}, child, ...): an element; strings become text.
function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const KINDS = {
  no_cluster: "No cluster",
  unreachable: "Cluster unreachable",
  no_crd: "Nur is not installed",
  forbidden: "Not allowed",
  not_found: "Not found",
  no_ready_pod: "No ready pod",
  call_failed: "The call failed",
  bad_request: "Bad request",
  refused: "The cluster refused",
};

function showProblem(p) {
  $("problem-kind").textContent = KINDS[p.kind] || p.kind;
  $("problem-message").textContent = p.message;
  $("problem").hidden = false;
}
function clearProblem() { $("problem").hidden = true; }

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (opts.method && opts.method !== "GET") opts.headers["X-Nur-Console"] = "1";
  if (opts.json !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  let response;
  try {
    response = await fetch(path, opts);
  } catch (e) {
    throw { kind: "unreachable", message: "nur console does not answer (" + e + "): is `nur console` still running?" };
  }
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = { kind: "refused", message: text }; }
  if (!response.ok) throw body;
  return body;
}

function live(path, handlers) {
  const source = new EventSource(path);
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => fn(e.data ? JSON.parse(e.data) : null));
  }
  cleanups.push(() => source.close());
  return source;
}

function every(ms, fn) {
  fn();
  const t = setInterval(fn, ms);
  cleanups.push(() => clearInterval(t));
}

function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 120) return Math.round(s) + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  if (s < 172800) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}

const shortDigest = (d) => (d ? d.slice(0, 19) : "");
const badge = (status, text) => h("span.badge." + status, { "data-status": status }, text || status);
const enc = encodeURIComponent;

// Pages --------------------------------------------------------------

function functionsPage() {
  const ns = ctx.namespace || "";
  const all = ns === "*";
  const body = h("tbody", { id: "functions-body" });
  const table = h("div.scroll", {}, h("table", { id: "functions" },
    h("thead", {}, h("tr", {},
      all ? h("th", {}, "Namespace") : null,
      h("th", {}, "Name"), h("th", {}, "Ready"), h("th", {}, "Pods"),
      h("th.hide-small", {}, "Digest"), h("th", {}, "Routes"), h("th.hide-small", {}, "Age"),
      h("th", {}, "Last problem"))),
    body));
  const empty = h("p.empty", { id: "functions-empty", hidden: true },
    "No functions in this namespace yet: `nur deploy` deploys a nurfile's.");
  main.replaceChildren(h("h1", {}, "Functions", all ? " in every namespace" : ns ? " in " + ns : ""), table, empty);
  live("/api/watch/functions?namespace=" + enc(ns), {
    functions(list) {
      clearProblem();
      empty.hidden = list.length > 0;
      body.replaceChildren(...list.map((f) => h("tr", { "data-name": f.name },
        all ? h("td", {}, f.namespace) : null,
        h("td", {}, h("a", { href: "#/fn/" + enc(f.namespace) + "/" + enc(f.name) }, f.name)),
        h("td", { class: "ready" }, badge(f.ready, f.scaledToZero ? "scaled to zero" : f.ready)),
        h("td", {}, f.scaledToZero ? "0 (scaled to zero)" : f.readyReplicas + "/" + f.replicas),
        h("td.hide-small.mono", {}, shortDigest(f.digest)),
        h("td", {}, f.routes.join(", ") || "—"),
        h("td.hide-small", {}, age(f.created)),
        h("td.msg", {}, f.problem || ""))));
    },
    problem: showProblem,
  });
}

function functionPage(ns, name, tab) {
  const base = "#/fn/" + enc(ns) + "/" + enc(name);
  const tabs = [["overview", "Overview"], ["logs", "Logs"], ["metrics", "Metrics"], ["try", "Try it"]];
  const content = h("section", { id: "tab-" + tab });
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← Functions")),
    h("h1", {}, name, h("span.muted", {}, " in " + ns)),
    h("nav.tabs", { "aria-label": "Function" }, tabs.map(([id, label]) =>
      h("a", { href: base + (id === "overview" ? "" : "/" + id), id: "tab-link-" + id,
        "aria-current": id === tab ? "page" : null }, label))),
    content);
  const path = "/api/functions/" + enc(ns) + "/" + enc(name);
  ({ overview, logs: logsTab, metrics: metricsTab, try: tryTab })[tab](content, path, ns, name);
}

function table(id, headers, rows) {
  if (!rows.length) return h("p.empty", { id }, "None.");
  return h("div.scroll", {}, h("table", { id },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h(typeof c === "string" && c.length > 40 ? "td.msg" : "td", {}, c)))))));
}

function facts(id, pairs) {
  return h("dl.facts", { id }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function overview(content, path, ns, name) {
  let replicasInput;
  const render = (d) => {
    clearProblem();
    const s = d.summary;
    const abi = d.module.abi;
    const scaling = d.autoscaling
      ? "autoscaled: " + (d.autoscaling.minReplicas ?? 1) + " to " + d.autoscaling.maxReplicas + " pods"
      : (d.replicas ?? 1) + " pods";
    replicasInput = h("input", { id: "replicas", type: "number", min: 0, value: d.replicas ?? 1,
      disabled: d.autoscaling ? true : null });
    const scaleForm = h("form.row", { id: "scale-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api(path + "/scale", { method: "POST", json: { replicas: Number(replicasInput.value) } });
        $("scale-result").textContent = "spec.replicas set to " + replicasInput.value;
      } catch (p) { showProblem(p); }
    } }, h("label", { for: "replicas" }, "Replicas"), replicasInput,
      h("button", { type: "submit", id: "scale", disabled: d.autoscaling ? true : null }, "Scale"),
      h("span.muted", { id: "scale-result", role: "status" }),
      h("button.danger", { type: "button", id: "delete", onclick: () => confirmDelete(path, ns, name) }, "Delete"));
    content.replaceChildren(
      h("div.row", {}, badge(s.ready, s.scaledToZero ? "scaled to zero" : "Ready: " + s.ready),
        h("span", {}, s.readyReplicas + "/" + s.replicas + " pods ready"), s.reason ? h("span.muted", {}, s.reason) : null),
      h("h2", {}, "Conditions"),
      table("conditions", ["Type", "Status", "Reason", "Message"],
        d.conditions.map((c) => [c.type, badge(c.status), c.reason, c.message])),
      h("h2", {}, "Module"),
      facts("module", [["URL", h("span.mono", {}, d.module.url)], ["Digest", h("span.mono", {}, d.module.digest || "not checked yet")],
        ["Size", d.module.size != null ? d.module.size + " bytes" : ""],
        ["Kind", abi && abi.kind ? (abi.kind === "wasi-command"
          ? "WASI command (stdin and stdout are the connection)" : "Nur ABI") : ""],
        ["Imports", abi ? abi.imports.join(", ") || "none" : ""],
        ["Exports", abi ? abi.exports.join(", ") : ""],
        ["Memory", abi ? abi.memoryPages + " pages (" + abi.memoryPages * 64 + " KiB)" +
          (abi.maximumMemoryPages != null ? ", at most " + abi.maximumMemoryPages : "") : ""]]),
      h("h2", {}, "Routes"),
      h("p", { id: "routes" }, s.routes.length ? s.routes.join(", ") + " (through nur-gateway)" :
        "None: reached through its Service on port " + d.port + "."),
      h("h2", {}, "Scaling and limits"),
      facts("scaling", [["Scaling", scaling], ["Scale to zero", d.scaleToZero ? "after " + d.scaleToZero.idleAfter + " idle" : "off"],
        ["Limits", d.limits ? Object.entries(d.limits).map(([k, v]) => k + " " + v).join(", ") : "defaults"]]),
      scaleForm,
      h("h2", {}, "Pods"),
      table("pods", ["Name", "Ready", "State", "Restarts", "Node"],
        d.pods.map((p) => [p.name, p.ready ? "yes" : "no", p.state, p.restarts, p.node])),
      h("h2", {}, "Recent events"),
      table("events", ["Object", "Type", "Reason", "Message"],
        d.events.map((e) => [e.object, e.type, e.reason, e.message + (e.count > 1 ? " (×" + e.count + ")" : "")])));
  };
  let stop = false;
  cleanups.push(() => { stop = true; });
  const refresh = async () => {
    if (stop) return;
    if (document.activeElement && document.activeElement.id === "replicas") return;
    try { render(await api(path)); } catch (p) { showProblem(p); }
  };
  every(3000, refresh);
}

function confirmDelete(path, ns, name) {
  const dialog = $("confirm");
  $("confirm-text").textContent = "Delete function " + name + " in " + ns + "? Its pods stop; its module stays in the store.";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      await api(path, { method: "DELETE" });
      location.hash = "#/";
    } catch (p) { showProblem(p); }
  };
  dialog.showModal();
  $("confirm-cancel").focus();
}

function logLine(l) {
  return h("li", { "data-connection": l.connection ?? "" },
    h("span.time", {}, l.time.replace("T", " ").replace(/\.\d+Z$/, "Z")),
    h("span.pod", {}, l.pod),
    l.connection != null ? h("span.conn", {}, "conn " + l.connection) : null,
    h("span.text", {}, l.message));
}

function logsTab(content, path) {
  const list = h("ol.log", { id: "log-lines", "aria-live": "polite" });
  const filter = h("input", { id: "log-filter", type: "search", placeholder: "Filter lines", "aria-label": "Filter lines" });
  const count = h("span.muted", { id: "log-count", role: "status" });
  let paused = false;
  const held = [];
  const pause = h("button.secondary", { type: "button", id: "log-pause", "aria-pressed": "false", onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) { held.splice(0).forEach(add); }
    update();
  } }, "Pause");
  const matches = (li) => !filter.value || li.textContent.toLowerCase().includes(filter.value.toLowerCase());
  const update = () => {
    let shown = 0;
    for (const li of list.children) { li.hidden = !matches(li); if (!li.hidden) shown++; }
    count.textContent = shown + " lines" + (paused ? ", paused (" + held.length + " new held)" : "");
  };
  const add = (l) => {
    const li = logLine(l);
    li.hidden = !matches(li);
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(li);
    while (list.children.length > 2000) list.firstChild.remove();
    if (atEnd) list.scrollTop = list.scrollHeight;
  };
  filter.addEventListener("input", update);
  content.replaceChildren(h("div.row", {}, filter, pause, count), list);
  live(path + "/logs", {
    reset() { list.replaceChildren(); held.length = 0; clearProblem(); update(); },
    line(l) { if (paused) held.push(l); else add(l); update(); },
    problem: showProblem,
  });
}

// Metrics: samples of summed counters every 2 s, drawn as rates.
const METRIC_INTERVAL = 2000;
const METRIC_KEEP = 300;

function quantile(buckets, q) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0, prevCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (bound === null) return prevBound;
      const inBucket = count - prevCount;
      return prevBound + (bound - prevBound) * (inBucket > 0 ? (rank - prevCount) / inBucket : 1);
    }
    prevBound = bound ?? prevBound;
    prevCount = count;
  }
  return prevBound;
}

function chart(id, title, unit, series) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 300 100");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const caption = h("figcaption", {}, h("span", {}, title),
    h("span.legend", {}, series.map((s, i) => h("span.k" + i, { id: id + "-" + s.key }, s.label))));
  const fig = h("figure.chart", { id, "data-points": 0 }, caption, svg);
  fig.draw = (points) => {
    // points: [{t, key: value}] over time
    fig.setAttribute("data-points", points.length);
    const max = Math.max(1e-9, ...points.flatMap((p) => series.map((s) => p[s.key] ?? 0)));
    const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
    const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * 300 : 300);
    const y = (v) => 98 - (v / max) * 94;
    const kids = [0.25, 0.5, 0.75].map((f) => {
      const l = document.createElementNS(svg.namespaceURI, "line");
      l.setAttribute("class", "grid");
      l.setAttribute("x1", 0); l.setAttribute("x2", 300); l.setAttribute("y1", y(max * f)); l.setAttribute("y2", y(max * f));
      return l;
    });
    series.forEach((s, i) => {
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("class", "s" + i);
      line.setAttribute("points", points.map((p) => x(p.t).toFixed(1) + "," + y(p[s.key] ?? 0).toFixed(1)).join(" "));
      line.setAttribute("vector-effect", "non-scaling-stroke");
      kids.push(line);
      const last = points.length ? points[points.length - 1][s.key] : null;
      $(id + "-" + s.key).textContent = s.label + " " + (last == null ? "–" : fmt(last) + unit);
    });
    svg.replaceChildren(...kids);
  };
  return fig;
}

const fmt = (v) => (v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2));

function metricsTab(content, path) {
  const charts = [
    chart("chart-connections", "Connections per second", "/s", [{ key: "rate", label: "conn" }]),
    chart("chart-active", "Active connections", "", [{ key: "active", label: "active" }]),
    chart("chart-latency", "Answer time", " ms", [{ key: "p50", label: "p50" }, { key: "p90", label: "p90" }, { key: "p99", label: "p99" }]),
    chart("chart-bytes", "Bytes per second", " B/s", [{ key: "in", label: "in" }, { key: "out", label: "out" }]),
    chart("chart-faults", "Guest faults per second", "/s", [{ key: "faults", label: "faults" }]),
  ];
  const gatewayCharts = [
    chart("chart-gateway", "Through the gateway, per second", "/s", [{ key: "gwRate", label: "requests" }, { key: "gwWakes", label: "wakes" }]),
    chart("chart-gateway-wait", "Gateway: mean wait for a pod", " ms", [{ key: "gwWait", label: "wait" }]),
  ];
  const totals = h("p.muted", { id: "metrics-totals", role: "status" }, "Reading the pods' metrics…");
  const gatewayTotals = h("p.muted", { id: "gateway-totals" });
  const gatewayPart = h("section", { id: "metrics-gateway", hidden: true },
    h("h2", {}, "Gateway"), gatewayTotals, h("div.charts", {}, gatewayCharts));
  content.replaceChildren(totals, h("div.charts", {}, charts), gatewayPart);
  const samples = [];
  const points = [];
  every(METRIC_INTERVAL, async () => {
    let s;
    try { s = await api(path + "/metrics"); } catch (p) { showProblem(p); return; }
    clearProblem();
    const prev = samples[samples.length - 1];
    samples.push(s);
    if (samples.length > METRIC_KEEP) samples.shift();
    const faults = Object.values(s.faults).reduce((a, b) => a + b, 0);
    totals.textContent = s.connections + " connections in all on " + s.pods + " pods, " + faults + " faults" +
      (s.unread.length ? "; unread: " + s.unread.join("; ") : "");
    totals.setAttribute("data-connections", s.connections);
    const byKind = Object.entries(s.faults).filter(([, v]) => v > 0).map(([k, v]) => k + " " + v);
    if (byKind.length) totals.textContent += " (" + byKind.join(", ") + ")";
    const gw = s.gateway;
    if (gw || s.gatewayUnread.length) {
      gatewayPart.hidden = false;
      gatewayTotals.textContent = gw
        ? gw.connections + " through " + gw.pods + " gateway pods, " + gw.active + " open now, " + gw.wakes +
          " held for a pod (" + (gw.wakes ? Math.round((gw.wakeSeconds / gw.wakes) * 1000) + " ms mean" : "none") + "), " +
          gw.noReadyPod + " without a pod, " + gw.upstreamErrors + " connect errors"
        : "";
      if (s.gatewayUnread.length) gatewayTotals.textContent += (gw ? "; " : "") + "unread: " + s.gatewayUnread.join("; ");
      gatewayTotals.setAttribute("data-connections", gw ? gw.connections : "");
    }
    if (!prev) return;
    const dt = Math.max(0.001, (s.time - prev.time) / 1000);
    const delta = (a, b) => Math.max(0, a - b);
    const buckets = s.durationBuckets.map(([b, c], i) => [b, delta(c, prev.durationBuckets[i] ? prev.durationBuckets[i][1] : 0)]);
    const ms = (q) => { const v = quantile(buckets, q); return v == null ? null : v * 1000; };
    const prevFaults = Object.values(prev.faults).reduce((a, b) => a + b, 0);
    points.push({
      t: s.time, rate: delta(s.connections, prev.connections) / dt, active: s.active,
      p50: ms(0.5), p90: ms(0.9), p99: ms(0.99),
      in: delta(s.receivedBytes, prev.receivedBytes) / dt, out: delta(s.sentBytes, prev.sentBytes) / dt,
      faults: delta(faults, prevFaults) / dt,
    });
    const [g, pg] = [s.gateway, prev.gateway];
    if (g && pg) {
      const wakes = delta(g.wakes, pg.wakes);
      Object.assign(points[points.length - 1], {
        gwRate: delta(g.connections, pg.connections) / dt, gwWakes: wakes / dt,
        gwWait: wakes ? (delta(g.wakeSeconds, pg.wakeSeconds) / wakes) * 1000 : 0,
      });
    }
    if (points.length > METRIC_KEEP) points.shift();
    charts.forEach((c) => c.draw(points));
    if (g) gatewayCharts.forEach((c) => c.draw(points));
  });
}

function tryTab(content, path, ns, name) {
  const mode = h("select", { id: "try-mode", "aria-label": "What to send" },
    h("option", { value: "http" }, "HTTP request"), h("option", { value: "bytes" }, "Raw bytes"));
  const method = h("select", { id: "try-method", "aria-label": "Method" },
    ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].map((m) => h("option", {}, m)));
  const target = h("input", { id: "try-path", value: "/", "aria-label": "Path", spellcheck: "false" });
  const headers = h("textarea", { id: "try-headers", placeholder: "Name: value, one per line", spellcheck: "false" });
  const data = h("textarea", { id: "try-body", placeholder: "Body (or the bytes to send)", spellcheck: "false" });
  const httpOnly = h("div", { id: "try-http" },
    h("div.row", {}, method, target), h("label", { for: "try-headers" }, "Headers"), headers);
  const result = h("section", { id: "try-result", "aria-live": "polite" });
  const send = h("button", { type: "submit", id: "try-send" }, "Send");
  mode.addEventListener("change", () => { httpOnly.hidden = mode.value !== "http"; });
  const form = h("form.tryit", { onsubmit: async (e) => {
    e.preventDefault();
    send.disabled = true;
    result.replaceChildren(h("p.muted", {}, "Calling " + name + "…"));
    const request = { data: data.value };
    if (mode.value === "http") {
      request.requestLine = method.value + " " + (target.value || "/");
      request.headers = headers.value.split("\n").filter((l) => l.trim()).map((l) => {
        const i = l.indexOf(":");
        return i < 0 ? [l.trim(), ""] : [l.slice(0, i).trim(), l.slice(i + 1).trim()];
      });
    }
    try {
      const a = await api(path + "/call", { method: "POST", json: request });
      clearProblem();
      result.replaceChildren(...answer(a));
    } catch (p) {
      result.replaceChildren();
      showProblem(p);
    } finally { send.disabled = false; }
  } }, h("label", { for: "try-mode" }, "Send"), mode, httpOnly,
    h("label", { for: "try-body" }, "Body"), data, h("div.row", {}, send));
  content.replaceChildren(form, result);
}

function answer(a) {
  const out = [h("h2", {}, "Answer"),
    h("p", { id: "try-meta" }, a.size + " bytes in " + a.millis.toFixed(1) + " ms via " + a.via)];
  if (a.http) {
    out.push(h("p", { id: "try-status" }, badge(a.http.status < 400 ? "True" : "False", a.http.status + " " + a.http.reason)),
      table("try-headers-out", ["Header", "Value"], a.http.headers),
      h("pre", { id: "try-answer" }, a.http.body));
  } else {
    out.push(h("pre", { id: "try-answer" }, a.raw));
  }
  out.push(h("h2", {}, "Log lines of the call"),
    a.logs.length ? h("ol.log", { id: "try-logs" }, a.logs.map(logLine)) : h("p.empty", { id: "try-logs" }, "No log line yet."));
  return out;
}

// Routing ------------------------------------------------------------

function route() {
  cleanups.splice(0).forEach((f) => f());
  clearProblem();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "fn" && parts.length >= 3) {
    const tab = ["logs", "metrics", "try"].includes(parts[3]) ? parts[3] : "overview";
    functionPage(parts[1], parts[2], tab);
  } else {
    functionsPage();
  }
  main.focus({ preventScroll: true });
}

$("ns-form").addEventListener("submit", (e) => {
  e.preventDefault();
  ctx.namespace = $("ns").value.trim();
  const url = new URL(location.href);
  url.searchParams.set("namespace", ctx.namespace);
  history.replaceState(null, "", url.pathname + url.search + "#/");
  route();
});
window.addEventListener("hashchange", route);

(async () => {
  const asked = new URLSearchParams(location.search).get("namespace");
  try {
    const c = await api("/api/context");
    ctx.namespace = asked ?? c.namespace ?? "";
    $("cluster").textContent = c.cluster ? "cluster " + c.cluster : "";
    $("ns").value = ctx.namespace;
    route();
    if (c.problem) showProblem(c.problem);
  } catch (p) {
    route();
    showProblem(p);
  }
})();
