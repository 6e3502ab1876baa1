// acr-auditor dashboard: reads the API with fetch and builds the DOM with createElement and
// textContent only (API strings are never parsed as HTML: registry names can be hostile).
// Served inlined into index.html by auditor/api/dashboard.py; see that module and the README.

const KEY_STORAGE = "acr-auditor:function-key";
// The API lives beside the page: /api/ui -> /api (whatever the Functions route prefix is).
const API_BASE = location.pathname.replace(/\/ui\/?$/, "");
// As the API's totals. Exempt registries (an exemption in force, docs/exemptions.md) are
// counted apart: neither compliant nor judged, as compliancePercent leaves them out. Pending
// ones (remediated by the auditor, their first events awaited) count as compliant in it.
const STATUSES = ["compliant", "noncompliant", "unknown", "removed", "exempt", "pending"];
// The trend's segments, bottom up, and the status colours of the charts (not text: the
// badges' text colours are in style.css).
const TREND = ["compliant", "pending", "noncompliant", "unknown", "exempt"];
const COLOURS = {
  compliant: "#1a7f43", noncompliant: "#c62828", unknown: "#6b7280", removed: "#b7791f",
  exempt: "#6d28d9", pending: "#0e7490",
};
const OLD_DATA_SECONDS = 26 * 3600; // the timer runs hourly by default: a day is old
const PERIOD_DAYS = 7;

const main = document.getElementById("main");
const live = document.getElementById("live");
const banner = document.getElementById("banner");
let generation = 0; // the view being built; a slower, older one must not replace it
let summaryPromise = null;
let capabilitiesPromise = null;

// ---------------------------------------------------------------------------------------
// The function key: read once from ?code=, kept in sessionStorage, never left in the URL.

function takeKeyFromUrl() {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (code === null) return;
  if (code) sessionStorage.setItem(KEY_STORAGE, code);
  params.delete("code");
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
}

function functionKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, params = {}) {
  const url = new URL(API_BASE + path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = functionKey();
  if (key) headers["x-functions-key"] = key;
  const response = await fetch(url, { headers, cache: "no-store" });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") detail = body.detail;
    } catch {
      // not a problem document: keep the status line
    }
    if (response.status === 401 || response.status === 403) showKeyForm(true);
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

// Optional routes (compliance over time) are looked up in the OpenAPI document rather than
// probed, so an API without them costs no failed request.
function capabilities() {
  capabilitiesPromise ??= api("/openapi.json")
    .then((doc) => new Set(Object.keys(doc.paths || {})))
    .catch(() => new Set());
  return capabilitiesPromise;
}

async function optional(route, path, params) {
  const paths = await capabilities();
  if (!paths.has(API_BASE + route)) return null;
  try {
    return await api(path, params);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function summary() {
  summaryPromise ??= api("/compliance");
  return summaryPromise;
}

// ---------------------------------------------------------------------------------------
// DOM helpers: text only.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class" && !(node instanceof SVGElement)) node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function badge(status) {
  const known = [...STATUSES, "running", "succeeded", "partial", "failed", "abandoned"];
  return el("span", { class: `badge ${known.includes(status) ? status : "unknown"}` },
    status ?? "unknown");
}

function table(caption, headers, rows, { numeric = [], captionHidden = false } = {}) {
  return el("div", { class: "table-wrap" },
    el("table", {},
      el("caption", { class: captionHidden ? "visually-hidden" : null }, caption),
      el("thead", {}, el("tr", {}, headers.map((h, i) =>
        el("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell, i) =>
        i === 0
          ? el("th", { scope: "row", class: numeric.includes(i) ? "num" : null }, cell)
          : el("td", { class: numeric.includes(i) ? "num" : null }, cell)))))));
}

function registryLink(name) {
  return el("a", { href: `#/registry/${encodeURIComponent(name)}` }, name);
}

function registriesLink(filters, text) {
  return el("a", { href: `#/registries?${new URLSearchParams(filters)}` }, text);
}

function when(iso, { seconds = false } = {}) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return `${date.toISOString().slice(0, seconds ? 19 : 16).replace("T", " ")} UTC`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function secondsBetween(from, to) {
  if (!from || !to) return null;
  return (new Date(to).getTime() - new Date(from).getTime()) / 1000;
}

function announce(text) {
  live.textContent = text;
}

function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 401 || error.status === 403) {
      return "The API needs a function key: enter it above (Function key).";
    }
    return `The API answered ${error.status}: ${error.message}`;
  }
  return `The API could not be reached: ${error.message}`;
}

// Replaces the main area, unless a newer view has started meanwhile.
function render(view, title, ...children) {
  if (view !== generation) return false;
  main.replaceChildren(...children.filter(Boolean));
  document.title = `${title} · acr-auditor`;
  return true;
}

// ---------------------------------------------------------------------------------------
// Header: data age and the warning banner.

function showHeader(doc) {
  const age = document.getElementById("data-age");
  const run = doc.lastRun;
  if (!run) {
    age.textContent = "No audit has finished yet.";
    showBanner("No audit run has finished yet: there is nothing to show.");
    return;
  }
  age.replaceChildren(`Data from ${when(run.finishedAt)} (${duration(doc.dataAgeSeconds)} ago)`);
  const problems = [];
  if (run.status === "failed") problems.push("The last audit run failed.");
  else if (run.status === "partial") {
    problems.push(`The last audit run was partial (${run.errorCount} error${run.errorCount === 1 ? "" : "s"}): some results may be missing or old.`);
  }
  if (doc.dataAgeSeconds !== null && doc.dataAgeSeconds > OLD_DATA_SECONDS) {
    problems.push(`The data is ${duration(doc.dataAgeSeconds)} old: no audit has finished since.`);
  }
  showBanner(problems.join(" "));
}

function showBanner(text) {
  banner.hidden = !text;
  banner.replaceChildren();
  if (text) banner.append(text, " ", el("a", { href: "#/runs" }, "See the runs"));
}

// ---------------------------------------------------------------------------------------
// Overview: totals, by subscription, by reason, the trend, compliance over time.

async function showOverview(view) {
  const [doc, runs] = await Promise.all([summary(), api("/runs", { limit: 30 })]);
  const totals = doc.totals;
  const cards = el("ul", { class: "cards", "aria-label": "Registries by status" },
    el("li", { class: "card", "data-total": "total" },
      el("span", { class: "label" }, "Registries"),
      el("span", { class: "value" }, totals.total)),
    STATUSES.map((status) => el("li", { class: "card", "data-total": status },
      el("a", { href: `#/registries?status=${status}` },
        el("span", { class: "label" }, status),
        el("span", { class: "value" }, totals[status] ?? 0)))),
    el("li", { class: "card", "data-total": "percent" },
      el("span", { class: "label" }, "Compliant of judged"),
      el("span", { class: "value" },
        doc.compliancePercent === null ? "—" : `${doc.compliancePercent}%`)));

  const bySubscription = table("By subscription",
    ["Subscription", "Total", ...STATUSES.map((s) => s[0].toUpperCase() + s.slice(1)), "Compliant %"],
    doc.bySubscription.map((s) => [
      registriesLink({ subscription: s.subscriptionId }, s.subscriptionId),
      s.total, ...STATUSES.map((status) => s[status] ?? 0),
      s.compliancePercent === null ? "—" : `${s.compliancePercent}%`,
    ]), { numeric: [1, 2, 3, 4, 5, 6, 7], captionHidden: true });
  bySubscription.id = "by-subscription";

  const byReason = doc.byReason.length
    ? table("Registries per reason", ["Reason", "Registries"],
      doc.byReason.map((r) => [registriesLink({ reason: r.code }, r.code), r.count]),
      { numeric: [1], captionHidden: true })
    : el("p", { class: "note" }, "No registry has a finding.");
  byReason.id = "by-reason";

  const omitted = doc.omitted && (doc.omitted.subscriptions || doc.omitted.reasons)
    ? el("p", { class: "note" }, `Left out to fit the store: ${doc.omitted.subscriptions} subscriptions, ${doc.omitted.reasons} reasons (the totals cover all).`)
    : null;

  const logs = doc.logs
    ? el("p", { id: "log-counts" },
      `Logs checked for ${doc.logs.checked} registries: ${doc.logs.silent} silent, ${doc.logs.pending} pending, ${doc.logs.unknown} unreadable, ${doc.logs.interrupted} interrupted, ${doc.logs.loginAlerts} with login alerts.`)
    : null;

  const period = el("section", { "aria-labelledby": "period-title" },
    el("h3", { id: "period-title" }, `Compliance over the last ${PERIOD_DAYS} days`),
    el("p", { class: "note" }, "Loading…"));

  const ok = render(view, "Overview",
    el("h2", {}, "Overview"),
    cards,
    logs,
    el("div", { class: "grid" },
      el("section", { "aria-labelledby": "trend-title" },
        el("h3", { id: "trend-title" }, "Trend over recent runs"),
        trendChart(runs.items)),
      el("section", { "aria-labelledby": "reason-title" },
        el("h3", { id: "reason-title" }, "By reason"), byReason)),
    el("section", { "aria-labelledby": "sub-title" },
      el("h3", { id: "sub-title" }, "By subscription"), bySubscription, omitted),
    period);
  if (ok) {
    announce(`Overview: ${totals.total} registries, ${totals.noncompliant} noncompliant.`);
    fillPeriod(period).catch((error) => period.replaceChildren(
      period.firstChild, el("p", { class: "error" }, errorText(error))));
  }
}

function trendChart(items) {
  const runs = items.filter((r) => r.totals && r.finishedAt).reverse();
  if (!runs.length) return el("p", { class: "note" }, "No finished run yet.");
  const width = 560, height = 200, left = 36, bottom = 22, top = 8;
  const plotHeight = height - bottom - top;
  // A run stored before exemptions (or the pending status) has no such count: none.
  const count = (run, status) => run.totals[status] ?? 0;
  const max = Math.max(1, ...runs.map((r) => TREND.reduce((sum, s) => sum + count(r, s), 0)));
  const slot = (width - left) / Math.max(runs.length, 8);
  const barWidth = Math.max(4, slot * 0.7);
  const bars = runs.map((run, i) => {
    let y = top + plotHeight;
    const x = left + i * slot + (slot - barWidth) / 2;
    const label = `${when(run.finishedAt)}: ${TREND.map((s) => `${count(run, s)} ${s}`).join(", ")} (${run.status})`;
    return svg("g", { "data-run": run.id },
      svg("title", {}, label),
      TREND.map((status) => {
        const h = (count(run, status) / max) * plotHeight;
        y -= h;
        return h > 0 ? svg("rect", { x, y, width: barWidth, height: h, fill: COLOURS[status], "data-status": status }) : null;
      }));
  });
  const first = runs[0], last = runs[runs.length - 1];
  const pct = (t) => {
    // As compliancePercent: pending registries count as compliant.
    const passing = t.compliant + (t.pending ?? 0);
    const judged = passing + t.noncompliant;
    return judged ? `${Math.floor((passing * 1000) / judged) / 10}%` : "—";
  };
  const description = `Registries by status over the last ${runs.length} run${runs.length === 1 ? "" : "s"}: compliant of judged went from ${pct(first.totals)} on ${when(first.finishedAt)} to ${pct(last.totals)} on ${when(last.finishedAt)}.`;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": "trend-desc",
  },
  svg("line", { x1: left, y1: top + plotHeight, x2: width, y2: top + plotHeight, stroke: "#4b5563" }),
  svg("text", { x: left - 6, y: top + 10, "text-anchor": "end", "font-size": 11, fill: "#374151" }, max),
  svg("text", { x: left - 6, y: top + plotHeight, "text-anchor": "end", "font-size": 11, fill: "#374151" }, 0),
  svg("text", { x: left, y: height - 6, "font-size": 11, fill: "#374151" }, when(first.finishedAt)),
  runs.length > 1 ? svg("text", { x: width, y: height - 6, "text-anchor": "end", "font-size": 11, fill: "#374151" }, when(last.finishedAt)) : null,
  bars);
  return el("figure", { class: "chart", id: "trend" },
    chart,
    el("ul", { class: "legend", "aria-hidden": "true" },
      TREND.map((s) => el("li", {}, el("span", { class: `swatch ${s}` }), s))),
    el("figcaption", { id: "trend-desc" }, description));
}

async function fillPeriod(section) {
  const to = new Date();
  const from = new Date(to.getTime() - PERIOD_DAYS * 86400 * 1000);
  const doc = await optional("/compliance/period", "/compliance/period",
    { from: from.toISOString(), to: to.toISOString() });
  const title = section.firstChild;
  if (!doc) {
    section.replaceChildren(title, el("p", { class: "note", id: "period-missing" },
      "Compliance over time is not available from this API yet (it has no /api/compliance/period)."));
    return;
  }
  const registries = [...(doc.registries || [])]
    .filter((r) => r.knownSeconds > 0)
    .sort((a, b) => a.complianceRatio - b.complianceRatio || a.name.localeCompare(b.name));
  const never = doc.neverCompliant || [];
  // Exempt time is not judged: it is in neither the compliant nor the known time.
  const exempt = (doc.registries || []).filter((r) => r.exemptSeconds > 0).length;
  section.replaceChildren(title,
    el("p", { id: "period-facts" },
      `Mean time to fix: ${duration(doc.meanTimeToFixSeconds)}. Never compliant in the period: ${never.length}. Exempt for some of it: ${exempt}.`),
    registries.length
      ? table("Least compliant registries in the period",
        ["Registry", "Compliant of known time", "Known time"],
        registries.slice(0, 10).map((r) => [registryLink(r.name),
          `${Math.round((r.complianceRatio ?? 0) * 1000) / 10}%`, duration(r.knownSeconds)]),
        { numeric: [1, 2] })
      : el("p", { class: "note" }, "No registry was judged in the period."));
}

// ---------------------------------------------------------------------------------------
// Registries: filters, sorting within the page, paging with the API's continuation tokens.

const FILTERS = ["status", "subscription", "reason", "namePrefix", "pageSize"];
const COLUMNS = [
  { key: "name", label: "Name" },
  { key: "status", label: "Status" },
  { key: "subscriptionId", label: "Subscription" },
  { key: "resourceGroup", label: "Resource group" },
  { key: "reasons", label: "Reasons" },
  { key: "checkedAt", label: "Checked" },
  { key: "lastEvent", label: "Last log event" },
];

async function showRegistries(view, params) {
  const doc = await summary();
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || ""]));
  if (!filters.pageSize) filters.pageSize = "50";
  const state = { filters, tokens: [null], page: 0, items: [], sort: null, descending: false };

  const select = (name, label, options) => el("label", {}, label,
    el("select", { name, id: `filter-${name}`, onchange: () => changed() },
      options.map(([value, text]) => el("option", { value, selected: value === filters[name] }, text))));
  const reasonCodes = doc.byReason.map((r) => r.code);
  if (filters.reason && !reasonCodes.includes(filters.reason)) reasonCodes.push(filters.reason);
  const subscriptions = doc.bySubscription.map((s) => s.subscriptionId);
  if (filters.subscription && !subscriptions.includes(filters.subscription)) subscriptions.push(filters.subscription);
  let typing = null;
  const nameInput = el("input", {
    id: "filter-namePrefix", name: "namePrefix", type: "search", value: filters.namePrefix,
    pattern: "[A-Za-z0-9]*", maxlength: 50, autocomplete: "off", "aria-describedby": "name-help",
    oninput: () => { clearTimeout(typing); typing = setTimeout(changed, 300); },
  });
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter registries",
    onsubmit: (event) => { event.preventDefault(); changed(); } },
  select("status", "Status", [["", "any"], ...STATUSES.map((s) => [s, s])]),
  select("subscription", "Subscription", [["", "any"], ...subscriptions.map((s) => [s, s])]),
  select("reason", "Reason", [["", "any"], ...reasonCodes.map((c) => [c, c])]),
  el("label", {}, "Name starts with", nameInput,
    el("span", { id: "name-help", class: "visually-hidden" }, "letters and digits")),
  select("pageSize", "Per page", ["25", "50", "100", "250", "500"].map((n) => [n, n])));

  const count = el("p", { id: "registry-count", "aria-live": "polite" }, "Loading…");
  const holder = el("div", { id: "registry-table" });
  const previous = el("button", { type: "button", onclick: () => turn(-1) }, "Previous page");
  const next = el("button", { type: "button", onclick: () => turn(1) }, "Next page");
  const pager = el("div", { class: "pager" }, previous, next);
  if (!render(view, "Registries", el("h2", {}, "Registries"), form, count, holder, pager)) return;

  function changed() {
    for (const name of FILTERS) filters[name] = form.elements[name].value.trim();
    if (filters.namePrefix && !/^[A-Za-z0-9]{1,50}$/.test(filters.namePrefix)) {
      count.textContent = "A name holds only letters and digits.";
      return;
    }
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/registries${query.toString() ? `?${query}` : ""}`);
    state.tokens = [null];
    state.page = 0;
    load();
  }

  function turn(step) {
    state.page += step;
    load();
  }

  async function load() {
    const asked = JSON.stringify([filters, state.page]);
    count.textContent = "Loading…";
    previous.disabled = next.disabled = true;
    let page;
    try {
      page = await api("/registries", { ...filters, continuation: state.tokens[state.page] });
    } catch (error) {
      count.textContent = errorText(error);
      return;
    }
    if (asked !== JSON.stringify([filters, state.page]) || view !== generation) return;
    state.items = page.items;
    state.tokens[state.page + 1] = page.continuation;
    previous.disabled = state.page === 0;
    next.disabled = !page.continuation;
    const first = state.page * Number(filters.pageSize) + 1;
    count.textContent = page.items.length
      ? `Registries ${first} to ${first + page.items.length - 1}${page.continuation ? ", more on the next page" : ""}.`
      : "No registry matches these filters.";
    draw();
  }

  function draw() {
    const rows = [...state.items];
    if (state.sort) {
      const key = state.sort;
      const value = (r) => key === "reasons" ? r.reasons.map((x) => x.code).join(" ") : (r[key] ?? "");
      rows.sort((a, b) => String(value(a)).localeCompare(String(value(b))) * (state.descending ? -1 : 1));
    }
    const header = COLUMNS.map((column) => {
      const sorted = state.sort === column.key;
      return el("th", { scope: "col", "aria-sort": sorted ? (state.descending ? "descending" : "ascending") : null },
        el("button", { type: "button", onclick: () => sortBy(column.key) }, column.label,
          sorted ? (state.descending ? " ▼" : " ▲") : ""));
    });
    holder.replaceChildren(el("div", { class: "table-wrap" }, el("table", { id: "registries" },
      el("caption", {}, state.sort
        ? `Sorted by ${COLUMNS.find((c) => c.key === state.sort).label.toLowerCase()} within this page; pages follow name order.`
        : "In name order. Select a column heading to sort this page."),
      el("thead", {}, el("tr", {}, header)),
      el("tbody", {}, rows.map((r) => el("tr", { "data-name": r.name },
        el("th", { scope: "row" }, registryLink(r.name)),
        el("td", {}, badge(r.status)),
        el("td", {}, el("code", {}, r.subscriptionId)),
        el("td", {}, r.resourceGroup),
        el("td", {}, r.reasons.length ? r.reasons.map((x) => el("div", {}, x.code)) : "—"),
        el("td", {}, when(r.checkedAt)),
        el("td", {}, when(r.lastEvent))))))));
  }

  function sortBy(key) {
    state.descending = state.sort === key ? !state.descending : false;
    state.sort = key;
    draw();
    holder.querySelector(`th[aria-sort] button`)?.focus();
    announce(`Sorted by ${key}, ${state.descending ? "descending" : "ascending"}.`);
  }

  await load();
}

// ---------------------------------------------------------------------------------------
// One registry: reasons with explanation and fix, status timeline, log evidence, alerts.

async function showRegistry(view, name) {
  const [doc, logins, activity] = await Promise.all([
    api(`/registries/${encodeURIComponent(name)}`, { historyLimit: 50 }),
    api(`/registries/${encodeURIComponent(name)}/logins`, { since: "7d", limit: 1 }),
    api(`/registries/${encodeURIComponent(name)}/activity`, { since: "7d", limit: 1 }),
  ]);
  const alerts = el("section", { "aria-labelledby": "alerts-title" },
    el("h3", { id: "alerts-title" }, "Open alerts"), el("p", { class: "note" }, "Loading…"));
  const intervals = el("div", { id: "intervals" });
  const ok = render(view, doc.name,
    el("p", {}, el("a", { href: "#/registries" }, "← All registries")),
    el("h2", {}, doc.name, " ", badge(doc.status)),
    el("dl", { class: "facts" },
      el("dt", {}, "Subscription"), el("dd", {}, doc.subscriptionId),
      el("dt", {}, "Resource group"), el("dd", {}, doc.resourceGroup),
      el("dt", {}, "Location"), el("dd", {}, doc.location),
      el("dt", {}, "Status since"), el("dd", {}, when(doc.statusSince)),
      el("dt", {}, "Last checked"), el("dd", {}, when(doc.checkedAt)),
      el("dt", {}, "Last log event"), el("dd", { id: "last-event" }, doc.lastEvent ? when(doc.lastEvent) : "none seen")),
    el("section", { "aria-labelledby": "findings-title" },
      el("h3", { id: "findings-title" }, "Reasons"),
      doc.findings.length ? doc.findings.map((f) => finding(f, doc)) : el("p", {}, "No findings: nothing to fix.")),
    el("div", { class: "grid" },
      el("section", { "aria-labelledby": "timeline-title" },
        el("h3", { id: "timeline-title" }, "Status history"), intervals, timeline(doc.history)),
      alerts),
    evidence(logins.items[0], activity.items[0]));
  if (!ok) return;
  announce(`Registry ${doc.name}: ${doc.status}, ${doc.findings.length} reasons.`);
  fillIntervals(intervals, doc.name).catch((error) =>
    intervals.replaceChildren(el("p", { class: "error" }, errorText(error))));
  fillAlerts(alerts, doc.name).catch((error) => alerts.replaceChildren(
    alerts.firstChild, el("p", { class: "error" }, errorText(error))));
}

function finding(f, registry) {
  const fix = f.remediation ? f.remediation.replaceAll("<registry-id>", registry.id) : null;
  const docs = f.docsUrl && /^https:\/\//.test(f.docsUrl) ? f.docsUrl : null;
  return el("article", { class: "finding", "data-code": f.code },
    el("h4", {}, f.title, " ", el("code", {}, f.code),
      f.severity ? el("span", { class: "note" }, ` · severity ${f.severity}`) : null),
    el("p", {}, f.detail),
    f.explanation ? el("p", { class: "explanation" }, f.explanation) : null,
    fix ? [el("p", {}, el("strong", {}, "Fix:")), el("pre", { class: "fix" }, el("code", {}, fix))] : null,
    docs ? el("p", {}, el("a", { href: docs, rel: "noreferrer" }, "Microsoft documentation")) : null,
    f.controls && f.controls.length
      ? el("p", { class: "note" }, "Controls: ", f.controls.map((c) => `${c.document} ${c.control}`).join(", "))
      : null);
}

function timeline(history) {
  if (!history || !history.length) return el("p", { class: "note" }, "No changes recorded.");
  return el("ol", { class: "timeline", id: "history" }, history.map((h) => el("li", {},
    el("time", { datetime: h.observedAt }, when(h.observedAt)),
    h.previousStatus ? [badge(h.previousStatus), " → "] : null, badge(h.status),
    h.reasons.length ? el("div", { class: "note" }, h.reasons.map((r) => r.code).join(", ")) : null)));
}

async function fillIntervals(holder, name) {
  const to = new Date();
  const from = new Date(to.getTime() - PERIOD_DAYS * 86400 * 1000);
  const doc = await optional("/registries/{name}/intervals",
    `/registries/${encodeURIComponent(name)}/intervals`, { from: from.toISOString(), to: to.toISOString() });
  if (!doc) {
    holder.replaceChildren(el("p", { class: "note", id: "intervals-missing" },
      "A timeline of intervals is not available from this API yet; the changes below are its history."));
    return;
  }
  const items = doc.intervals || (doc.registries && doc.registries[0] && doc.registries[0].intervals) || [];
  const total = items.reduce((sum, i) => sum + (i.durationSeconds || 0), 0);
  if (!total) {
    holder.replaceChildren(el("p", { class: "note" }, `No known status in the last ${PERIOD_DAYS} days.`));
    return;
  }
  let x = 0;
  const width = 560;
  const bar = svg("svg", { viewBox: `0 0 ${width} 24`, width, height: 24, role: "img",
    "aria-label": `Status over the last ${PERIOD_DAYS} days: ${items.map((i) => `${i.status} for ${duration(i.durationSeconds)}`).join(", ")}` },
  items.map((i) => {
    const w = (i.durationSeconds / total) * width;
    const rect = svg("rect", { x, y: 0, width: Math.max(w, 0.5), height: 24, fill: COLOURS[i.status] || COLOURS.unknown },
      svg("title", {}, `${i.status} from ${when(i.from)} to ${when(i.to)} (${duration(i.durationSeconds)})`));
    x += w;
    return rect;
  }));
  holder.replaceChildren(el("figure", { class: "chart" }, bar,
    el("figcaption", {}, `Status over the last ${PERIOD_DAYS} days, oldest on the left.`)));
}

async function fillAlerts(section, name) {
  const title = section.firstChild;
  let doc;
  try {
    doc = await api("/alerts", { registry: name, limit: 20 });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      section.replaceChildren(title, el("p", { class: "note" }, "Alerting is not configured."));
      return;
    }
    throw error;
  }
  section.replaceChildren(title, doc.open.length
    ? el("ul", { id: "open-alerts" }, doc.open.map((a) => el("li", {},
      el("strong", {}, a.topic), ` (${a.status ?? "?"}) opened ${when(a.openedAt)}, ${a.notices} notice${a.notices === 1 ? "" : "s"}`,
      a.reasonCodes.length ? el("div", { class: "note" }, a.reasonCodes.join(", ")) : null)))
    : el("p", {}, "No open alert."));
}

function evidence(logins, activity) {
  const section = el("section", { "aria-labelledby": "evidence-title", id: "evidence" },
    el("h3", { id: "evidence-title" }, "Log evidence (last run in the past 7 days)"));
  if (!logins && !activity) {
    section.append(el("p", { class: "note" }, "No log evidence stored for this registry in the past 7 days."));
    return section;
  }
  if (logins) {
    append(section, [
      el("p", {}, `Logins in ${when(logins.window.start)} to ${when(logins.window.end)}: ${logins.attempts} attempts, ${logins.failures} failed.`),
      observations(logins.observations),
      logins.bursts.length ? table("Failed-login bursts", ["Source", "Failures in window", "From", "To", "Total failures"],
        logins.bursts.map((b) => [`${b.kind} ${b.key}`, b.failures, when(b.start), when(b.end), b.totalFailures]),
        { numeric: [1, 4] }) : el("p", {}, "No failed-login burst."),
      logins.firstSeen.length ? table("New identities and IPs", ["Source", "First seen", "Attempts", "Failures"],
        logins.firstSeen.map((f) => [`${f.kind} ${f.value}`, when(f.firstSeen), f.attempts, f.failures]),
        { numeric: [2, 3] }) : el("p", {}, "No new identity or IP."),
      logins.anonymousPulls.length ? table("Anonymous pulls", ["Repository", "Pulls", "Failures", "Caller IPs", "Last seen"],
        logins.anonymousPulls.map((p) => [p.repository, p.count, p.failures, p.callerIps.join(", "), when(p.lastSeen)]),
        { numeric: [1, 2] }) : el("p", {}, "No anonymous pull.")]);
  }
  if (activity) {
    const ops = Object.entries(activity.operations || {});
    append(section, [
      el("p", {}, "Operations: ", ops.length ? ops.map(([k, v]) => `${k} ${v}`).join(", ") : "none"),
      activity.deletions.length ? table("Deletes and untags", ["When", "Operation", "Repository", "Tag or digest", "Identity", "Caller IP"],
        activity.deletions.map((d) => [when(d.at), d.operation, d.repository, d.tag || d.digest, d.identity, d.callerIp]))
        : el("p", {}, "No delete or untag.")]);
  }
  return section;
}

function observations(items) {
  if (!items || !items.length) return null;
  return el("ul", { class: "observations" }, items.map((o) => el("li", {}, el("code", {}, o.code), " ", o.detail)));
}

// ---------------------------------------------------------------------------------------
// Runs: status, duration, errors; older pages with the continuation token.

// "timer (full)", or "timer (changes, 25 read)": a change-driven run read only what changed.
function runMode(run) {
  const mode = run.mode ?? "full";
  const read = mode === "changes" && run.settingsReads != null ? `, ${run.settingsReads} read` : "";
  return `${run.trigger ?? "—"} (${mode}${read})`;
}

async function showRuns(view) {
  const body = el("tbody", {});
  const more = el("button", { type: "button" }, "Older runs");
  let token = null;
  const runsTable = el("div", { class: "table-wrap" }, el("table", { id: "runs" },
    el("caption", {}, "Audit runs, newest first"),
    el("thead", {}, el("tr", {}, ["Started", "Status", "Trigger (mode)", "Duration", "Compliant", "Noncompliant", "Unknown", "Exempt", "Pending", "Errors"]
      .map((h, i) => el("th", { scope: "col", class: i >= 4 && i < 9 ? "num" : null }, h)))),
    body));
  async function load() {
    more.disabled = true;
    const page = await api("/runs", { limit: 20, continuation: token });
    for (const run of page.items) {
      const t = run.totals || {};
      body.append(el("tr", { "data-run": run.id },
        el("th", { scope: "row" }, when(run.startedAt, { seconds: true })),
        el("td", {}, badge(run.status)),
        el("td", {}, runMode(run)),
        el("td", {}, duration(secondsBetween(run.startedAt, run.finishedAt))),
        el("td", { class: "num" }, t.compliant ?? "—"),
        el("td", { class: "num" }, t.noncompliant ?? "—"),
        el("td", { class: "num" }, t.unknown ?? "—"),
        el("td", { class: "num" }, run.totals ? t.exempt ?? 0 : "—"),
        el("td", { class: "num" }, run.totals ? t.pending ?? 0 : "—"),
        el("td", { class: "errors" }, run.errorCount
          ? el("details", {}, el("summary", {}, `${run.errorCount} error${run.errorCount === 1 ? "" : "s"}`),
            el("ul", {}, run.errors.map((e) => el("li", {}, e))),
            run.errorsOmitted ? el("p", {}, `${run.errorsOmitted} more not kept`) : null)
          : "0")));
    }
    token = page.continuation;
    more.hidden = !token;
    more.disabled = false;
    announce(`${body.children.length} runs shown.`);
  }
  more.addEventListener("click", () => load().catch((error) => announce(errorText(error))));
  await load();
  render(view, "Runs", el("h2", {}, "Runs"), runsTable, el("div", { class: "pager" }, more));
}

// ---------------------------------------------------------------------------------------
// Routing (#/, #/registries?..., #/registry/<name>, #/runs), the key form, start-up.

async function route() {
  const hash = location.hash || "#/";
  if (!hash.startsWith("#/")) return; // e.g. the skip link
  const [path, query] = hash.slice(1).split("?", 2);
  const view = ++generation;
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === path || (link.dataset.nav === "/registries" && path.startsWith("/registry/"));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.setAttribute("aria-busy", "true");
  try {
    summary().then(showHeader, () => {});
    if (path === "/") await showOverview(view);
    else if (path === "/registries") await showRegistries(view, new URLSearchParams(query || ""));
    else if (path === "/runs") await showRuns(view);
    else if (path.startsWith("/registry/")) await showRegistry(view, decodeURIComponent(path.slice("/registry/".length)));
    else render(view, "Not found", el("h2", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the overview")));
  } catch (error) {
    const text = error instanceof ApiError && error.status === 404 ? error.message : errorText(error);
    render(view, "Error", el("h2", {}, "Something went wrong"), el("p", { class: "error", id: "error" }, text));
    announce(text);
    if (!(error instanceof ApiError)) console.warn(error);
  } finally {
    if (view === generation) main.removeAttribute("aria-busy");
  }
}

function showKeyForm(open) {
  const form = document.getElementById("key-form");
  form.hidden = !open;
  document.getElementById("key-button").setAttribute("aria-expanded", String(open));
  if (open) document.getElementById("key-input").focus();
}

function refresh() {
  summaryPromise = null;
  capabilitiesPromise = null;
  route();
}

function start() {
  takeKeyFromUrl();
  document.getElementById("key-button").addEventListener("click", () =>
    showKeyForm(document.getElementById("key-form").hidden));
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    if (input.value) sessionStorage.setItem(KEY_STORAGE, input.value);
    input.value = "";
    showKeyForm(false);
    refresh();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    announce("The function key is forgotten.");
  });
  document.getElementById("refresh").addEventListener("click", refresh);
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", () => {
    route().then(() => main.focus({ preventScroll: true }));
  });
  route();
}

start();
