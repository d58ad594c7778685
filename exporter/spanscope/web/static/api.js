// What the spanscope pages share: the exporter's JSON API, the bearer token kept for the tab, and a
// small element builder. Plain JavaScript, no build step; loaded before each page's own script.
"use strict";

window.spanscope = (() => {
  const TOKEN_KEY = "spanscope.bearer_token";  // sessionStorage: one token for both pages of a tab

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }
  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token cannot be kept */ }
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /** Call the JSON API (paths relative to the page, so a reverse-proxy prefix works). The token goes
   * with every call when one is kept: writes need it, and so do reads of personal data. */
  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let resp;
    try {
      resp = await fetch(path, { method, headers, cache: "no-store",
                                 body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, `cannot reach the exporter (${err.message})`);
    }
    let doc = null;
    try { doc = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) throw new ApiError(resp.status, (doc && doc.error) || resp.statusText || "request failed");
    return doc;
  }

  function el(tag, attrs = {}, children = []) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v;
      else if (k === "html") e.innerHTML = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  return { TOKEN_KEY, getToken, setToken, ApiError, api, el };
})();
