// evolink web manager: sign in, instances, linking by code or QR with friendly retry, clock, history.
// Plain modern JS, no build step. Live updates come from /manager/api/events (Server-Sent Events),
// opened with a short-lived token from an authenticated POST (EventSource cannot send headers, and
// the API key never goes into a URL). Every text is set with textContent (never innerHTML).
"use strict";
(() => {
  const I18N = window.EVOLINK_I18N;
  const AUTO_RETRY_SECONDS = 8;   // wait before an automatic retry (shown to the user)
  const AUTO_RETRY_MAX = 3;       // automatic retries in a row before only the button is left
  const RETRYABLE = new Set(["expired", "connection_lost", "error"]);
  const $ = (id) => document.getElementById(id);

  const S = {
    base: "", key: "", scope: null, scopeInstance: null, lang: "en", view: "signin", current: null,
    last: null, skew: 0, codeExpiresAt: null, codeTotal: null, shownCode: null, codeExpired: false,
    es: null, streamBackoff: 1000, retryTimer: null, retryAt: null, autoRetries: 0, refreshTimer: null,
    number: "",
  };

  // --- i18n ------------------------------------------------------------------------------------
  function pickLang() {
    const saved = localStorage.getItem("evolink.lang");
    if (saved && I18N[saved]) return saved;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const low = String(l).toLowerCase();
      if (low.startsWith("pt")) return "pt-BR";
      if (low.startsWith("zh")) return "zh-CN";
      if (low.startsWith("en")) return "en";
    }
    return "en";
  }
  function t(key, vars) {
    let s = (I18N[S.lang] && I18N[S.lang][key]) ?? I18N.en[key] ?? key;
    if (typeof s === "string" && vars) s = s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
    return s;
  }
  function applyI18n() {
    document.documentElement.lang = S.lang;
    $("lang").value = S.lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  }

  // --- helpers ---------------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "onclick") node.addEventListener("click", v);
      else if (k === "text") node.textContent = v;
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function show(id, on) { $(id).hidden = !on; }
  function formatCode(code) {
    const c = String(code || "").replace(/[-\s]/g, "").toUpperCase();
    return c.length === 8 ? `${c.slice(0, 4)}-${c.slice(4)}` : c;
  }
  function formatNumber(jid) {
    const d = String(jid || "").split("@")[0].split(":")[0].replace(/\D/g, "");
    if (!d) return "";
    if (d.length === 11 && d.startsWith("1")) return `+1 ${d.slice(1, 4)} ${d.slice(4, 7)} ${d.slice(7)}`;
    if (d.startsWith("55") && d.length >= 12) return `+55 ${d.slice(2, 4)} ${d.slice(4, -4)}-${d.slice(-4)}`;
    if (d.startsWith("86") && d.length === 13) return `+86 ${d.slice(2, 5)} ${d.slice(5, 9)} ${d.slice(9)}`;
    return `+${d}`;
  }
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(S.lang, { hour12: false });
  }
  function messageOf(body) {
    let m = body && body.response ? body.response.message : body && body.message;
    while (Array.isArray(m)) m = m[0];
    return m ? String(m) : "";
  }
  async function api(method, path, body) {
    let resp;
    try {
      resp = await fetch(S.base + path, {
        method, headers: { apikey: S.key, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw { status: 0, message: t("unreachable") };
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) throw { status: resp.status, message: resp.status === 401 ? t("badKey") : messageOf(data) || resp.statusText };
    return data;
  }
  const enc = encodeURIComponent;

  // --- live stream -----------------------------------------------------------------------------
  async function openStream() {
    closeStream();
    let session;
    try { session = await api("POST", "/manager/api/session"); } catch (e) { return scheduleStream(); }
    const es = new EventSource(`${S.base}/manager/api/events?token=${enc(session.token)}`);
    S.es = es;
    es.addEventListener("ready", () => { S.streamBackoff = 1000; setLive(true); refreshAll(); });
    es.addEventListener("overflow", () => { refreshAll(); openStream(); });
    es.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* ignore a bad line */ } };
    es.onerror = () => { if (S.es === es) { closeStream(); scheduleStream(); } };
  }
  function scheduleStream() {
    setLive(false);
    if (!S.key) return;
    setTimeout(() => { if (S.key && !S.es) openStream(); }, S.streamBackoff);
    S.streamBackoff = Math.min(S.streamBackoff * 2, 30000);
  }
  function closeStream() { if (S.es) { S.es.close(); S.es = null; } setLive(false); }
  function setLive(on) {
    const n = $("live"); n.textContent = t(on ? "liveOn" : "liveOff"); n.classList.toggle("on", on);
  }
  function onEvent(ev) {
    if (S.view === "instances") debounce(loadInstances);
    else if (S.view === "link" && ev.instance === S.current) debounce(refreshLink);
  }
  function debounce(fn) { clearTimeout(S.refreshTimer); S.refreshTimer = setTimeout(fn, 60); }
  function refreshAll() { if (S.view === "instances") loadInstances(); else if (S.view === "link") refreshLink(); }

  // --- sign in ---------------------------------------------------------------------------------
  async function signIn(base, key) {
    S.base = base.replace(/\/+$/, ""); S.key = key;
    const session = await api("POST", "/manager/api/session");
    S.scope = session.scope; S.scopeInstance = session.instance;
    sessionStorage.setItem("evolink.base", S.base); sessionStorage.setItem("evolink.key", S.key);
    show("signout", true);
    openStream();
    goInstances();
  }
  function signOut() {
    closeStream(); stopRetry();
    S.key = ""; sessionStorage.removeItem("evolink.key");
    show("signout", false); goSignin();
  }
  function setView(name) {
    S.view = name;
    for (const v of ["signin", "instances", "link"]) show(`view-${v}`, v === name);
  }
  function goSignin() { setView("signin"); $("server").value = S.base || location.origin; $("apikey").focus(); }

  // --- instances -------------------------------------------------------------------------------
  function goInstances() {
    stopRetry(); S.current = null; setView("instances");
    show("create-form", S.scope === "global");
    loadInstances(); loadClock("clock-panel-list");
  }
  async function loadInstances() {
    $("instances-error").textContent = "";
    let rows;
    try { rows = await api("GET", "/manager/api/instances"); } catch (e) { $("instances-error").textContent = e.message; return; }
    const list = $("instance-list"); list.replaceChildren();
    if (!rows.length) list.append(el("li", { text: t("noInstances") }));
    for (const r of rows) {
      const reason = r.lastDisconnect && r.lastDisconnect.reason;
      list.append(el("li", { "data-instance": r.name },
        el("h3", { text: r.name }),
        el("p", {}, el("span", { class: `badge ${r.state}`, "data-state": r.state, text: t(`state_${r.state}`) })),
        r.ownerJid ? el("p", { class: "meta", text: t("owner", { jid: formatNumber(r.ownerJid) }) }) : null,
        reason && r.state !== "open" ? el("p", { class: "meta", text: t("lastClose", { reason: t(`reason_${reason}`, { limit: r.qrLimit }) }) }) : null,
        el("div", { class: "actions" },
          el("button", { class: "primary", onclick: () => goLink(r.name), text: t("link") }),
          el("button", { onclick: () => act("restart", r.name), text: t("restart") }),
          el("button", { onclick: () => act("logout", r.name), text: t("logout") }),
          el("button", { class: "danger", onclick: () => act("delete", r.name), text: t("delete") }))));
    }
  }
  async function createInstance(name) {
    $("instances-error").textContent = "";
    try {
      await api("POST", "/instance/create", { instanceName: name, integration: "WHATSAPP-BAILEYS" });
      $("new-name").value = "";
      goLink(name);
    } catch (e) { $("instances-error").textContent = e.message; }
  }
  async function act(what, name) {
    const errBox = S.view === "link" ? $("prompt-text") : $("instances-error");
    try {
      if (what === "delete") {
        if (!confirm(t("confirmDelete", { name }))) return;
        await api("DELETE", `/instance/delete/${enc(name)}`);
        if (S.view === "link") return goInstances();
      } else if (what === "logout") {
        await api("DELETE", `/instance/logout/${enc(name)}`);
      } else {
        const r = await api("POST", `/instance/restart/${enc(name)}`);
        if (r && r.error) throw { message: r.message };
      }
    } catch (e) {
      // an action the user chose: say why it failed, never retry it automatically
      if (S.view === "link") showPrompt("error", { message: e.message }, false); else errBox.textContent = e.message;
    }
    refreshAll();
  }

  // --- clock panel -----------------------------------------------------------------------------
  async function loadClock(target) {
    let c;
    try { c = await api("GET", "/manager/api/clock"); } catch (e) { return; }
    const box = $(target); box.replaceChildren();
    if (!c.guard) return;
    const st = c.status || {};
    const off = st.offsetSeconds == null ? t("clockNone")
      : t("seconds", { v: Number(st.offsetSeconds).toFixed(2), u: Number(st.uncertaintySeconds || 0).toFixed(2) });
    const tz = c.timezone ? `${c.timezone.effective || c.timezone.configured || "?"} (${c.timezone.status})` : "—";
    const dl = el("dl", {},
      el("dt", { text: t("clockVerdict") }), el("dd", { text: st.verdict ? `${st.verdict}: ${st.reason || ""}` : t("clockNone") }),
      el("dt", { text: t("clockOffset") }), el("dd", { text: off }),
      el("dt", { text: t("clockSources") }), el("dd", { text: st.sources || "—" }),
      el("dt", { text: t("clockTimezone") }), el("dd", { text: tz }),
      el("dt", { text: t("clockPolicy") }), el("dd", { text: `${c.policy} (±${c.maxSkewSeconds} s)` }));
    const section = el("section", { class: `card clock${c.allowed ? "" : " refused"}`, "aria-label": t("clockTitle") },
      el("h3", { text: t("clockTitle") }), dl,
      el("p", { class: c.allowed ? "" : "error", "data-clock": c.allowed ? "allowed" : "refused",
        text: c.allowed ? t("clockAllowed") : t("clockBlocked", { message: c.message }) }),
      !c.allowed && st.fix ? el("p", { class: "fix", text: `${t("clockFix")}: ${st.fix}` }) : null);
    box.append(section);
  }

  // --- link page -------------------------------------------------------------------------------
  function goLink(name) {
    stopRetry();
    S.current = name; S.last = null; S.shownCode = null; S.codeExpired = false; S.codeExpiresAt = null; S.autoRetries = 0;
    setView("link");
    $("link-title").textContent = name;
    hidePrompt(); show("code-box", false); show("qr-box", false); show("success", false);
    $("pairing-code").textContent = ""; delete $("pairing-code").dataset.code;  // nothing of the previous instance
    $("qr-img").removeAttribute("src"); $("qr-img").dataset.code = ""; $("countdown").textContent = "";
    $("history").querySelector("tbody").replaceChildren(); $("clock-panel-link").replaceChildren();
    selectTab("code");
    refreshLink();
  }
  function selectTab(which) {
    for (const w of ["code", "qr"]) {
      $(`tab-${w}`).setAttribute("aria-selected", String(w === which));
      show(`panel-${w}`, w === which);
    }
  }
  async function refreshLink() {
    const name = S.current;
    if (!name) return;
    let v;
    try { v = await api("GET", `/manager/api/instances/${enc(name)}`); } catch (e) {
      if (e.status === 404) return goInstances();
      return;
    }
    if (S.current !== name) return;
    renderLink(v);
    loadHistory(name);
    loadClock("clock-panel-link");
  }
  function renderLink(v) {
    S.last = v;
    S.skew = Date.parse(v.serverNow) - Date.now();
    $("link-state").textContent = `${t(`state_${v.state}`)}${v.ownerJid ? " · " + formatNumber(v.ownerJid) : ""}`;
    $("link-state").dataset.state = v.state;
    if (v.state === "open") {
      stopRetry(); show("linking", false); show("prompt", false);
      let text = t("success", { number: formatNumber(v.ownerJid), browser: v.browser });
      if (v.lastSuccessSeconds != null) text += t("tookSeconds", { s: Number(v.lastSuccessSeconds).toFixed(1) });
      $("success").textContent = text; show("success", true);
      S.shownCode = null; S.codeExpiresAt = null;
      return;
    }
    show("success", false); show("linking", true);
    const p = v.pairing;
    if (p && p.pairingCode) renderCode(p.pairingCode, p.pairingCodeExpiresAt, p.pairingCodeIssuedAt);
    if (p && p.base64) renderQr(p.base64, p.code, v.qrCount, v.qrLimit);
    if (!p) { show("qr-box", false); }
    if (v.state === "close" && v.lastDisconnect && v.lastDisconnect.reason && !p && S.shownCode === null) {
      const reason = v.lastDisconnect.reason;
      if (!$("prompt").dataset.reason || $("prompt").dataset.reason === reason) {
        showPrompt(reason, { limit: v.qrLimit, message: v.lastDisconnect.message }, RETRYABLE.has(reason));
      }
    }
  }
  function renderCode(code, expiresAtIso, issuedAtIso) {
    const pretty = formatCode(code);
    // The gateway renews a code by itself when its registration ends; it ends when the code runs out.
    const oldRanOut = S.codeExpired || (S.codeExpiresAt !== null && S.codeExpiresAt - (Date.now() + S.skew) < 3000);
    if (S.shownCode && S.shownCode !== pretty && oldRanOut) {
      showPrompt("expired_new", {}, false);   // a fresh code replaced an expired one
    } else if (S.shownCode !== pretty && $("prompt").dataset.reason !== "expired_new") {
      hidePrompt();
    }
    if (S.shownCode !== pretty) {
      S.codeExpired = false; stopRetry();
      const bar = $("progress-bar");  // a new code starts full: no animation from the old one's empty bar
      bar.style.transition = "none"; bar.style.width = "100%"; void bar.offsetWidth; bar.style.transition = "";
    }
    S.shownCode = pretty;
    $("pairing-code").textContent = pretty;
    $("pairing-code").dataset.code = pretty;
    S.codeExpiresAt = expiresAtIso ? Date.parse(expiresAtIso) : null;
    S.codeTotal = expiresAtIso && issuedAtIso ? Date.parse(expiresAtIso) - Date.parse(issuedAtIso) : null;
    const steps = $("steps"); steps.replaceChildren();
    for (const s of t("steps")) steps.append(el("li", { text: s.replace("{number}", formatNumber(S.number || (S.last && S.last.number) || "")).replace("{code}", pretty) }));
    show("code-box", true);
    tick();
  }
  function renderQr(base64, code, n, limit) {
    const img = $("qr-img");
    if (img.getAttribute("src") !== base64) img.setAttribute("src", base64);
    img.dataset.code = code || "";
    img.alt = t("qrImage", { n, limit });
    $("qr-count").textContent = t("qrCount", { n, limit });
    $("qr-count").dataset.count = String(n);
    $("qr-limit").textContent = t("qrLimit", { limit });
    const steps = $("qr-steps"); steps.replaceChildren();
    for (const s of t("qrSteps")) steps.append(el("li", { text: s }));
    show("qr-box", true);
  }
  function tick() {
    if (S.codeExpiresAt === null || S.view !== "link" || !S.shownCode) return;
    const left = Math.max(0, S.codeExpiresAt - (Date.now() + S.skew));
    const secs = Math.ceil(left / 1000);
    const cd = $("countdown");
    cd.dataset.seconds = String(secs);
    if (left <= 0) {
      cd.textContent = t("expiredShort");
      $("progress-bar").style.width = "0%";
      if (!S.codeExpired) {
        S.codeExpired = true;
        showPrompt("expired", {}, true);
      }
      return;
    }
    cd.textContent = t("expiresIn", { time: `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}` });
    if (S.codeTotal) $("progress-bar").style.width = `${Math.min(100, (100 * left) / S.codeTotal)}%`;
  }

  // --- prompts and retries ---------------------------------------------------------------------
  function showPrompt(reason, vars, autoRetry, fix) {
    const box = $("prompt");
    box.dataset.reason = reason;
    $("prompt-text").textContent = t(`reason_${reason}`, vars);
    $("prompt-fix").textContent = fix || "";
    show("prompt-fix", Boolean(fix));
    const qrMode = !$("panel-qr").hidden;
    $("retry").textContent = t(qrMode ? "newQr" : "newCode");
    show("retry", reason !== "expired_new");
    show("prompt", true);
    stopRetry();
    if (autoRetry && S.autoRetries < AUTO_RETRY_MAX) scheduleRetry(AUTO_RETRY_SECONDS);
  }
  function hidePrompt() { show("prompt", false); $("prompt").dataset.reason = ""; }
  function scheduleRetry(seconds) {
    S.retryAt = Date.now() + seconds * 1000;
    show("cancel-retry", true);
    const update = () => {
      const left = Math.ceil((S.retryAt - Date.now()) / 1000);
      if (left <= 0) { stopRetry(); S.autoRetries += 1; retry(); return; }
      $("retry-wait").textContent = t("retryIn", { s: left });
    };
    update();
    S.retryTimer = setInterval(update, 250);
  }
  function stopRetry() {
    if (S.retryTimer) clearInterval(S.retryTimer);
    S.retryTimer = null; S.retryAt = null;
    $("retry-wait").textContent = ""; show("cancel-retry", false);
  }
  async function retry() {
    $("retry-wait").textContent = t("retrying");
    if (!$("panel-qr").hidden) return getQr();
    const v = S.last;
    // A new code only when the old one is gone: an expired code on a live socket needs a new socket.
    if (v && v.state !== "close" && S.codeExpired) {
      try { await api("POST", `/instance/restart/${enc(S.current)}`); } catch (e) { /* fall through to connect */ }
    }
    return getCode();
  }
  async function connectAnswer(query) {
    let r;
    try { r = await api("GET", `/instance/connect/${enc(S.current)}${query}`); } catch (e) {
      showPrompt("error", { message: e.message }, true); return null;
    }
    if (r && r.error) {
      if (r.clock) showPrompt("clock_refused", {}, false, r.clock.fix || r.message);  // the panel has the detail
      else showPrompt("error", { message: r.message }, true);
      refreshLink();
      return null;
    }
    return r;
  }
  async function getCode() {
    const number = $("number").value.replace(/[^\d]/g, "") || S.number;
    if (!number) { $("number").focus(); return; }
    S.number = number;
    const r = await connectAnswer(`?number=${enc(number)}`);
    if (!r) return;
    if (r.pairingCode) {
      const expires = r.pairingCodeExpiresIn != null ? new Date(Date.now() + S.skew + r.pairingCodeExpiresIn * 1000).toISOString() : r.pairingCodeExpiresAt;
      renderCode(r.pairingCode, expires, r.pairingCodeIssuedAt);
    }
    refreshLink();
  }
  async function getQr() {
    const r = await connectAnswer("");
    if (!r) return;
    hidePrompt();
    if (r.base64) renderQr(r.base64, r.code, r.count, S.last ? S.last.qrLimit : r.count);
    refreshLink();
  }
  async function loadHistory(name) {
    let rows;
    try { rows = await api("GET", `/manager/api/instances/${enc(name)}/history`); } catch (e) { return; }
    const body = $("history").querySelector("tbody"); body.replaceChildren();
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "4", text: t("noHistory") })));
    for (const a of rows.slice().reverse()) {
      body.append(el("tr", { "data-outcome": a.outcome },
        el("td", { text: `${t(`method_${a.method}`)}${a.codeSuffix ? " ··" + a.codeSuffix : ""}` }),
        el("td", {}, fmtTime(a.issuedAtSystem), el("small", { text: fmtTime(a.issuedAtCorrected) }),
          el("small", { text: fmtTime(a.issuedAtServer) })),
        el("td", { text: fmtTime(a.expiresAt) }),
        el("td", { text: `${t(`outcome_${a.outcome}`)}${a.durationSeconds != null ? ` (${Number(a.durationSeconds).toFixed(1)} s)` : ""}` })));
    }
  }

  // --- wiring ----------------------------------------------------------------------------------
  function wire() {
    $("lang").addEventListener("change", (e) => {
      S.lang = e.target.value; localStorage.setItem("evolink.lang", S.lang); applyI18n(); refreshAll();
      if (S.view === "link" && S.shownCode) renderCode(S.shownCode, S.codeExpiresAt ? new Date(S.codeExpiresAt).toISOString() : null, null);
    });
    $("signin-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      $("signin-error").textContent = "";
      try { await signIn($("server").value, $("apikey").value.trim()); } catch (err) { $("signin-error").textContent = err.message; }
    });
    $("signout").addEventListener("click", signOut);
    $("create-form").addEventListener("submit", (e) => { e.preventDefault(); createInstance($("new-name").value.trim()); });
    $("back").addEventListener("click", goInstances);
    $("tab-code").addEventListener("click", () => selectTab("code"));
    $("tab-qr").addEventListener("click", () => { selectTab("qr"); if (S.last && S.last.pairing && S.last.pairing.base64) renderQr(S.last.pairing.base64, S.last.pairing.code, S.last.qrCount, S.last.qrLimit); });
    $("code-form").addEventListener("submit", (e) => { e.preventDefault(); S.autoRetries = 0; hidePrompt(); getCode(); });
    $("get-qr").addEventListener("click", () => { S.autoRetries = 0; getQr(); });
    $("retry").addEventListener("click", () => { stopRetry(); S.autoRetries = 0; retry(); });
    $("cancel-retry").addEventListener("click", stopRetry);
    $("act-restart").addEventListener("click", () => act("restart", S.current));
    $("act-logout").addEventListener("click", () => act("logout", S.current));
    $("act-delete").addEventListener("click", () => act("delete", S.current));
    setInterval(tick, 1000);
  }

  S.lang = pickLang();
  applyI18n();
  wire();
  S.base = sessionStorage.getItem("evolink.base") || location.origin;
  const savedKey = sessionStorage.getItem("evolink.key");
  if (savedKey) signIn(S.base, savedKey).catch(goSignin); else goSignin();
})();
