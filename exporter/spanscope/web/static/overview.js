// spanscope overview page. Plain JavaScript and the vendored Chart.js (static/vendor/), no build step;
// reads the exporter's JSON API only (same origin: the page's CSP allows nothing else).
//
// Every number shown comes from one API answer and is formatted here, once: tests compare the text of
// the tiles with the API's values formatted the same way (data-value keeps the raw number).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.min(Math.max(Number(params.get("refresh")) || 5, 1), 60) * 1000;
  const WINDOW_MINUTES = Math.min(Math.max(Number(params.get("window")) || 60, 5), 1440);
  const { getToken, api, el } = window.spanscope;  // static/api.js
  const RECENT = 8;
  const SCENARIO_LABELS = {
    current: "Current configuration", all_optimizations: "All optimizations", no_rag: "No RAG", no_caching: "No caching",
  };
  const PALETTE = ["#0969da", "#1a7f37", "#bf8700", "#cf222e", "#8250df", "#1b7c83", "#bc4c00", "#57606a",
                   "#4493f8", "#3fb950", "#d29922", "#f85149"];

  const $ = (id) => document.getElementById(id);
  const charts = {};
  const colours = new Map();  // component -> colour, stable across refreshes
  let refreshes = 0;

  function colour(name) {
    if (!colours.has(name)) colours.set(name, PALETTE[colours.size % PALETTE.length]);
    return colours.get(name);
  }

  // ---- formatting: the one place numbers become text ------------------------------------------------

  const none = (v) => v == null || !Number.isFinite(v);
  const FORMATS = {
    rate: (v) => (none(v) ? "—" : `${v.toFixed(v >= 0.1 || v === 0 ? 2 : 4)}/s`),
    percent: (v) => (none(v) ? "—" : `${(v * 100).toFixed(1)} %`),
    ms: (v) => (none(v) ? "—" : `${v.toFixed(1)} ms`),
    usd: (v) => (none(v) ? "—" : `$${v.toFixed(v !== 0 && Math.abs(v) < 0.01 ? 6 : 2)}`),
    score: (v) => (none(v) ? "—" : v.toFixed(2)),
  };

  function show(id, value, format) {
    const dd = $(id);
    dd.textContent = FORMATS[format](value);
    dd.dataset.value = value == null ? "" : String(value);
  }

  // ---- charts ---------------------------------------------------------------------------------------

  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  if (window.Chart) {
    Chart.defaults.color = dark ? "#9198a1" : "#59636e";
    Chart.defaults.borderColor = dark ? "#3d444d" : "#d1d9e0";
    Chart.defaults.animation = false;  // refreshes redraw in place; no motion every few seconds
    Chart.defaults.maintainAspectRatio = false;
  }

  /** Create the chart once, then only swap its data (keeps the canvas, no flicker). */
  function draw(id, config) {
    if (!window.Chart) return;
    const chart = charts[id];
    if (!chart) { charts[id] = new Chart($(id), config); return; }
    chart.data = config.data;
    chart.update("none");
  }

  const msAxis = (stacked) => ({ stacked, beginAtZero: true, title: { display: true, text: "ms" } });

  // ---- sections -------------------------------------------------------------------------------------

  function showDashboard(doc) {
    const d = doc.data;
    // The rates divide by the seconds of the window covered so far: kept beside them, so a reader
    // (or a test) can check rate x covered = count, whenever the page last refreshed.
    $("kpis").dataset.coveredSeconds = String(doc.window.covered_seconds);
    show("kpi-rate", d.requests_per_second, "rate");
    show("kpi-errors", d.error_rate, "percent");
    show("kpi-p50", d.latency.p50_ms, "ms");
    show("kpi-p95", d.latency.p95_ms, "ms");
    show("kpi-p99", d.latency.p99_ms, "ms");
    show("kpi-cost-hour", d.cost.cost_per_hour_usd, "usd");
    show("kpi-cost-request", d.cost.cost_per_request_usd, "usd");
    show("kpi-cache", d.cache_hit_ratio, "percent");
    show("kpi-quality", d.quality_score, "score");
    show("kpi-rating", d.average_rating, "score");
    $("glance-info").textContent = `${d.requests} requests from ${doc.window.start} to ${doc.window.end}.`;
  }

  function showTimeline(doc) {
    const minutes = doc.data.timeline;
    $("timeline-empty").hidden = minutes.length > 0;
    const names = [...new Set(minutes.flatMap((m) => Object.keys(m.critical_path_ms_per_request || {})))].sort();
    draw("timeline-chart", {
      type: "line",
      data: {
        labels: minutes.map((m) => m.minute.slice(11, 16)),
        datasets: names.map((name) => ({
          label: name, data: minutes.map((m) => (m.critical_path_ms_per_request || {})[name] || 0),
          borderColor: colour(name), backgroundColor: `${colour(name)}99`, fill: true, pointRadius: 0, tension: 0.2,
        })),
      },
      options: { scales: { y: msAxis(true), x: { ticks: { maxTicksLimit: 8 } } },
                 interaction: { mode: "index", intersect: false }, plugins: { legend: { position: "bottom" } } },
    });
  }

  function showBreakdown(doc) {
    let start = 0;
    const bars = doc.components.map((c) => { const b = [start, start + c.mean_ms]; start += c.mean_ms; return b; });
    draw("waterfall-chart", {
      type: "bar",
      data: { labels: doc.components.map((c) => c.component),
              datasets: [{ label: "critical path (ms)", data: bars,
                           backgroundColor: doc.components.map((c) => colour(c.component)) }] },
      options: { indexAxis: "y", scales: { x: msAxis(false) }, plugins: { legend: { display: false } } },
    });
    $("waterfall-list").replaceChildren(...doc.components.map((c) => el("li", {
      "data-component": c.component, "data-value": String(c.mean_ms),
      text: `${c.component}: ${FORMATS.ms(c.mean_ms)} (${c.share_percent.toFixed(1)} %)` })));
    $("waterfall-total").textContent = doc.requests_in_window ? FORMATS.ms(doc.total_ms) : "—";
  }

  function showImpact(doc) {
    draw("impact-chart", {
      type: "bar",
      data: { labels: doc.features.map((f) => f.name),
              datasets: [{ label: "ms per request", data: doc.features.map((f) => f.avg_latency_ms),
                           backgroundColor: doc.features.map((f) => (f.enabled ? "#0969da" : "#818b98")) }] },
      options: { indexAxis: "y", scales: { x: msAxis(false) }, plugins: { legend: { display: false } } },
    });
  }

  function showScenarios(doc) {
    const rows = Object.entries(doc.scenarios).map(([name, s]) => {
      const measured = s.requests_in_window > 0;
      const toggles = [...s.toggles.disable.map((n) => `off: ${n}`), ...s.toggles.enable.map((n) => `on: ${n}`)];
      const delta = measured ? `${s.delta_ms >= 0 ? "+" : "-"}${Math.abs(s.delta_ms).toFixed(1)} ms` : "no data";
      return el("tr", { id: `scenario-${name}` }, [
        el("th", { scope: "row", text: SCENARIO_LABELS[name] || name }),
        el("td", { class: "num", "data-label": "Current", text: measured ? FORMATS.ms(s.current_latency_ms) : "—" }),
        el("td", { class: "num", "data-label": "Projected", text: measured ? FORMATS.ms(s.projected_latency_ms) : "—" }),
        el("td", { class: "num", "data-label": "Change", text: delta }),
        el("td", { class: "changes", "data-label": "Toggles", text: toggles.join(", ") || "none" }),
      ]);
    });
    $("whatif-body").replaceChildren(...rows);
  }

  function showAlerts(doc) {
    $("alerts-source").textContent = doc.source
      ? `From Prometheus at ${doc.source}.`
      : "No Prometheus configured (overview.prometheus_url): alerts cannot be shown here.";
    const items = doc.alerts.map((a) => el("li", { class: `alert ${a.labels.severity || ""}` }, [
      el("strong", { text: a.labels.alertname || "alert" }),
      el("span", { class: "muted", text: ` ${a.labels.severity || ""} since ${a.activeAt || "?"} ` }),
      el("span", { text: (a.annotations && a.annotations.summary) || "" }),
    ]));
    if (doc.source && !items.length) items.push(el("li", { class: "muted", text: "Nothing firing." }));
    $("alerts-list").replaceChildren(...items);
  }

  // ---- recent interactions, with ratings ------------------------------------------------------------

  async function rate(id, rating, note) {
    try {
      await api("api/v1/feedback", { method: "POST", body: { interaction_id: id, rating } });
      note.textContent = `rated ${rating}`;
    } catch (err) {
      note.textContent = err.status === 401 ? "needs the bearer token (set it on the features page)" : err.message;
    }
  }

  function showRecent(doc) {
    $("recent-note").textContent = doc.interactions.length ? "" : "No interactions stored yet.";
    $("recent-list").replaceChildren(...doc.interactions.map((i) => {
      const note = el("span", { class: "muted small", text: i.rating ? `rated ${i.rating}` : "" });
      const buttons = [1, 2, 3, 4, 5].map((n) => {
        const b = el("button", { type: "button", class: "secondary rate", text: String(n),
                                 "aria-label": `Rate ${i.trace_id.slice(0, 8)} ${n} of 5` });
        b.addEventListener("click", () => rate(i.trace_id, n, note));
        return b;
      });
      return el("li", { "data-trace-id": i.trace_id }, [
        el("a", { href: `api/v1/interactions/${i.trace_id}`, text: i.trace_id.slice(0, 8) }),
        el("span", { text: ` ${i.service} · ${i.model || "?"} · ${FORMATS.ms(i.duration_seconds * 1000)}` +
                           `${i.error ? " · error" : ""} ` }),
        el("span", { class: "rating" }, buttons), note,
      ]);
    }));
  }

  // ---- refresh loop ---------------------------------------------------------------------------------

  const SECTIONS = [
    [`api/metrics/dashboard?time_window_minutes=${WINDOW_MINUTES}`, showDashboard],
    [`api/metrics/performance?time_window_minutes=${WINDOW_MINUTES}`, showTimeline],
    ["api/breakdown", showBreakdown],
    ["api/features/impact", showImpact],
    ["api/what-if/scenarios", showScenarios],
    ["api/alerts", showAlerts],
    [`api/v1/interactions?limit=${RECENT}`, showRecent],
  ];

  async function refresh() {
    const results = await Promise.allSettled(SECTIONS.map(([path]) => api(path)));
    const problems = [];
    results.forEach((r, i) => {
      if (r.status === "fulfilled") SECTIONS[i][1](r.value);
      else if (SECTIONS[i][1] === showRecent && [401, 404].includes(r.reason.status)) {
        $("recent-note").textContent = r.reason.status === 401
          ? "Listing interactions needs the bearer token (set it on the features page)."
          : r.reason.message;
      } else problems.push(`${SECTIONS[i][0].split("?")[0]}: ${r.reason.message}`);
    });
    const box = $("status");
    box.className = problems.length ? "status error" : "status";
    box.textContent = problems.join("; ");
    document.body.dataset.refreshes = String(++refreshes);
    document.body.dataset.loaded = "true";
  }

  async function loop() {
    await refresh();
    setTimeout(loop, REFRESH_MS);
  }

  $("window-minutes").textContent = String(WINDOW_MINUTES);
  if (!window.Chart) $("status").textContent = "Chart.js did not load: charts are missing, the numbers are not.";
  loop();
})();
