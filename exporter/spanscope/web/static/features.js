// spanscope features page. Plain JavaScript, no build step; reads and writes the exporter's JSON API only.
//
// The DOM is built once per feature / scenario / component; every refresh afterwards only rewrites
// text nodes, attributes and bar geometry in place, so nothing flickers and focus is never lost.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.min(Math.max(Number(params.get("refresh")) || 5, 1), 60) * 1000;
  const { getToken, setToken, api, el } = window.spanscope;  // static/api.js
  const CATEGORY_LABELS = { processing: "Processing", rag: "RAG", optimization: "Optimization", integration: "Integration" };
  const SCENARIO_LABELS = {
    current: "Current configuration", all_optimizations: "All optimizations", no_rag: "No RAG", no_caching: "No caching",
  };
  const LOCK_SVG = '<svg class="lock" viewBox="0 0 16 16" aria-hidden="true" focusable="false">' +
    '<path fill="currentColor" d="M4 7V5a4 4 0 1 1 8 0v2h.5A1.5 1.5 0 0 1 14 8.5v6a1.5 1.5 0 0 1-1.5 1.5h-9A1.5 ' +
    '1.5 0 0 1 2 14.5v-6A1.5 1.5 0 0 1 3.5 7H4Zm1.5 0h5V5a2.5 2.5 0 0 0-5 0v2Z"/></svg>';

  const $ = (id) => document.getElementById(id);
  const S = {
    features: new Map(),   // name -> last feature document from the API
    rows: new Map(),       // name -> the row's elements
    categories: new Map(), // category -> <ul>
    baseline: new Map(),   // name -> enabled when the page first saw it (what the measurements reflect)
    pending: new Map(),    // name -> {enabled, effect_ms, note, at}: changes made on this page
    inflight: new Set(),   // names with a write in flight
    writes: 0,             // bumped when a write starts or ends: a refresh that saw it change is stale
    scenarioRows: new Map(),
    wfRows: new Map(),
    current: null,         // measured mean end-to-end latency (ms), null without requests
    requests: 0,
    windowSeconds: 0,
    lastError: "",
  };

  // ---- small helpers -------------------------------------------------------------------------------

  /** Set an element's text by rewriting its text node (keeps the node: no re-layout of siblings). */
  function setText(el, text) {
    const node = el.firstChild;
    if (node && node.nodeType === Node.TEXT_NODE && node === el.lastChild) {
      if (node.data !== text) node.data = text;
    } else {
      el.textContent = text;
    }
  }

  const fmtMs = (v) => (v == null || !Number.isFinite(v) ? "—" : `${v.toFixed(1)} ms`);
  const sign = (v) => (v > 0 ? "+" : v < 0 ? "-" : "");
  function fmtDelta(ms, pct) {
    if (ms == null || Math.abs(ms) < 0.05) return "no change";
    return `${sign(ms)}${Math.abs(ms).toFixed(1)} ms (${sign(pct)}${Math.abs(pct).toFixed(1)} %)`;
  }
  const displayName = (name) => (S.features.get(name) || {}).display_name || name;

  function say(message, kind = "ok") {
    const box = $("status");
    box.className = `status ${kind}`;
    box.textContent = message;
  }

  function showAuth(reason) {
    const box = $("auth");
    box.hidden = false;
    $("token").placeholder = getToken() ? "a token is set for this tab" : "";
    if (reason) setText($("auth-help"), reason);
  }

  // ---- features ------------------------------------------------------------------------------------

  function buildCategory(category) {
    const id = `cat-${category}`;
    const list = el("ul", { class: "feature-list", "aria-labelledby": id });
    const section = el("section", { class: "category", "aria-labelledby": id }, [
      el("h3", { id, text: CATEGORY_LABELS[category] || category }), list,
    ]);
    $("categories").append(section);
    S.categories.set(category, list);
    return list;
  }

  function buildRow(f) {
    const n = f.name;
    const described = [`desc-${n}`];
    const sw = el("input", { type: "checkbox", role: "switch", class: "switch", id: `sw-${n}` });
    const stateText = el("span", { class: "state", "aria-hidden": "true", text: "" });
    const label = el("label", { for: `sw-${n}`, text: f.display_name });
    const li = el("li", { class: "feature", id: `feature-${n}`, "data-feature": n }, [
      el("div", { class: "feature-head" }, [label, stateText, sw]),
      el("p", { class: "desc", id: `desc-${n}`, text: f.description || "" }),
    ]);
    if (f.required) {
      described.push(`req-${n}`);
      li.classList.add("is-required");
      sw.disabled = true;
      li.append(el("p", { class: "required-note", id: `req-${n}`,
                          html: `${LOCK_SVG}<span>Required: cannot be disabled</span>` }));
    }
    sw.setAttribute("aria-describedby", described.join(" "));

    const avg = el("dd", { text: "—" });
    const facts = el("dl", { class: "facts" }, [
      el("div", {}, [el("dt", { text: "Avg latency" }), avg]),
    ]);
    let hit = null;
    if (f.caching) {
      hit = el("dd", { text: "—" });
      // Per lookup of this feature's cache; the response cache's per-request ratio is another number.
      facts.append(el("div", {}, [el("dt", { text: "Hit ratio per lookup" }), hit]));
    }
    const schedule = el("dd", { text: "" });
    const scheduleBox = el("div", { hidden: "" }, [el("dt", { text: "Rollout schedule" }), schedule]);
    const decision = el("dd", { class: "decision", text: "" });
    const decisionBox = el("div", { hidden: "" }, [el("dt", { text: "Last rollout decision" }), decision]);
    facts.append(scheduleBox, decisionBox);
    li.append(facts);

    const rlabel = el("label", { for: `rng-${n}` });
    rlabel.append("Rollout", el("span", { class: "vh", text: ` of ${f.display_name}` }));
    const range = el("input", { type: "range", id: `rng-${n}`, min: "0", max: "100", step: "1" });
    const num = el("input", { type: "number", id: `num-${n}`, min: "0", max: "100", step: "1", inputmode: "numeric",
                              "aria-label": `Rollout percentage of ${f.display_name}` });
    li.append(el("div", { class: "rollout" }, [rlabel, range, num, el("span", { "aria-hidden": "true", text: "%" })]));
    if (f.required) {
      range.disabled = num.disabled = true;
      range.setAttribute("aria-describedby", `req-${n}`);
    }

    sw.addEventListener("change", () => onSwitch(n, sw.checked));
    sw.addEventListener("keydown", (ev) => {  // Space toggles natively; Enter too, as for a switch button
      if (ev.key === "Enter") { ev.preventDefault(); if (!sw.disabled) sw.click(); }
    });
    range.addEventListener("input", () => { num.value = range.value; });
    range.addEventListener("change", () => onRollout(n, range.value));
    num.addEventListener("change", () => onRollout(n, num.value));

    const row = { li, sw, stateText, avg, hit, range, num, schedule, scheduleBox, decision, decisionBox };
    S.rows.set(n, row);
    return row;
  }

  /** Show a feature's server state in its row (controls the user is busy with are left alone).
   *  `stale`: the document was read while a write was under way, so only its measurements are used. */
  function showFeature(f, stale = false) {
    if (!stale) S.features.set(f.name, f);
    const row = S.rows.get(f.name);
    if (!row) return;
    if (!stale && !S.inflight.has(f.name)) {
      row.sw.checked = f.enabled;
      paintSwitch(row, f.enabled);
      const pct = String(Math.round(f.rollout_percentage * 100) / 100);
      if (document.activeElement !== row.range && row.range.value !== pct) row.range.value = pct;
      if (document.activeElement !== row.num && row.num.value !== pct) row.num.value = pct;
    }
    setText(row.avg, fmtMs(f.avg_latency_ms));
    if (row.hit) setText(row.hit, f.hit_rate == null ? "no lookups yet" : `${(f.hit_rate * 100).toFixed(1)} %`);
    if (f.rollout && f.rollout.step >= 0) {
      const r = f.rollout;
      row.scheduleBox.hidden = false;
      let text = `step ${r.step + 1} of ${r.schedule.length} (${r.schedule.join(", ")} %)`;
      if (r.guard) text += r.auto_advance ? " · guarded, advances by itself" : " · guarded";
      else if (r.auto_advance) text += " · advances by itself";
      if (r.evaluation) text += ` · last look: ${r.evaluation.decision}, ${r.evaluation.reason}`;
      setText(row.schedule, text);
    } else {
      row.scheduleBox.hidden = true;
    }
    showDecision(row, f.last_decision);
  }

  const DECIDED = { start: "Started", advance: "Advanced by its guard", rollback: "Rolled back by its guard",
                    manual_advance: "Advanced by hand", manual_rollback: "Stepped back by hand",
                    emergency_rollback: "Emergency rollback" };

  /** A feature's last rollout decision, in words: what, from and to which percentage, why, when. */
  function showDecision(row, d) {
    row.decisionBox.hidden = !d;
    if (!d) return;
    const when = new Date(d.at * 1000).toLocaleTimeString();
    const stage = d.stage ? ` at stage ${d.stage}` : "";
    setText(row.decision, `${DECIDED[d.decision] || d.decision}${stage} (${d.from_percentage} → ${d.to_percentage} %)` +
                          `${d.reason ? `: ${d.reason}` : ""} · ${when}`);
    row.decision.classList.toggle("is-rollback", d.decision === "rollback" || d.decision === "emergency_rollback");
  }

  function paintSwitch(row, on) {
    row.li.classList.toggle("is-on", on);
    row.li.classList.toggle("is-off", !on);
    setText(row.stateText, on ? "On" : "Off");
  }

  function showFeatures(doc, stale) {
    $("features-loading").hidden = true;
    const byName = new Map(doc.features.map((f) => [f.name, f]));
    for (const [category, names] of Object.entries(doc.categories)) {
      const list = S.categories.get(category) || buildCategory(category);
      for (const name of names) {
        const f = byName.get(name);
        if (!f) continue;
        if (!S.rows.has(name)) list.append(buildRow(f).li);
        if (!S.baseline.has(name)) S.baseline.set(name, f.enabled);
        if (!S.features.has(name)) S.features.set(name, f);
        if (!stale) reconcile(f);
        showFeature(f, stale);
      }
    }
    S.current = doc.requests_in_window ? doc.current_latency_ms : null;
    S.requests = doc.requests_in_window;
    S.windowSeconds = doc.window_seconds;
    showProjection();
  }

  /** Keep the list of this page's changes true to the server (changed elsewhere, or old enough). */
  function reconcile(f) {
    if (S.inflight.has(f.name)) return;
    const p = S.pending.get(f.name);
    const expired = p && S.windowSeconds && Date.now() - p.at > S.windowSeconds * 1000;
    if (p && (f.enabled !== p.enabled || expired)) S.pending.delete(f.name);
    if (!S.pending.has(f.name)) S.baseline.set(f.name, f.enabled);
  }

  // ---- writes --------------------------------------------------------------------------------------

  async function write(name, what, fn) {
    const row = S.rows.get(name);
    S.inflight.add(name);
    S.writes += 1;
    row.sw.setAttribute("aria-busy", "true");
    try {
      await fn();
    } catch (err) {
      let message = `Could not ${what}: ${err.message}`;
      if (err.status) message += ` (HTTP ${err.status})`;
      if (err.status === 401) {
        showAuth("This exporter requires a bearer token for changes. Enter it here, then try again. It is kept in " +
                 "this browser tab only (sessionStorage) and sent as Authorization: Bearer.");
        message += getToken() ? ". The token you entered was refused: enter the right one in the form below."
                              : ". Enter the bearer token in the form below, then try again.";
      }
      say(message, "error");
    } finally {
      S.inflight.delete(name);
      S.writes += 1;
      row.sw.removeAttribute("aria-busy");
      const f = S.features.get(name);
      if (f) showFeature(f);  // back to what the server holds (reverts a refused change)
    }
  }

  function onSwitch(name, wanted) {
    const row = S.rows.get(name);
    if (S.inflight.has(name)) {  // one change at a time per feature
      row.sw.checked = !wanted;
      say(`Still saving the last change to ${displayName(name)}…`, "error");
      return;
    }
    paintSwitch(row, wanted);
    write(name, `turn ${displayName(name)} ${wanted ? "on" : "off"}`, async () => {
      // Ask for the effect before the change is made: afterwards the API would call it "already off".
      let step = null;
      try {
        const q = `${wanted ? "enable" : "disable"}=${encodeURIComponent(name)}`;
        step = ((await api(`api/what-if?${q}`)).steps || [])[0] || null;
      } catch (_) { /* the projection stays unknown for this change; the toggle still goes ahead */ }
      const doc = await api(`api/features/${encodeURIComponent(name)}`, { method: "PUT", body: { enabled: wanted } });
      S.features.set(name, doc);
      if (doc.enabled === S.baseline.get(name)) {
        S.pending.delete(name);
      } else {
        S.pending.set(name, { enabled: doc.enabled, at: Date.now(),
                              effect_ms: step ? step.effect_ms : null, note: step ? step.note : "effect unknown" });
      }
      showProjection();
      say(`${displayName(name)} turned ${doc.enabled ? "on" : "off"}.`, "ok");
    });
  }

  function onRollout(name, raw) {
    const row = S.rows.get(name);
    const value = Number(raw);
    if (raw === "" || !Number.isFinite(value) || value < 0 || value > 100) {
      say(`Rollout of ${displayName(name)}: enter a percentage from 0 to 100.`, "error");
      row.range.value = row.num.value = String(S.features.get(name).rollout_percentage);
      return;
    }
    row.range.value = row.num.value = String(value);
    if (S.inflight.has(name)) {
      say(`Still saving the last change to ${displayName(name)}…`, "error");
      return;
    }
    write(name, `set the rollout of ${displayName(name)}`, async () => {
      const doc = await api(`api/features/${encodeURIComponent(name)}`, { method: "PUT",
                                                                         body: { rollout_percentage: value } });
      S.features.set(name, doc);
      say(`${displayName(name)} rolled out to ${doc.rollout_percentage} %.`, "ok");
    });
  }

  // ---- projection ----------------------------------------------------------------------------------

  function showProjection() {
    const current = S.current;
    setText($("current-latency"), fmtMs(current));
    setText($("window-info"), current == null
      ? `no requests in the last ${S.windowSeconds} s`
      : `mean of ${S.requests} request${S.requests === 1 ? "" : "s"} in the last ${S.windowSeconds} s`);

    let effect = 0;
    let unknown = 0;
    for (const p of S.pending.values()) {
      if (p.effect_ms == null) unknown += 1; else effect += p.effect_ms;
    }
    const projected = current == null ? null : Math.max(current + effect, 0);
    setText($("projected-latency"), fmtMs(projected));
    const deltaEl = $("projected-delta");
    if (projected == null) {
      setText(deltaEl, "needs measured requests");
      deltaEl.className = "muted";
    } else {
      const delta = projected - current;
      let text = fmtDelta(delta, current ? (delta / current) * 100 : 0);
      if (unknown) text += ` · ${unknown} change${unknown === 1 ? "" : "s"} with unknown effect`;
      setText(deltaEl, text);
      deltaEl.className = delta < -0.05 ? "delta-down" : delta > 0.05 ? "delta-up" : "muted";
    }

    const box = $("pending-box");
    const list = $("pending-list");
    box.hidden = S.pending.size === 0;
    const seen = new Set();
    for (const [name, p] of S.pending) {
      const id = `pending-${name}`;
      seen.add(id);
      let li = document.getElementById(id);
      if (!li) { li = el("li", { id }); list.append(li); }
      const eff = p.effect_ms == null ? "effect unknown" : `${sign(p.effect_ms)}${Math.abs(p.effect_ms).toFixed(1)} ms`;
      setText(li, `${displayName(name)} turned ${p.enabled ? "on" : "off"}: ${eff} (${p.note})`);
    }
    for (const li of [...list.children]) if (!seen.has(li.id)) li.remove();
  }

  // ---- what-if scenarios ---------------------------------------------------------------------------

  function showScenarios(doc) {
    const body = $("whatif-body");
    for (const [name, s] of Object.entries(doc.scenarios)) {
      let r = S.scenarioRows.get(name);
      if (!r) {
        r = { tr: el("tr", { id: `scenario-${name}` }), changes: el("td", { class: "changes", "data-label": "Changes" }),
              projected: el("td", { class: "num", "data-label": "Projected" }),
              delta: el("td", { class: "num", "data-label": "Change" }) };
        r.tr.append(el("th", { scope: "row", text: SCENARIO_LABELS[name] || name }), r.changes, r.projected, r.delta);
        body.append(r.tr);
        S.scenarioRows.set(name, r);
      }
      const parts = [];
      if (s.toggles.disable.length) parts.push(`off: ${s.toggles.disable.map(displayName).join(", ")}`);
      if (s.toggles.enable.length) parts.push(`on: ${s.toggles.enable.map(displayName).join(", ")}`);
      setText(r.changes, parts.length ? parts.join("; ") : "none");
      const measured = s.requests_in_window > 0;
      setText(r.projected, measured ? fmtMs(s.projected_latency_ms) : "—");
      setText(r.delta, measured ? fmtDelta(s.delta_ms, s.delta_percent) : "no data");
    }
  }

  // ---- waterfall -----------------------------------------------------------------------------------

  function showBreakdown(doc) {
    const list = $("waterfall");
    const total = doc.total_ms;
    const byName = new Map(doc.components.map((c) => [c.component, c]));
    for (const [name, r] of S.wfRows) {
      if (!byName.has(name)) { r.li.remove(); S.wfRows.delete(name); }
    }
    for (const c of doc.components) {  // new components join at the end: existing rows keep their place
      if (S.wfRows.has(c.component)) continue;
      const r = { li: el("li", { "data-component": c.component }), bar: el("div", { class: "wf-bar" }),
                  value: el("span", { class: "wf-value" }) };
      r.li.append(el("span", { class: "wf-name", text: c.component }),
                  el("div", { class: "wf-track", "aria-hidden": "true" }, [r.bar]), r.value);
      list.append(r.li);
      S.wfRows.set(c.component, r);
    }
    let offset = 0;
    for (const r of S.wfRows.values()) {
      const c = byName.get(r.li.dataset.component);
      const left = total ? (offset / total) * 100 : 0;
      const width = total ? (c.mean_ms / total) * 100 : 0;
      r.bar.style.left = `${left.toFixed(3)}%`;
      r.bar.style.width = `${Math.min(width, 100 - left).toFixed(3)}%`;
      setText(r.value, `${fmtMs(c.mean_ms)} · ${c.share_percent.toFixed(1)} %`);
      offset += c.mean_ms;
    }
    $("waterfall-empty").hidden = doc.components.length > 0;
    setText($("waterfall-total"), doc.components.length ? fmtMs(total) : "—");
  }

  // ---- refresh loop --------------------------------------------------------------------------------

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    const writes = S.writes;
    const [features, scenarios, breakdown] = await Promise.allSettled([
      api("api/features"), api("api/what-if/scenarios"), api("api/breakdown"),
    ]);
    // Features first: the scenario table names features by their display names.
    const problems = [];
    const stale = writes !== S.writes || S.inflight.size > 0;
    for (const [result, show] of [[features, showFeatures], [scenarios, showScenarios], [breakdown, showBreakdown]]) {
      if (result.status === "fulfilled") {
        try { show(result.value, stale); } catch (err) { problems.push(err.message); }
      } else {
        problems.push(result.reason.message);
      }
    }
    const problem = problems.length ? `Could not refresh: ${problems[0]}` : "";
    if (problem && problem !== S.lastError) say(problem, "error");
    else if (!problem && S.lastError && $("status").textContent === S.lastError) say("Connected again.", "ok");
    S.lastError = problem;
    document.body.dataset.loaded = "true";
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("token");
    const value = input.value.trim();
    if (!value) { say("Enter a token first.", "error"); input.focus(); return; }
    setToken(value);
    input.value = "";
    input.placeholder = "a token is set for this tab";
    say("Token set for this browser tab. Changes now send it.", "ok");
  });
  $("token-forget").addEventListener("click", () => {
    setToken("");
    $("token").placeholder = "";
    say("Token forgotten.", "ok");
  });
  $("pending-clear").addEventListener("click", () => {
    for (const [name, f] of S.features) S.baseline.set(name, f.enabled);
    S.pending.clear();
    showProjection();
    say("Projection reset: it now starts from the measured latency.", "ok");
  });

  if (getToken()) showAuth();
  refresh();
})();
