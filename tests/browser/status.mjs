// The status page in Debian's headless Chromium, driven by playwright-core. Started by the Rust
// integration test tests/api/status_page.rs, which owns the relay, the broker proxy and the
// queues: a line `@<request>` on stdout asks it to act, and it answers one line on stdin
// (`ok ...` or `fail <why>`). Exits non-zero on the first failed check.
//
// Environment: STATUS_URL (http://127.0.0.1:<admin port>/status), ADMIN_TOKEN, CONNECTION,
// SHOTS_DIR (screenshots), CHROMIUM (default /usr/bin/chromium), PERSONAL (comma-separated
// strings the posted bodies carry that no view may show unless a body is opened), MAX_OUTBOX
// (the relay's storage.max_outbox, shown formatted per locale), SECRET (a value under a redacted
// key of a posted body: never shown, not even in an opened body).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const STATUS_URL = env("STATUS_URL");
const TOKEN = env("ADMIN_TOKEN");
const CONNECTION = env("CONNECTION");
const SHOTS = env("SHOTS_DIR");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const PERSONAL = env("PERSONAL", "").split(",").filter(Boolean);
const MAX_OUTBOX = Number(env("MAX_OUTBOX"));
const SECRET = env("SECRET");
/** The page's two catalogues, as the relay embeds them. */
const catalogue = (lang) => JSON.parse(readFileSync(new URL(`../../src/ops/status/assets/i18n/${lang}.json`, import.meta.url), "utf8"));
const CATALOGUES = { "pt-BR": catalogue("pt-BR"), en: catalogue("en") };
// The page is checked in Brazil's time zone, where dates read day first.
const TIME_ZONE = "America/Sao_Paulo";
const WAIT = { timeout: 30_000 };

mkdirSync(SHOTS, { recursive: true });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust side to act; resolves with the words after `ok`. */
async function ask(request) {
  process.stdout.write(`@${request}\n`);
  const { value, done } = await lines.next();
  if (done) throw new Error(`no answer to @${request}`);
  const [status, ...rest] = value.trim().split(" ");
  if (status !== "ok") throw new Error(`@${request}: ${value}`);
  return rest;
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Waits for `predicate(arg)` to hold in the page; a time-out names what never happened. */
async function until(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg ?? null, WAIT);
  } catch (e) {
    throw new Error(`${what} did not happen within ${WAIT.timeout} ms (${e.message.split("\n")[0]})`);
  }
}

const errors = [];
/** Pages this test is navigating away from: their polls in flight are aborted, as they should be. */
const leaving = new WeakSet();
function watch(page, name) {
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${name} console: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`${name} page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    if (leaving.has(page) && r.failure()?.errorText === "net::ERR_ABORTED") return;
    errors.push(`${name} request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

/** Runs `navigation` (a click that leaves the page, a reload) on a page whose requests it may abort. */
async function leave(page, navigation) {
  leaving.add(page);
  try {
    await navigation();
  } finally {
    leaving.delete(page);
  }
}

/** Logs in through the form; resolves with the status of the form's POST. */
async function login(page, token) {
  await page.goto(STATUS_URL);
  await page.locator("#login-form").waitFor(WAIT);
  await page.fill("#token", token);
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/status/login") && r.request().method() === "POST", WAIT),
    page.click("#login-form button[type=submit]"),
  ]);
  await page.waitForLoadState("load");
  return posted.status();
}

/** No personal value of the posted bodies anywhere in the page's text or markup. */
async function noPersonalData(page, where) {
  const text = await page.content();
  for (const value of PERSONAL) check(!text.includes(value), `${where}: the page shows "${value}"`);
}

const card = (page) => page.locator(`[data-connection="${CONNECTION}"]`);

/**
 * The strings of `lang`'s catalogue that the other one says differently: each literal piece
 * between `{fields}` of three characters or more, as a whole word, case and all.
 */
function foreignStrings(lang) {
  const other = lang === "en" ? "pt-BR" : "en";
  const own = CATALOGUES[lang];
  const pieces = new Set();
  for (const [key, text] of Object.entries(CATALOGUES[other])) {
    // The switch names each language in that language, on every page.
    if (own[key] === text || key === "lang.name") continue;
    for (const piece of text.split(/\{\w+\}/)) {
      const trimmed = piece.trim();
      if (trimmed.length >= 3) pieces.add(trimmed);
    }
  }
  return [...pieces];
}

/** `piece` as a whole word, case and all. */
function wordPattern(piece) {
  const escaped = piece.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, "u");
}

/**
 * The page is in `lang` only: its <html lang>, and no string of the other language in its
 * visible text, its hidden text (messages shown later) or what it says to screen readers.
 */
async function speaks(page, lang, where) {
  check((await page.getAttribute("html", "lang")) === lang, `${where}: <html lang> is not ${lang}`);
  const said = await page.evaluate(() => ({
    visible: document.title + "\n" + document.body.innerText,
    hidden: document.body.textContent,
    labels: [...document.querySelectorAll("[aria-label], [title], [alt], [placeholder]")]
      .flatMap((e) => ["aria-label", "title", "alt", "placeholder"].map((a) => e.getAttribute(a)).filter(Boolean))
      .join("\n"),
  }));
  const foreign = foreignStrings(lang);
  check(foreign.length > 60, `only ${foreign.length} strings to look for`);
  for (const piece of foreign) {
    const word = wordPattern(piece);
    for (const [what, text] of Object.entries(said)) check(!word.test(text), `${where}: the ${lang} page's ${what} text says "${piece}"`);
  }
}

/** `n` with `separator` between groups of three digits, written out here rather than by Intl. */
const grouped = (n, separator) => String(n).replace(/\B(?=(\d{3})+$)/g, separator);

/** Today in `TIME_ZONE` (UTC-3, no daylight saving since 2019), a minute ago or now. */
function brazilDays() {
  return [60_000, 0].map((back) => {
    const d = new Date(Date.now() - back - 3 * 3600_000);
    return { day: d.getUTCDate(), month: d.getUTCMonth() + 1, year: d.getUTCFullYear() };
  });
}

/** Numbers and dates in `lang`'s conventions: the outbox limit, the dead letter's date, the update time. */
async function formatted(page, lang, seq) {
  const pad = (n) => String(n).padStart(2, "0");
  const events = `0 ${lang === "en" ? "of" : "de"} ${grouped(MAX_OUTBOX, lang === "en" ? "," : ".")}`;
  await until(page, `the outbox shown as "${events}"`, (want) => document.querySelector("#outbox-events").textContent === want, events);
  const when = await page.textContent(`tr[data-seq="${seq}"] td:nth-child(7)`);
  const days = brazilDays().map((d) => (lang === "en" ? `${pad(d.month)}/${pad(d.day)}/${d.year}` : `${pad(d.day)}/${pad(d.month)}/${d.year}`));
  const clock = lang === "en" ? /^\d{2}:\d{2} [AP]M$/ : /^([01]\d|2[0-3]):[0-5]\d$/;
  const [day, ...time] = when.split(" ");
  check(days.includes(day) && clock.test(time.join(" ")), `${lang}: dead since "${when}", want ${days.join(" or ")} and a ${clock} time`);
  const updated = await page.textContent("#updated");
  const stamp = lang === "en" ? /^updated \d{2}:\d{2}:\d{2} [AP]M$/ : /^atualizado às ([01]\d|2[0-3]):[0-5]\d:[0-5]\d$/;
  check(stamp.test(updated), `${lang}: "${updated}"`);
  return { events, when, updated };
}

/** Clicks the switch's `lang` and waits for the page it leads back to. */
async function switchTo(page, lang) {
  await leave(page, async () => {
    await Promise.all([
      page.waitForResponse((r) => r.url() === STATUS_URL && r.request().isNavigationRequest() && r.status() === 200, WAIT),
      page.click(`nav.lang a[data-lang="${lang}"]`),
    ]);
    await page.waitForLoadState("load");
  });
}

/**
 * The page in Brazilian Portuguese for a browser asking for it (through `/`), in English after
 * the switch, remembered across a reload; numbers and dates in each one's conventions.
 */
async function languages(seq) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "pt-BR", timezoneId: TIME_ZONE });
  const br = await context.newPage();
  watch(br, "pt-BR");
  await br.goto(new URL("/", STATUS_URL).href);
  check(new URL(br.url()).pathname === "/status", `/ led to ${br.url()}`);
  await br.locator("#login-form").waitFor(WAIT);
  await speaks(br, "pt-BR", "login form");
  await br.screenshot({ path: join(SHOTS, "status-login-pt-BR.png") });
  check((await login(br, "not-the-admin-token-at-all")) === 303, "wrong token in pt-BR");
  check((await br.textContent("#login-error")) === CATALOGUES["pt-BR"]["login.refused"], "the refusal is not in Portuguese");
  await speaks(br, "pt-BR", "refused login");
  check((await login(br, TOKEN)) === 303, "login in pt-BR");
  await br.locator(`tr[data-seq="${seq}"]`).waitFor(WAIT);
  await until(br, "the pt-BR page updated", () => document.querySelector("#updated").textContent.startsWith("atualizado"));
  await until(br, "the broker shown connected in Portuguese", () => document.querySelector("#broker-state").textContent === "conectado");
  const pt = await formatted(br, "pt-BR", seq);
  await speaks(br, "pt-BR", "main view");
  await noPersonalData(br, "pt-BR main view");
  await br.screenshot({ path: join(SHOTS, "status-pt-BR.png"), fullPage: true });
  console.log(`pt-BR: ${pt.events}, dead since ${pt.when}, ${pt.updated}`);

  // The switch: English from the first paint on (the server renders it), and after a reload.
  await switchTo(br, "en");
  const firstPaint = await context.request.get(STATUS_URL);
  check((await firstPaint.text()).includes('<html lang="en">'), "the server did not render the chosen language");
  await leave(br, () => br.reload());
  await br.locator(`tr[data-seq="${seq}"]`).waitFor(WAIT);
  await until(br, "the en page updated", () => document.querySelector("#updated").textContent.startsWith("updated"));
  const en = await formatted(br, "en", seq);
  await speaks(br, "en", "main view after the switch and a reload");
  check((await br.getAttribute('nav.lang a[data-lang="en"]', "aria-current")) === "true", "the switch does not mark English");
  await br.screenshot({ path: join(SHOTS, "status-en.png"), fullPage: true });
  console.log(`en: ${en.events}, dead since ${en.when}, ${en.updated}`);

  // And back: a browser asking for English gets Portuguese once it chose it.
  await switchTo(br, "pt-BR");
  await leave(br, () => br.reload());
  await until(br, "the page back in Portuguese", () => document.documentElement.lang === "pt-BR" && document.querySelector("#updated").textContent.startsWith("atualizado"));
  await speaks(br, "pt-BR", "main view switched back");
  await context.close();
  console.log("pt-BR for a Portuguese browser, the switch to English and back remembered, numbers and dates per locale");
}

/** The steps of the event detail's timeline, in order. */
const steps = (page) => page.evaluate(() => (document.querySelector("#d-timeline").dataset.steps || "").split(" ").filter(Boolean));

/** The Events view's filter fields, by the query parameter each one sets. */
const FILTER_FIELDS = { ticket: "#f-ticket", id: "#f-id", event: "#f-event", kind: "#f-kind", connection: "#f-connection", state: "#f-state" };

/**
 * Sets the Events view's filters (the others cleared: text fields filled, selects chosen) and
 * waits for the list answering them to hold exactly one row; resolves with its cells.
 */
async function findOne(page, filters, what) {
  await page.click("#events-clear");
  await until(page, "the filters cleared", () => document.querySelector("#f-ticket").value === "");
  for (const [name, value] of Object.entries(filters)) {
    const field = FILTER_FIELDS[name];
    if ((await page.locator(field).evaluate((e) => e.tagName)) === "SELECT") await page.selectOption(field, value);
    else await page.fill(field, value);
  }
  await page.click("#events-search");
  const query = Object.entries(filters).map(([k, v]) => k + "=" + v).sort().join("&");
  await until(page, `${what}: one event listed for ${query}`, (want) => document.querySelector("#events-rows").dataset.query === want
    && document.querySelectorAll("#events-rows tr").length === 1, query);
  return page.locator("#events-rows tr").first().locator("td").allTextContents();
}

/**
 * The Events view: a new event appears without a reload, is found by its WhatsApp id, its
 * timeline reaches "confirmed", a duplicate post is answered on it, its body opens redacted, a
 * replay shows in its timeline and on the queue; a status event is found by its ticket.
 */
async function eventsView(page) {
  await page.click("#tab-events");
  await page.locator("#events-filter").waitFor(WAIT);
  check(new URL(page.url()).hash === "#events", `the Events tab led to ${page.url()}`);
  check(await page.locator("#overview").isHidden(), "the overview is still shown beside the events");
  await until(page, "the events listed", () => document.querySelectorAll("#events-rows tr").length > 0);
  const [eventId, waId, ticket] = await ask("message");
  const row = page.locator(`tr[data-event="${eventId}"]`);
  await row.waitFor(WAIT);
  check(await page.evaluate(() => window.__sameDocument === true), "the page reloaded for a new event");
  check((await page.locator("#events-rows tr").first().getAttribute("data-event")) === eventId, "the new event is not listed first");
  const cells = await row.locator("td").allTextContents();
  check(cells[1].startsWith("message") && cells[3] === ticket, `the new event's row: ${JSON.stringify(cells)}`);
  await noPersonalData(page, "the events list");
  console.log(`a new event listed live: ${cells.join(" | ")}`);

  await findOne(page, { id: waId }, "by WhatsApp id");
  check((await page.locator("#events-rows tr").first().getAttribute("data-event")) === eventId, "another event found by its WhatsApp id");
  await row.locator(".open-event").click();
  await page.locator("#event-detail").waitFor(WAIT);
  check((await page.textContent("#d-id")) === eventId, "the detail is of another event");
  check((await page.textContent("#d-wa")) === waId, "the detail lacks the WhatsApp id");
  // The publish time comes back with the confirm, and reaches the index with the next flush.
  await until(page, "its timeline published and confirmed", () => {
    const s = (document.querySelector("#d-timeline").dataset.steps || "").split(" ");
    return s.includes("published") && s.includes("confirmed");
  });
  const path = await steps(page);
  check(JSON.stringify(path.slice(0, 4)) === JSON.stringify(["received", "stored", "published", "confirmed"]), `timeline ${path.join(" → ")}`);
  check((await row.getAttribute("data-state")) === "confirmed" || (await page.locator(`tr[data-event="${eventId}"] [data-state="confirmed"]`).count()) === 1, "the row is not confirmed");
  console.log(`found by WhatsApp id; timeline ${path.join(" → ")}`);

  await ask("duplicate");
  await until(page, "the duplicate on its timeline and in the list", (id) => (document.querySelector("#d-timeline").dataset.steps || "").split(" ").includes("duplicate")
    && document.querySelector(`tr[data-event="${id}"] .dups`).textContent === "1", eventId);
  check((await page.textContent("#d-dups")).startsWith("1, the last at "), `duplicates: ${await page.textContent("#d-dups")}`);
  await noPersonalData(page, "the event's detail");
  console.log("the duplicate post answered on the first event, live");

  check(await page.locator("#detail-body-box").isHidden(), "the body is open before a click");
  await page.click("#detail-body-open");
  await page.locator("#detail-body").waitFor(WAIT);
  const body = await page.textContent("#detail-body");
  check(body.includes("[redacted]") && !body.includes(SECRET), "the opened body is not the redacted one");
  check(PERSONAL.length === 0 || body.includes(PERSONAL[0]), "the opened body lacks its content");
  await page.click("#detail-body-close");

  await page.click("#detail-replay");
  await page.locator("#detail-yes").waitFor(WAIT);
  await page.click("#detail-yes");
  // The first confirm stays where it was; the copy is published and confirmed after the replay.
  await until(page, "the replay and its copy's publish and confirm in its timeline", () => {
    const s = (document.querySelector("#d-timeline").dataset.steps || "").split(" ");
    const replay = s.indexOf("replayed");
    return replay > s.indexOf("confirmed") && s.indexOf("confirmed") > s.indexOf("published")
      && s.lastIndexOf("published") > replay && s.lastIndexOf("confirmed") > s.lastIndexOf("published");
  });
  check((await page.textContent("#detail-notice")).includes("same message_id"), `replay notice: ${await page.textContent("#detail-notice")}`);
  await ask("queued message 2");
  await ask(`published ${eventId}`);
  await ask(`published ${eventId}`);
  console.log(`body opened redacted; replayed, on the queue twice with its message_id; timeline ${(await steps(page)).join(" → ")}`);

  // A status event of the first `post`, by its ticket (and kind): confirmed, replayed once by the form.
  const found = await findOne(page, { ticket: "9002", kind: "status" }, "by ticket");
  check(found[1].startsWith("status") && found[3] === "9002", `found by ticket: ${JSON.stringify(found)}`);
  await page.locator("#events-rows tr .open-event").first().click();
  await until(page, "the status event's replay by the form on its timeline", () => {
    const s = (document.querySelector("#d-timeline").dataset.steps || "").split(" ");
    return document.querySelector("#d-ticket").textContent === "9002" && s.includes("confirmed") && s.includes("replayed");
  });
  console.log(`found by ticket: ${found.join(" | ")}; timeline ${(await steps(page)).join(" → ")}`);

  // The time range: the last 15 minutes hold it, a range in 2020 holds nothing.
  check((await findOne(page, { ticket: "9002", kind: "status" }, "by ticket"))[3] === "9002", "the ticket search again");
  await page.selectOption("#f-range", "15m");
  await page.click("#events-search");
  await until(page, "the last 15 minutes hold it", () => document.querySelector("#events-rows").dataset.query.includes("since=15m")
    && document.querySelectorAll("#events-rows tr").length === 1);
  await page.selectOption("#f-range", "between");
  await page.fill("#f-from", "2020-01-01T00:00:00");
  await page.fill("#f-to", "2020-12-31T23:59:59");
  await page.click("#events-search");
  await until(page, "a range in 2020 holds nothing", () => document.querySelector("#events-rows").dataset.query.includes("until=2021-01-01T02:59:59.000Z")
    && document.querySelectorAll("#events-rows tr").length === 0 && !document.querySelector("#events-empty").hidden);
  console.log("time ranges: the last 15 minutes, and a range in the reader's time zone");
  return { eventId, ticket };
}

/**
 * More events than a page holds: listed live as they come (all of them, past one page), then
 * a new search shows the newest page of 50 and the older ones on demand, none twice.
 */
async function paging(page, eventId) {
  await page.click("#events-clear");
  await until(page, "the unfiltered list", () => document.querySelector("#events-rows").dataset.query === "");
  const before = await page.locator("#events-rows tr").count();
  await ask("post 55");
  // Live: all of them, or (more than a page at once) the newest page again, with older ones behind it.
  await until(page, "the new events listed live", () => document.querySelectorAll("#events-rows tr").length >= 50);
  await page.click("#events-search");
  await until(page, "a new search: the newest 50 and the button for older ones", () => document.querySelectorAll("#events-rows tr").length >= 50
    && !document.querySelector("#events-more").hidden);
  await page.click("#events-more");
  await until(page, "the older events under the first page", (want) => document.querySelectorAll("#events-rows tr").length === want
    && document.querySelector("#events-more").hidden, before + 55);
  const order = await page.evaluate(() => [...document.querySelectorAll("#events-rows tr")].map((r) => [r.dataset.event, Number(r.dataset.at)]));
  check(new Set(order.map(([id]) => id)).size === order.length, "an event listed twice");
  check(order.every(([, at], i) => i === 0 || order[i - 1][1] >= at), "the list is not newest first");
  check(order.some(([id]) => id === eventId), "the message is not among the older events");
  console.log(`${before} events, then 55 more listed live; a new search shows a page of 50, then the older ones: ${order.length}, newest first, none twice`);
}

/** The Events view in both languages, screenshots of its list and of a detail in each. */
async function eventsLanguages(eventId) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "pt-BR", timezoneId: TIME_ZONE });
  const br = await context.newPage();
  watch(br, "events pt-BR");
  check((await login(br, TOKEN)) === 303, "login in pt-BR");
  await leave(br, () => br.goto(STATUS_URL + "#events"));
  for (const lang of ["pt-BR", "en"]) {
    await br.locator(`tr[data-event="${eventId}"]`).waitFor(WAIT);
    check(await br.locator("#overview").isHidden(), `${lang}: not on the Events view`);
    await speaks(br, lang, "events list");
    await noPersonalData(br, `${lang} events list`);
    await br.screenshot({ path: join(SHOTS, `events-list-${lang}.png`), fullPage: true });
    await br.locator(`tr[data-event="${eventId}"] .open-event`).click();
    await until(br, `${lang}: the detail's timeline`, () => (document.querySelector("#d-timeline").dataset.steps || "").split(" ").includes("replayed"));
    await speaks(br, lang, "event detail");
    await noPersonalData(br, `${lang} event detail`);
    await br.screenshot({ path: join(SHOTS, `events-detail-${lang}.png`), fullPage: true });
    const state = await br.textContent("#d-state");
    console.log(`${lang}: events list and detail shown (state "${state}", received ${await br.textContent("#d-received")})`);
    // The switch leads back to the Events view, in the other language.
    if (lang === "pt-BR") await switchTo(br, "en");
  }
  await context.close();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // Root in CI: Chromium's sandbox needs user namespaces it may not get there.
  // This machine's network is closed: no background traffic, no QUIC, no GPU.
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--disable-background-networking"],
});
let page;
try {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US", timezoneId: TIME_ZONE });
  page = await desktop.newPage();
  watch(page, "desktop");

  // A wrong token is refused: the form again with a message, no session cookie, the API closed.
  const refused = await login(page, "not-the-admin-token-at-all");
  check(refused === 303, `wrong token answered ${refused}`);
  await page.locator("#login-form").waitFor(WAIT);
  check((await page.textContent("#login-error")).includes("Wrong token"), "no refusal message");
  check((await desktop.cookies()).length === 0, "a cookie was set for a wrong token");
  const closed = await page.request.get(new URL("/status/api/state", STATUS_URL).href);
  check(closed.status() === 401, `state without a session answered ${closed.status()}`);
  console.log("wrong token refused");

  const accepted = await login(page, TOKEN);
  check(accepted === 303, `login answered ${accepted}`);
  const cookie = (await desktop.cookies())[0];
  check(cookie && cookie.httpOnly && cookie.sameSite === "Strict", `session cookie ${JSON.stringify(cookie)}`);
  await card(page).waitFor(WAIT);
  await until(page, "broker shown connected", () => document.querySelector("#broker-state").textContent === "connected");
  check((await page.textContent("#store-damage")) === "none", "a healthy store shows segment damage");
  console.log("logged in; broker connected");

  // Webhooks arrive: the counters and the chart change without a reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  const count = async (which) => Number(await card(page).locator(`.${which} .n`).textContent());
  const before = { accepted: await count("accepted"), duplicate: await count("duplicate"), rejected: await count("rejected") };
  check(before.accepted === 0 && before.rejected === 0, `counters before: ${JSON.stringify(before)}`);
  await ask("post 3"); // 3 new, 1 duplicate, 1 wrong token
  await until(
    page,
    "counters 3/1/1 and all three colours in the chart",
    (name) => {
      const c = document.querySelector(`[data-connection="${name}"]`);
      const svg = c.querySelector("svg");
      const n = (which) => c.querySelector(`.${which} .n`).textContent;
      return n("accepted") === "3" && n("duplicate") === "1" && n("rejected") === "1"
        && svg.getAttribute("data-total") === "5"
        && svg.querySelectorAll("rect.a").length > 0
        && svg.querySelectorAll("rect.d").length > 0
        && svg.querySelectorAll("rect.r").length > 0;
    },
    CONNECTION,
  );
  check((await card(page).locator(".rejections").textContent()).includes("unauthorized 1"), "rejection reason not shown");
  check(await page.evaluate(() => window.__sameDocument === true), "the page reloaded");
  const last = await card(page).locator(".last").textContent();
  check(/Last event \d+ s ago/.test(last), `last event line: ${last}`);
  check((await card(page).locator(".formats").textContent()).includes("saas"), "sender format not shown");
  await noPersonalData(page, "main view");
  await page.screenshot({ path: join(SHOTS, "status-desktop.png"), fullPage: true });
  console.log("counters and chart followed 3 new, 1 duplicate and 1 refused webhook");

  // A dead letter: listed without its body; one click opens it, one more (confirmed) replays it.
  const [seq, eventId] = await ask("deadletter");
  const row = page.locator(`tr[data-seq="${seq}"]`);
  await row.waitFor(WAIT);
  check((await page.textContent("#dead-count")) === "1", "dead letter count");
  await noPersonalData(page, "dead letter table");
  await languages(seq);
  await row.locator(".show-body").click();
  await page.locator("#dead-body").waitFor(WAIT);
  const body = await page.textContent("#dead-body");
  check(body.includes("[redacted]"), "the opened body is not the redacted one");
  check(PERSONAL.length === 0 || body.includes(PERSONAL[0]), "the opened body lacks its content");
  await page.screenshot({ path: join(SHOTS, "status-dead-letter.png"), fullPage: true });
  await page.click("#dead-body-close");
  await row.locator(".replay").click();
  await row.locator(".confirm-replay").click();
  await until(page, "dead letter replay confirmed", () => document.querySelector("#dead-notice").textContent.includes("back in the outbox"));
  await until(page, "dead letter count back to 0", () => document.querySelector("#dead-count").textContent === "0");
  await row.waitFor({ state: "detached", ...WAIT });
  await ask(`published ${eventId}`);
  console.log("dead letter opened, replayed from the page and published");

  // Delivered events replayed by window, kind and connection, after a confirmation.
  await page.selectOption("#replay-window", "15");
  await page.selectOption("#replay-kind", "status");
  await page.selectOption("#replay-connection", CONNECTION);
  await page.click("#replay-submit");
  await page.locator("#replay-yes").waitFor(WAIT);
  await page.click("#replay-yes");
  await until(page, "3 delivered events replayed", () => document.querySelector("#replay-notice").textContent.startsWith("3 delivered events"));
  await ask("queued status 6");
  console.log("3 delivered status events replayed from the form and published again");

  const found = await eventsView(page);
  await page.screenshot({ path: join(SHOTS, "events-desktop.png"), fullPage: true });
  await eventsLanguages(found.eventId);
  await paging(page, found.eventId);
  await page.click("#tab-overview");
  await card(page).waitFor(WAIT);

  // The docs' picture: the top of the main view at a modest size.
  const small = await browser.newContext({ viewport: { width: 960, height: 720 } });
  const docs = await small.newPage();
  watch(docs, "docs");
  await login(docs, TOKEN);
  await card(docs).waitFor(WAIT);
  await until(docs, "docs view updated", () => document.querySelector("#updated").textContent.startsWith("updated"));
  await docs.screenshot({ path: join(SHOTS, "status-page.png") });
  await small.close();

  // On a phone: one column, nothing wider than the screen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const mobile = await phone.newPage();
  watch(mobile, "phone");
  await login(mobile, TOKEN);
  await card(mobile).waitFor(WAIT);
  await until(mobile, "phone view updated", () => document.querySelector("#updated").textContent.startsWith("updated"));
  const overflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the phone view is ${overflow}px wider than the screen`);
  await mobile.screenshot({ path: join(SHOTS, "status-phone.png"), fullPage: true });
  // The Events view with an event open: the list scrolls inside its card, the page does not.
  await mobile.click("#tab-events");
  await mobile.locator("#events-rows tr .open-event").first().click();
  await mobile.locator("#event-detail").waitFor(WAIT);
  const eventsOverflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(eventsOverflow <= 0, `the phone's Events view is ${eventsOverflow}px wider than the screen`);
  await mobile.screenshot({ path: join(SHOTS, "events-phone.png"), fullPage: true });
  await phone.close();
  console.log("phone layout fits, the Events view's too");

  // The broker goes away (the test cuts its proxy): the page says so, and recovers.
  await ask("cut");
  await until(page, "broker shown disconnected", () => document.querySelector("#broker-state").textContent === "disconnected");
  check((await page.textContent("#broker-badge")) === "broker disconnected", "badge still says connected");
  // Webhooks are still taken meanwhile: they wait in the outbox, and the page shows it.
  const [waitingTicket] = await ask("post 1");
  await until(page, "the waiting event shown in the outbox and its chart", () => document.querySelector("#outbox-events").textContent.startsWith("1 of")
    && document.querySelector("#outbox-oldest").textContent !== "none waiting"
    && document.querySelectorAll("#outbox-chart rect.depth-bar").length > 0);
  await page.screenshot({ path: join(SHOTS, "status-broker-down.png"), fullPage: true });
  // The waiting event in the Events view: pending, its timeline stopped at "stored".
  await page.click("#tab-events");
  await findOne(page, { ticket: waitingTicket }, "the waiting event by its ticket");
  const waiting = page.locator("#events-rows tr").first();
  check((await waiting.getAttribute("data-state")) === "pending", `the waiting event is ${await waiting.getAttribute("data-state")}`);
  await waiting.locator(".open-event").click();
  await until(page, "the waiting event's detail", (ticket) => !document.querySelector("#event-detail").hidden
    && document.querySelector("#d-ticket").textContent === ticket && (document.querySelector("#d-timeline").dataset.steps || "") !== "", waitingTicket);
  const stopped = await steps(page);
  check(!stopped.includes("confirmed"), `a waiting event's timeline: ${stopped.join(" → ")}`);
  await ask("restore");
  await until(page, "broker reconnected and outbox drained", () => document.querySelector("#broker-state").textContent === "connected"
    && document.querySelector("#outbox-events").textContent.startsWith("0 of"));
  check(Number(await page.textContent("#broker-reconnects")) >= 1, "reconnects not counted");
  // And, without a reload, its row and its timeline go to "confirmed".
  await until(page, "the waiting event confirmed, live", () => document.querySelector("#events-rows tr").dataset.state === "confirmed"
    && (document.querySelector("#d-timeline").dataset.steps || "").split(" ").includes("confirmed"));
  console.log(`broker loss and the waiting event shown, then the reconnect and the drained outbox; the event went ${stopped.join(" → ")} to ${(await steps(page)).join(" → ")}`);
  await page.click("#tab-overview");

  // Logging out ends the session server-side.
  await page.click("#logout");
  await page.locator("#login-form").waitFor(WAIT);
  const after = await page.request.get(new URL("/status/api/state", STATUS_URL).href);
  check(after.status() === 401, `state after logout answered ${after.status()}`);

  check(errors.length === 0, `browser errors:\n${errors.join("\n")}`);
  console.log("no console errors");
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED: ${e.stack || e}`);
  if (errors.length) console.log(`browser errors:\n${errors.join("\n")}`);
  if (page) await page.screenshot({ path: join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
