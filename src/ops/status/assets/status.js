// The status page: polls /status/api/state every two seconds and draws it; no framework, no CDN.
// Data goes into the page as text only (textContent), never as markup. Its strings come from
// the catalogue the server put in the page (the page's language); numbers and dates are formatted
// with Intl in the reader's locale. What the Events view (events.js) shares with it is handed
// over as `window.statusPage`, its polls included.
"use strict";
(function () {
  const POLL_MS = 2000;
  let loggingOut = false;
  const SVG = "http://www.w3.org/2000/svg";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let deadShown = -1;
  let polls = 0;
  /** Called with each state read, in order, after the page drew it (the Events view's live part). */
  const pollHooks = [];

  const TEXT = JSON.parse($("i18n").textContent);
  const LANG = document.documentElement.lang;
  // The browser's own locale where it speaks the page's language (pt-PT, en-GB), else the page's.
  const LOCALE = (navigator.languages || []).find((l) => l.split("-")[0] === LANG.split("-")[0]) || LANG;
  const numbers = new Intl.NumberFormat(LOCALE);
  const oneDecimal = new Intl.NumberFormat(LOCALE, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const twoDecimals = new Intl.NumberFormat(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const dayFormat = new Intl.DateTimeFormat(LOCALE, { day: "2-digit", month: "2-digit", year: "numeric" });
  const minuteFormat = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit" });
  const secondFormat = new Intl.DateTimeFormat(LOCALE, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const plurals = new Intl.PluralRules(LOCALE);

  /** The catalogue's string for `key` with its `{name}` fields filled from `fields`. */
  function t(key, fields) {
    const text = TEXT[key];
    if (text === undefined) {
      console.error("no string " + key + " in the " + LANG + " catalogue");
      return key;
    }
    return text.replace(/\{(\w+)\}/g, (whole, name) => (fields && name in fields ? String(fields[name]) : whole));
  }

  const num = (n) => numbers.format(n);
  // Day and time apart: `07/12/2026 14:05`, without the comma some locales put between them.
  // `at`: milliseconds or an RFC 3339 string, as the relay's JSON gives them.
  function dateTime(at, withSeconds) {
    const date = new Date(at);
    return dayFormat.format(date) + " " + (withSeconds ? secondFormat : minuteFormat).format(date);
  }

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function set(id, text, cls) {
    const node = $(id);
    node.textContent = text;
    if (cls !== undefined) node.className = cls;
  }

  function age(secs) {
    if (secs === null || secs === undefined) return t("common.never");
    if (secs < 60) return t("unit.secs", { s: num(secs) });
    if (secs < 3600) return t("unit.mins", { m: num(Math.floor(secs / 60)), s: num(secs % 60) });
    if (secs < 86400) return t("unit.hours", { h: num(Math.floor(secs / 3600)), m: num(Math.floor((secs % 3600) / 60)) });
    return t("unit.days", { d: num(Math.floor(secs / 86400)), h: num(Math.floor((secs % 86400) / 3600)) });
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? num(n) : oneDecimal.format(n)) + " " + units[i];
  }

  /** What an error answer from the relay means, in the page's language. */
  function refusal(status, code) {
    switch (code) {
      case "unauthorized": return t("error.unauthorized");
      case "forbidden": return t("error.forbidden");
      case "not_found": return t("error.not_found");
      case "conflict": return t("error.conflict");
      case "bad_request": return t("error.bad_request");
      case "too_many_requests": return t("error.too_many_requests");
      case "store_error": return t("error.store_error");
      case "internal": return t("error.internal");
      default: return t("error.http", { status: status });
    }
  }

  // Unauthenticated (session expired, relay restarted): the page itself shows the login form.
  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
    } catch (_) {
      throw new Error(t("error.network"));
    }
    if (response.status === 401) {
      // During a logout the logout handler reloads once its own request is answered: reloading
      // here would abort that request.
      if (!loggingOut) window.location.reload();
      throw new Error(t("error.unauthorized"));
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(refusal(response.status, body.error));
    return body;
  }

  function post(path, payload) {
    return api(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(payload),
    });
  }

  // Stacked bars per minute: accepted, duplicate, rejected.
  function drawMinutes(svg, minutes) {
    svg.replaceChildren();
    const max = Math.max(1, ...minutes.map((m) => m.accepted + m.duplicate + m.rejected));
    const w = 240 / minutes.length;
    let total = 0;
    minutes.forEach((m, i) => {
      let y = 60;
      for (const [cls, n] of [["a", m.accepted], ["d", m.duplicate], ["r", m.rejected]]) {
        if (n === 0) continue;
        const h = Math.max(1, (n / max) * 58);
        y -= h;
        svg.appendChild(el("svg:rect", { class: cls, x: (i * w + 0.5).toFixed(2), y: y.toFixed(2), width: (w - 1).toFixed(2), height: h.toFixed(2) }));
      }
      total += m.accepted + m.duplicate + m.rejected;
    });
    svg.setAttribute("data-total", total);
    const last = minutes[minutes.length - 1];
    svg.setAttribute("aria-label", t("conn.chart", { accepted: num(last.accepted), duplicate: num(last.duplicate), rejected: num(last.rejected) }));
  }

  function tags(container, label, map) {
    container.replaceChildren(label + ": ");
    const entries = Object.entries(map);
    if (entries.length === 0) container.append(t("common.none"));
    for (const [k, v] of entries) container.appendChild(el("span", {}, k + " " + num(v)));
  }

  function connectionCard(name) {
    const id = "conn-" + name;
    let card = document.querySelector('[data-connection="' + CSS.escape(name) + '"]');
    if (card) return card;
    card = el("section", { class: "card connection", "data-connection": name, "data-testid": id });
    card.appendChild(el("h2", {}, name));
    const counts = el("div", { class: "counts" });
    const labels = [["accepted", t("count.accepted")], ["duplicate", t("count.duplicate")], ["rejected", t("count.rejected")]];
    for (const [cls, label] of labels) {
      const span = el("span", { class: cls });
      span.appendChild(el("b", { class: "n" }, "0"));
      span.append(" " + label);
      counts.appendChild(span);
    }
    card.appendChild(counts);
    card.appendChild(el("p", { class: "last" }, ""));
    card.appendChild(el("svg:svg", { class: "chart", viewBox: "0 0 240 60", preserveAspectRatio: "none", role: "img" }));
    const axis = el("p", { class: "axis" });
    axis.append(el("span", {}, t("chart.start")), el("span", {}, t("chart.end")));
    card.appendChild(axis);
    const legend = el("p", { class: "legend" }, "");
    labels.forEach(([, label], i) => {
      legend.appendChild(el("span", { class: "key " + ["a", "d", "r"][i] }));
      legend.append(label);
    });
    card.appendChild(legend);
    card.appendChild(el("p", { class: "tags rejections" }));
    card.appendChild(el("p", { class: "tags formats" }));
    $("connection-cards").appendChild(card);
    const option = el("option", { value: name }, name);
    if (name !== "<unknown>") $("replay-connection").appendChild(option);
    return card;
  }

  function renderConnections(list) {
    if (list.length === 0) {
      $("connection-cards").replaceChildren(el("p", { class: "empty" }, t("conn.none")));
      return;
    }
    for (const c of list) {
      const card = connectionCard(c.name);
      card.querySelector(".accepted .n").textContent = num(c.hour.accepted);
      card.querySelector(".duplicate .n").textContent = num(c.hour.duplicate);
      card.querySelector(".rejected .n").textContent = num(c.hour.rejected);
      card.querySelector(".last").textContent = c.last_event_age_secs === null
        ? t("conn.no_event")
        : t("conn.last_event", { age: age(c.last_event_age_secs) });
      drawMinutes(card.querySelector("svg"), c.minutes);
      tags(card.querySelector(".rejections"), t("conn.rejections"), c.rejections);
      tags(card.querySelector(".formats"), t("conn.formats"), c.formats);
    }
  }

  function renderBroker(b) {
    const cls = b.connected ? "big state-ok" : "big state-bad";
    set("broker-state", b.connected ? t("broker.connected") : t("broker.disconnected"), cls);
    set("broker-badge", b.connected ? t("broker.badge_connected") : t("broker.badge_disconnected"), b.connected ? "badge ok" : "badge bad");
    set("broker-since", t("common.ago", { age: age(b.since_secs) }));
    $("broker-since").title = dateTime(b.since_ms);
    set("broker-reconnects", num(b.reconnects));
    set("broker-rate", b.publish_rate_per_sec === null ? "–" : t("unit.per_sec", { value: twoDecimals.format(b.publish_rate_per_sec) }));
    set("broker-latency", b.confirm_latency_ms === null ? "–" : t("unit.ms", { value: oneDecimal.format(b.confirm_latency_ms) }));
    set("broker-totals", num(b.published) + " / " + num(b.confirms));
    set("broker-refused", num(b.nacks) + " / " + num(b.returns));
  }

  function renderOutbox(o) {
    set("outbox-events", t("common.of", { count: num(o.events), total: num(o.max_events) }));
    set("outbox-bytes", t("common.of", { count: bytes(o.bytes), total: bytes(o.max_bytes) }));
    set("outbox-oldest", o.events === 0 ? t("outbox.none_waiting") : age(o.oldest_pending_age_secs));
    const pressure = {
      ok: [t("outbox.ok"), "state-ok", "ok"],
      near: [t("outbox.near"), "state-warn", "warn"],
      full: [t("outbox.full"), "state-bad", "bad"],
    }[o.back_pressure];
    set("outbox-pressure", pressure[0], pressure[1]);
    set("pressure-badge", t("outbox.badge", { state: pressure[0] }), "badge " + pressure[2]);
    // Depth as bars per minute, the oldest pending age as a line with a dot per minute.
    const svg = $("outbox-chart");
    svg.replaceChildren();
    const maxDepth = Math.max(1, ...o.minutes.map((m) => (m ? m.events : 0)));
    const maxAge = Math.max(1, ...o.minutes.map((m) => (m ? m.oldest_age_secs : 0)));
    const w = 240 / o.minutes.length;
    const points = [];
    o.minutes.forEach((m, i) => {
      if (!m) return;
      if (m.events > 0) {
        const h = Math.max(1, (m.events / maxDepth) * 58);
        svg.appendChild(el("svg:rect", { class: "depth-bar", x: (i * w + 0.5).toFixed(2), y: (60 - h).toFixed(2), width: (w - 1).toFixed(2), height: h.toFixed(2) }));
      }
      const x = (i * w + w / 2).toFixed(1);
      const y = (58 - (m.oldest_age_secs / maxAge) * 56).toFixed(1);
      points.push(x + "," + y);
      if (m.oldest_age_secs > 0) svg.appendChild(el("svg:circle", { class: "age-dot", cx: x, cy: y, r: 1.2 }));
    });
    if (points.length > 1) svg.appendChild(el("svg:polyline", { class: "age", points: points.join(" ") }));
    svg.setAttribute("data-peak", maxDepth);
  }

  function renderStore(s) {
    set("store-disk", bytes(s.disk_bytes));
    set("store-dedup", num(s.dedup_keys));
    set("store-kept", num(s.delivered_kept) + " (" + bytes(s.delivered_kept_bytes) + ")");
    // Found when the store was opened; the log's error names the segment and the seqs lost.
    if (s.damaged_bytes > 0) {
      set("store-damage", t("store.damaged", { bytes: bytes(s.damaged_bytes), records: num(s.lost_records) }), "state-bad");
    } else {
      set("store-damage", t("common.none"), "state-ok");
    }
  }

  async function showBody(seq) {
    try {
      const detail = await api("/status/api/dead/" + encodeURIComponent(seq));
      set("dead-body-seq", String(seq));
      // Indented for reading; JSON.parse keeps the relayed key order.
      let text = detail.body_text;
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* shown as stored */ }
      $("dead-body").textContent = text;
      $("dead-body-box").hidden = false;
    } catch (e) {
      set("dead-notice", t("dead.cannot_open", { seq: seq, error: e.message }), "notice error");
    }
  }

  function askReplay(cell, seq) {
    cell.replaceChildren();
    cell.append(t("dead.ask") + " ");
    const yes = el("button", { type: "button", class: "danger confirm-replay" }, t("action.yes_replay"));
    const no = el("button", { type: "button", class: "quiet" }, t("action.cancel"));
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        const r = await post("/status/api/dead/replay", { ids: [String(seq)] });
        set("dead-notice", t("dead.replayed", { seq: seq, count: num(r.replayed) }), "notice");
        if ($("dead-body-seq").textContent === String(seq)) {
          $("dead-body-box").hidden = true;
          $("dead-body").textContent = "";
        }
      } catch (e) {
        set("dead-notice", t("action.failed", { error: e.message }), "notice error");
      }
      deadShown = -1;
      poll();
    });
    no.addEventListener("click", () => { deadShown = -1; poll(); });
    cell.append(yes, " ", no);
  }

  // The publisher writes why the broker returned an event as `unroutable: <AMQP code and text>`;
  // the AMQP part is the broker's own words, kept as they are.
  function reason(text) {
    const reply = text.startsWith("unroutable: ") ? text.slice("unroutable: ".length) : null;
    return reply === null ? text : t("dead.unroutable", { reply: reply });
  }

  async function loadDead() {
    const list = await api("/status/api/dead");
    const rows = $("dead-rows");
    rows.replaceChildren();
    for (const d of list) {
      const tr = el("tr", { "data-seq": d.seq });
      for (const text of [d.seq, d.kind, d.connection, d.action || "", d.ticket_id === undefined ? "" : d.ticket_id, reason(d.reason), dateTime(d.dead_at)]) {
        tr.appendChild(el("td", {}, text));
      }
      const cell = el("td", { class: "actions" });
      const show = el("button", { type: "button", class: "quiet show-body" }, t("dead.show_body"));
      show.addEventListener("click", () => showBody(d.seq));
      const replay = el("button", { type: "button", class: "replay" }, t("replay.start"));
      replay.addEventListener("click", () => askReplay(cell, d.seq));
      cell.append(show, " ", replay);
      tr.appendChild(cell);
      rows.appendChild(tr);
    }
    $("dead-empty").hidden = list.length > 0;
    $("dead-table").hidden = list.length === 0;
  }

  async function poll() {
    try {
      const state = await api("/status/api/state");
      renderConnections(state.connections);
      renderBroker(state.broker);
      renderOutbox(state.outbox);
      renderStore(state.store);
      set("dead-count", num(state.dead_letters));
      // The table is reloaded when the count moves, and now and then for changes that keep it.
      if (state.dead_letters !== deadShown || polls % 15 === 0) {
        await loadDead();
        deadShown = state.dead_letters;
      }
      for (const hook of pollHooks) await hook(state);
      polls++;
      set("updated", t("header.updated", { time: secondFormat.format(state.now_ms) }));
      $("poll-error").hidden = true;
    } catch (e) {
      set("poll-error", t("poll.unreachable", { error: e.message }));
      $("poll-error").hidden = false;
    }
  }

  // A closed body leaves the page: no hidden copy of what a reader closed.
  $("dead-body-close").addEventListener("click", () => {
    $("dead-body-box").hidden = true;
    $("dead-body").textContent = "";
  });

  $("replay-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("replay-confirm").hidden = false;
    $("replay-submit").hidden = true;
  });
  $("replay-no").addEventListener("click", () => {
    $("replay-confirm").hidden = true;
    $("replay-submit").hidden = false;
  });
  $("replay-yes").addEventListener("click", async () => {
    const minutes = Number($("replay-window").value);
    const request = { since_ms: Date.now() - minutes * 60000 };
    if ($("replay-kind").value) request.kind = $("replay-kind").value;
    if ($("replay-connection").value) request.connection = $("replay-connection").value;
    try {
      const r = await post("/status/api/replay", request);
      const done = plurals.select(r.replayed) === "one" ? t("replay.done.one", { count: num(r.replayed) }) : t("replay.done.other", { count: num(r.replayed) });
      set("replay-notice", done, "notice");
    } catch (e) {
      set("replay-notice", t("action.failed", { error: e.message }), "notice error");
    }
    $("replay-confirm").hidden = true;
    $("replay-submit").hidden = false;
  });

  $("logout").addEventListener("click", async () => {
    loggingOut = true;
    clearInterval(poller);
    const answer = await fetch("/status/logout", { method: "POST", credentials: "same-origin", headers: { "x-csrf-token": csrf } });
    // The answer read to its end first: a reload while it is still being received aborts it.
    await answer.arrayBuffer().catch(() => null);
    window.location.reload();
  });

  window.statusPage = Object.freeze({
    t, el, set, num, age, bytes, dateTime, api, post, plurals,
    onPoll: (hook) => { pollHooks.push(hook); },
  });

  poll();
  const poller = setInterval(poll, POLL_MS);
})();
