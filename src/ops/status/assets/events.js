// The status page's Events view: filters, a list without personal data (newest first, older pages
// by cursor), and one event's detail with its timeline, its body (only on a click) and a replay
// (after a confirmation). Live on the page's own poll: only events newer than the listed ones
// (or not yet settled) are asked for. Helpers, strings and formats come from status.js.
"use strict";
(function () {
  const { t, el, set, num, age, bytes, dateTime, api, post, plurals, onPoll } = window.statusPage;
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  /** States an event may still leave: a listed one in them is asked for again. */
  const UNSETTLED = new Set(["pending"]);

  let filters = new URLSearchParams(); // the search's filters, as sent (no cursor, no limit)
  let cursor = null; // the next older page's, null: the list is whole
  let listed = []; // the listed summaries, newest first
  const rowOf = new Map(); // event_id → its <tr>
  let openId = null; // the event in the detail panel
  let generation = 0; // bumped by every new search: answers to an older one are dropped
  let loaded = false;
  let refreshing = false;

  const stateName = (state) => ({
    pending: t("state.pending"),
    confirmed: t("state.confirmed"),
    dead: t("state.dead"),
  })[state] || state;

  const stepName = (step) => ({
    received: t("step.received"),
    stored: t("step.stored"),
    published: t("step.published"),
    confirmed: t("step.confirmed"),
    returned: t("step.returned"),
    dead: t("step.dead"),
    replayed: t("step.replayed"),
    duplicate: t("step.duplicate"),
  })[step] || step;

  /** What the relay says of a step, in the page's language where it is one of its phrases. */
  function stepDetail(step, d) {
    if (step.step === "duplicate") {
      return t("step.duplicates", { count: num(d.duplicates.count) });
    }
    const copy = /^copy (\d+)$/.exec(step.detail || "");
    if (copy) return t("step.copy", { n: num(Number(copy[1])) });
    // A dead letter's reason: the publisher's `unroutable: ` and the broker's own words.
    if (step.step === "dead" && step.detail && step.detail.startsWith("unroutable: ")) {
      return t("dead.unroutable", { reply: step.detail.slice("unroutable: ".length) });
    }
    return step.detail || "";
  }

  const dash = (value) => (value === null || value === undefined || value === "" ? "–" : String(value));
  const kindChange = (e) => (e.change ? e.kind + " · " + e.change : e.kind);
  const ms = (at) => Date.parse(at);

  function badge(state) {
    return el("span", { class: "state state-" + state, "data-state": state }, stateName(state));
  }

  function showError(message) {
    set("events-error", message);
    $("events-error").hidden = message === "";
  }

  // ---- the view: a tab beside the overview, named in the address so a reload keeps it ----

  function showView() {
    const events = window.location.hash === "#events";
    $("overview").hidden = events;
    $("events").hidden = !events;
    for (const tab of document.querySelectorAll("nav.views a")) {
      if (tab.dataset.view === (events ? "events" : "overview")) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    // The language switch leads back to the same view: a redirect keeps the link's fragment.
    for (const link of document.querySelectorAll("nav.lang a")) {
      link.hash = events ? "events" : "";
    }
    if (events && !loaded) search();
  }

  // ---- the list ----

  function readFilters() {
    const params = new URLSearchParams();
    for (const [id, name] of [["f-ticket", "ticket"], ["f-id", "id"], ["f-event", "event"], ["f-kind", "kind"], ["f-connection", "connection"], ["f-state", "state"]]) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    const range = $("f-range").value;
    if (range === "between") {
      // datetime-local is the reader's local time; the relay takes RFC 3339.
      for (const [id, name] of [["f-from", "since"], ["f-to", "until"]]) {
        const at = $(id).value ? new Date($(id).value) : null;
        if (at && !Number.isNaN(at.getTime())) params.set(name, at.toISOString());
      }
    } else if (range) {
      params.set("since", range);
    }
    return params;
  }

  function fetchPage(extra) {
    const params = new URLSearchParams(filters);
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    params.set("limit", String(PAGE));
    return api("/status/api/events?" + params.toString());
  }

  function holding(child) {
    const td = el("td");
    td.appendChild(child);
    return td;
  }

  function fillRow(tr, e) {
    tr.replaceChildren();
    tr.dataset.state = e.state;
    tr.dataset.at = String(ms(e.received_at));
    const time = el("td", { class: "time" });
    const open = el("button", { type: "button", class: "link open-event" }, dateTime(e.received_at, true));
    open.addEventListener("click", () => openEvent(e.event_id));
    time.appendChild(open);
    tr.appendChild(time);
    tr.appendChild(holding(el("code", {}, kindChange(e))));
    tr.appendChild(el("td", {}, e.connection));
    tr.appendChild(el("td", { class: "number" }, dash(e.ticket)));
    tr.appendChild(holding(badge(e.state)));
    const dups = el("td", { class: "number dups" }, e.duplicates.count > 0 ? num(e.duplicates.count) : "–");
    if (e.duplicates.count > 0 && e.duplicates.last_at) dups.title = t("events.dup_last", { at: dateTime(e.duplicates.last_at, true) });
    tr.appendChild(dups);
    tr.classList.toggle("selected", e.event_id === openId);
  }

  function makeRow(e) {
    const tr = el("tr", { "data-event": e.event_id });
    tr.addEventListener("click", (event) => {
      if (event.target.closest("button") === null) openEvent(e.event_id);
    });
    fillRow(tr, e);
    rowOf.set(e.event_id, tr);
    return tr;
  }

  function summary() {
    const count = listed.length;
    set("events-summary", count === 0 ? "" : (plurals.select(count) === "one"
      ? t("events.shown.one", { count: num(count) })
      : t("events.shown.other", { count: num(count) })));
    $("events-empty").hidden = count > 0;
    $("events-table").hidden = count === 0;
    $("events-more").hidden = cursor === null;
  }

  /**
   * Adds or updates `events` (newest first), keeping the list in received order, one row per
   * event: a replay's copy is a record of the same event id, newer than the original. The row
   * shows the newest record's state and the duplicates counted (on the original).
   */
  function merge(events) {
    const rows = $("events-rows");
    const seen = new Set();
    for (const found of events) {
      const at = listed.findIndex((l) => l.event_id === found.event_id);
      let e = found;
      if (at !== -1) {
        const known = listed[at];
        const dups = known.duplicates.count > e.duplicates.count ? known.duplicates : e.duplicates;
        // An older record of an event this answer already gave: its duplicates only.
        e = Object.assign({}, seen.has(e.event_id) ? known : e, { duplicates: dups });
        listed[at] = e;
        fillRow(rowOf.get(e.event_id), e);
        seen.add(e.event_id);
        continue;
      }
      seen.add(e.event_id);
      // New ones are normally the newest: found from the top.
      let place = listed.findIndex((l) => ms(l.received_at) < ms(e.received_at));
      if (place === -1) place = listed.length;
      listed.splice(place, 0, e);
      rows.insertBefore(makeRow(e), rows.children[place] || null);
    }
  }

  async function search() {
    const mine = ++generation;
    loaded = true;
    filters = readFilters();
    try {
      const page = await fetchPage({});
      if (mine !== generation) return;
      listed = [];
      rowOf.clear();
      $("events-rows").replaceChildren();
      cursor = page.next_cursor;
      merge(page.events);
      summary();
      // What the list answers, for a reader (and a test) to tell it from the one before.
      $("events-rows").dataset.query = [...filters].map(([k, v]) => k + "=" + v).sort().join("&");
      showError("");
    } catch (e) {
      if (mine === generation) showError(t("events.failed", { error: e.message }));
    }
  }

  async function more() {
    if (cursor === null) return;
    const mine = generation;
    $("events-more").disabled = true;
    try {
      const page = await fetchPage({ cursor: cursor });
      if (mine !== generation) return;
      cursor = page.next_cursor;
      merge(page.events);
      summary();
      showError("");
    } catch (e) {
      showError(t("events.failed", { error: e.message }));
    } finally {
      $("events-more").disabled = false;
    }
  }

  /**
   * The live part: what arrived since the newest listed event, and the listed ones still on
   * their way to the broker. The filters' own range always holds all of these.
   */
  async function refreshList() {
    const mine = generation;
    const waiting = listed.slice(0, PAGE).filter((l) => UNSETTLED.has(l.state)).map((l) => ms(l.received_at));
    const newest = listed.length > 0 ? ms(listed[0].received_at) : null;
    // A millisecond early: the newest listed comes back (and is recognised), none is skipped.
    const from = Math.min(newest ?? Infinity, ...waiting) - 1;
    const extra = Number.isFinite(from) ? { since: new Date(from).toISOString() } : {};
    const page = await fetchPage(extra);
    if (mine !== generation) return;
    if (page.next_cursor !== null && listed.length > 0 && !page.events.some((e) => rowOf.has(e.event_id))) {
      // More arrived than a page holds, with a gap before the listed ones: start from the top.
      await search();
      return;
    }
    if (listed.length === 0) cursor = page.next_cursor;
    merge(page.events);
    summary();
  }

  // ---- one event ----

  function renderDetail(d) {
    set("d-id", d.event_id);
    set("d-received", dateTime(d.received_at, true));
    set("d-connection", d.connection);
    set("d-company", dash(d.company));
    $("d-kind").replaceChildren(el("code", {}, kindChange(d)));
    set("d-ticket", dash(d.ticket));
    set("d-wa", dash(d.wa_id));
    set("d-format", dash(d.format));
    set("d-size", bytes(d.size));
    $("d-state").replaceChildren(badge(d.state));
    set("d-dups", d.duplicates.count === 0
      ? t("common.none")
      : t("detail.dups", { count: num(d.duplicates.count), at: dateTime(d.duplicates.last_at, true) }));
    const received = ms(d.received_at);
    const items = d.timeline.map((step) => {
      const li = el("li", { "data-step": step.step, class: "step-" + step.step });
      li.appendChild(el("span", { class: "what" }, stepName(step.step)));
      const when = el("span", { class: "when" }, dateTime(step.at, true));
      const after = ms(step.at) - received;
      if (step.step !== "received" && after >= 0) {
        when.append(" ", el("small", {}, "+" + (after < 1000 ? t("unit.ms", { value: num(after) }) : age(Math.round(after / 1000)))));
      }
      li.appendChild(when);
      const detail = stepDetail(step, d);
      if (detail) li.appendChild(el("span", { class: "detail" }, detail));
      return li;
    });
    $("d-timeline").replaceChildren(...items);
    $("d-timeline").dataset.steps = d.timeline.map((s) => s.step).join(" ");
  }

  async function loadDetail(id) {
    const detail = await api("/status/api/events/" + encodeURIComponent(id));
    if (openId === id) renderDetail(detail);
  }

  async function openEvent(id) {
    if ($("d-id").textContent !== id) {
      // Nothing of the event shown before stays under the new one's name meanwhile.
      $("d-timeline").replaceChildren();
      $("d-timeline").dataset.steps = "";
    }
    openId = id;
    for (const [eventId, tr] of rowOf) tr.classList.toggle("selected", eventId === id);
    $("detail-body-box").hidden = true;
    $("detail-body").textContent = "";
    $("detail-confirm").hidden = true;
    $("detail-replay").hidden = false;
    set("detail-notice", "", "notice");
    try {
      await loadDetail(id);
      $("event-detail").hidden = false;
      $("events-grid").classList.add("with-detail");
      // In one column (a phone) the detail is under the list: brought into sight.
      if (window.matchMedia("(max-width: 900px)").matches) $("event-detail").scrollIntoView({ block: "start" });
    } catch (e) {
      showError(t("detail.cannot_open", { id: id, error: e.message }));
    }
  }

  function closeDetail() {
    openId = null;
    $("detail-body-box").hidden = true;
    $("detail-body").textContent = "";
    $("event-detail").hidden = true;
    $("events-grid").classList.remove("with-detail");
    for (const tr of rowOf.values()) tr.classList.remove("selected");
  }

  async function openBody() {
    const id = openId;
    try {
      const body = await api("/status/api/events/" + encodeURIComponent(id) + "/body");
      if (openId !== id) return;
      // Indented for reading; JSON.parse keeps the relayed key order.
      let text = body.body_text;
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* shown as relayed */ }
      $("detail-body").textContent = text;
      $("detail-body-box").hidden = false;
    } catch (e) {
      set("detail-notice", t("detail.cannot_open", { id: id, error: e.message }), "notice error");
    }
  }

  async function replay() {
    const id = openId;
    $("detail-yes").disabled = true;
    try {
      await post("/status/api/events/" + encodeURIComponent(id) + "/replay", {});
      set("detail-notice", t("detail.replayed"), "notice");
      await loadDetail(id);
    } catch (e) {
      set("detail-notice", t("action.failed", { error: e.message }), "notice error");
    } finally {
      $("detail-yes").disabled = false;
      $("detail-confirm").hidden = true;
      $("detail-replay").hidden = false;
    }
  }

  // ---- wiring ----

  /** The connections the relay knows, as the overview reads them, offered as a filter. */
  function connections(state) {
    const select = $("f-connection");
    const known = new Set([...select.options].map((o) => o.value));
    for (const c of state.connections) {
      if (c.name !== "<unknown>" && !known.has(c.name)) select.appendChild(el("option", { value: c.name }, c.name));
    }
  }

  onPoll(async (state) => {
    connections(state);
    if ($("events").hidden || !loaded || refreshing) return;
    refreshing = true;
    try {
      await refreshList();
      if (openId !== null) await loadDetail(openId);
      showError("");
    } catch (e) {
      showError(t("events.failed", { error: e.message }));
    } finally {
      refreshing = false;
    }
  });

  $("events-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    closeDetail();
    search();
  });
  // After the form's own reset has cleared the fields.
  $("events-filter").addEventListener("reset", () => {
    setTimeout(() => { betweenShown(); closeDetail(); search(); }, 0);
  });
  function betweenShown() {
    for (const label of document.querySelectorAll("#events-filter .between")) label.hidden = $("f-range").value !== "between";
  }
  $("f-range").addEventListener("change", betweenShown);
  $("events-more").addEventListener("click", more);
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-body-open").addEventListener("click", openBody);
  // A closed body leaves the page: no hidden copy of what a reader closed.
  $("detail-body-close").addEventListener("click", () => {
    $("detail-body-box").hidden = true;
    $("detail-body").textContent = "";
  });
  $("detail-replay").addEventListener("click", () => {
    $("detail-replay").hidden = true;
    $("detail-confirm").hidden = false;
  });
  $("detail-no").addEventListener("click", () => {
    $("detail-confirm").hidden = true;
    $("detail-replay").hidden = false;
  });
  $("detail-yes").addEventListener("click", replay);
  window.addEventListener("hashchange", showView);
  showView();
})();
