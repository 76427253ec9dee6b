/**
 * `GET /ops`: the ops dashboard, one self-contained HTML page (inline CSS and
 * vanilla JS, uPlot inlined for the charts (Assets.ts), nothing fetched from
 * elsewhere). It signs in through `POST /v1/auth/login` (the token lives in
 * sessionStorage), polls `GET /ops/api/overview` every 2 s (and
 * `/ops/api/dlq` when paging or filtering, `/ops/api/history` every 5 s), and
 * calls the `/ops/api/dlq/*` and `/ops/api/deliveries/retry` actions.
 *
 * The page itself is public (it holds no data); everything it shows comes
 * from the admin-only JSON endpoints. Its Content-Security-Policy allows only
 * this page's own script and style (by hash) and requests to this origin.
 * Data is put in the page with textContent only, never as HTML.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { DlqEntry } from "../Dlq/Entry.js"
import { EVENT_NAMES } from "../Domain/Events.js"
import { UPLOT_CSS, UPLOT_JS } from "./Assets.js"

const DLQ_KINDS = DlqEntry.fields.kind.literals

const STYLE = `
:root {
  --bg: #f4f6f9; --card: #ffffff; --ink: #1d2433; --muted: #6b7385; --line: #e3e7ee;
  --brand: #3056d3; --brand-ink: #ffffff; --ok: #1f9d55; --warn: #c27c0e; --bad: #d1343b;
  --ok-bg: #e7f6ee; --warn-bg: #fdf3e1; --bad-bg: #fdeaea; --chip: #eef1f6;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.bar { display: flex; align-items: center; gap: 16px; padding: 12px 24px; background: #182034; color: #fff; }
.brand { font-weight: 600; font-size: 16px; letter-spacing: .2px; }
.brand .logo { color: #7ea2ff; margin-right: 4px; }
.brand .sub { color: #aab3c8; font-weight: 400; margin-left: 6px; }
.status { margin-left: auto; color: #c9d1e3; font-size: 13px; display: flex; align-items: center; gap: 8px; }
.dot { width: 9px; height: 9px; border-radius: 50%; background: #8a93a8; display: inline-block; }
.dot.ok { background: #3ccf7d; } .dot.warn { background: #f0b43c; } .dot.bad { background: #ff5d63; }
.user { display: flex; align-items: center; gap: 10px; color: #dfe5f2; font-size: 13px; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 40px; }
.banner { margin: 0 0 18px; padding: 10px 14px; border-radius: 8px; border: 1px solid; }
.banner.error { background: var(--bad-bg); border-color: #f3b8bb; color: #8c1d22; }
.banner.success { background: var(--ok-bg); border-color: #a9dfc0; color: #14643a; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin-bottom: 18px; box-shadow: 0 1px 2px rgba(20, 30, 60, .04); }
.card h2 { margin: 0; font-size: 15px; font-weight: 600; }
.card-head { display: flex; align-items: center; gap: 10px; margin-bottom: 12px; flex-wrap: wrap; }
.card-head .hint { color: var(--muted); font-size: 12px; }
.card-head .actions { margin-left: auto; display: flex; gap: 8px; }
.tiles { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 18px; margin-bottom: 18px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 18px; }
.tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
.tile .value { font-size: 28px; font-weight: 600; margin-top: 4px; font-variant-numeric: tabular-nums; }
.tile .note { color: var(--muted); font-size: 12px; min-height: 17px; }
.tile.alert .value { color: var(--bad); }
.columns { display: grid; grid-template-columns: minmax(0, 5fr) minmax(0, 9fr); gap: 18px; }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 7px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: 11px; text-transform: uppercase; letter-spacing: .4px; white-space: nowrap; }
tbody tr:last-child td { border-bottom: none; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .rate { display: block; color: var(--muted); font-size: 11px; }
tr.total td { font-weight: 600; border-top: 2px solid var(--line); }
tr.hot td { background: var(--bad-bg); }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.ellipsis { max-width: 280px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.err-text { color: #8c1d22; max-width: 340px; word-break: break-word; }
.chip { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; background: var(--chip); color: var(--ink); }
.chip.failed { background: var(--warn-bg); color: #8a5700; }
.chip.poison { background: var(--bad-bg); color: #9b1c22; }
.empty { color: var(--muted); text-align: center; padding: 18px; }
.panel-error { background: var(--warn-bg); color: #7a4d00; border: 1px solid #f1d49a; border-radius: 8px; padding: 8px 12px; margin-bottom: 10px; }
.muted { color: var(--muted); }
button { font: inherit; font-size: 13px; border-radius: 7px; border: 1px solid var(--line); background: #fff; color: var(--ink); padding: 5px 12px; cursor: pointer; }
button:hover:not(:disabled) { border-color: #c3cad8; background: #f7f8fb; }
button:disabled { opacity: .5; cursor: default; }
button.primary { background: var(--brand); color: var(--brand-ink); border-color: var(--brand); }
button.primary:hover:not(:disabled) { background: #2747b5; }
button.danger { color: var(--bad); border-color: #f0c2c4; }
button.danger:hover:not(:disabled) { background: var(--bad-bg); }
button.ghost { background: transparent; color: #dfe5f2; border-color: #3a4563; }
button.ghost:hover:not(:disabled) { background: #222c45; }
td.actions { white-space: nowrap; text-align: right; }
td.actions button + button { margin-left: 6px; }
.login { max-width: 380px; margin: 60px auto; padding: 26px 28px; }
.login h1 { margin: 0 0 4px; font-size: 20px; }
.login form { display: grid; gap: 12px; margin-top: 16px; }
.login label { display: grid; gap: 4px; font-size: 13px; color: var(--muted); }
.login input { font: inherit; padding: 8px 10px; border: 1px solid #cfd5e1; border-radius: 7px; color: var(--ink); }
.login input:focus { outline: 2px solid #b9c8f5; border-color: var(--brand); }
.error { color: var(--bad); margin: 0; }
[hidden] { display: none !important; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
.chart h3 { margin: 0 0 4px; font-size: 12px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .4px; }
.chart .plot { min-height: 200px; }
.filters { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; margin-bottom: 10px; }
.filters input, .filters select { font: inherit; font-size: 13px; padding: 4px 8px; border: 1px solid #cfd5e1; border-radius: 7px; background: #fff; color: var(--ink); }
.filters input { min-width: 300px; }
.pager { display: flex; gap: 8px; align-items: center; justify-content: flex-end; margin-top: 10px; }
.modal-backdrop { position: fixed; inset: 0; background: rgba(16, 22, 38, .45); display: flex; align-items: flex-start; justify-content: center; padding: 40px 16px; overflow-y: auto; z-index: 10; }
.modal { background: #fff; border-radius: 10px; width: min(980px, 100%); padding: 18px 20px; box-shadow: 0 10px 40px rgba(0, 0, 0, .25); }
.modal .card-head { margin-bottom: 6px; }
.section-head { display: flex; align-items: center; gap: 8px; margin-top: 10px; }
.section-head h3 { margin: 0; font-size: 13px; }
.section-head .hint { color: var(--muted); font-size: 12px; }
.section-head button { margin-left: auto; }
pre.code { background: #f6f8fb; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; overflow: auto; max-height: 340px; font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-word; margin: 6px 0 8px; }
@media (max-width: 900px) { .tiles { grid-template-columns: repeat(2, minmax(0, 1fr)); } .columns, .charts { grid-template-columns: minmax(0, 1fr); } }
`

const BODY = `
<header class="bar">
  <div class="brand"><span class="logo">&#9670;</span>OpsDesk<span class="sub">Operations</span></div>
  <div class="status" id="status"><span class="dot" id="status-dot"></span><span id="status-text">Not signed in</span></div>
  <div class="user" id="user" hidden><span id="user-name"></span><button type="button" class="ghost" id="logout">Sign out</button></div>
</header>
<main>
  <div id="banner" class="banner" role="alert" hidden></div>
  <section class="card login" id="login-view" hidden>
    <h1>Sign in</h1>
    <p class="muted">The operations dashboard is for administrators.</p>
    <form id="login-form" autocomplete="on">
      <label>Username<input id="username" name="username" autocomplete="username" required></label>
      <label>Password<input id="password" name="password" type="password" autocomplete="current-password" required></label>
      <button type="submit" class="primary" id="login-submit">Sign in</button>
      <p class="error" id="login-error" role="alert" hidden></p>
    </form>
  </section>

  <div id="dashboard" hidden>
    <div class="banner error" id="webhooks-flag" data-testid="webhooks-disabled" role="status" hidden></div>
    <div class="tiles">
      <div class="tile" id="tile-queued"><div class="label">Waiting in queues</div><div class="value" data-testid="queued-total">&ndash;</div><div class="note">ready messages, four event queues</div></div>
      <div class="tile" id="tile-dlq"><div class="label">Dead-lettered</div><div class="value" data-testid="dlq-depth">&ndash;</div><div class="note">messages in tickets.dlq</div></div>
      <div class="tile" id="tile-outbox"><div class="label">Outbox backlog</div><div class="value" data-testid="outbox-backlog">&ndash;</div><div class="note" data-testid="outbox-oldest"></div><div class="note" data-testid="outbox-unroutable"></div></div>
      <div class="tile" id="tile-rate"><div class="label">Processed</div><div class="value" data-testid="processed-rate">&ndash;</div><div class="note" data-testid="processed-total"></div></div>
    </div>

    <section class="card" id="charts-card">
      <div class="card-head"><h2>Last hour</h2><span class="hint" id="charts-hint"></span></div>
      <div class="charts">
        <div class="chart"><h3>Throughput (events/s)</h3><div class="plot" id="chart-throughput"></div></div>
        <div class="chart"><h3>Failures (dead-lettered/s)</h3><div class="plot" id="chart-failures"></div></div>
        <div class="chart"><h3>Lag (ms, occurredAt to processing)</h3><div class="plot" id="chart-lag"></div></div>
        <div class="chart"><h3>Queue depths (ready messages)</h3><div class="plot" id="chart-queues"></div></div>
      </div>
    </section>

    <div class="columns">
      <section class="card" id="queues-card">
        <div class="card-head"><h2>Queues</h2><span class="hint" id="broker-node" data-testid="broker-node">RabbitMQ</span></div>
        <div class="panel-error" hidden></div>
        <div class="table-wrap"><table>
          <thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Consumers</th></tr></thead>
          <tbody id="queues-body"></tbody>
        </table></div>
      </section>

      <section class="card" id="worker-card">
        <div class="card-head"><h2>Worker</h2><span class="hint" id="worker-url"></span></div>
        <div class="panel-error" hidden></div>
        <div class="table-wrap"><table>
          <thead><tr><th>Event</th><th class="num">Processed</th><th class="num">Failed</th><th class="num">Retried</th><th class="num">Duplicates</th><th class="num">Dead-lettered</th><th class="num">Avg time</th><th class="num">Avg lag</th></tr></thead>
          <tbody id="worker-body"></tbody>
        </table></div>
      </section>
    </div>

    <section class="card" id="workers-card">
      <div class="card-head"><h2>Workers</h2><span class="hint" id="workers-hint"></span></div>
      <div class="panel-error" hidden></div>
      <div class="table-wrap"><table>
        <thead><tr><th>Worker</th><th>Host</th><th class="num">PID</th><th>RabbitMQ node</th><th class="num">Up</th><th class="num">Last seen</th><th class="num">Processed</th><th class="num">Share</th><th class="num">Retried</th><th class="num">Duplicates</th><th class="num">Dead-lettered</th><th class="num">Avg lag</th></tr></thead>
        <tbody id="workers-body"></tbody>
      </table></div>
    </section>

    <section class="card" id="deliveries-card">
      <div class="card-head">
        <h2>Deliveries</h2><span class="hint" id="deliveries-hint"></span>
        <div class="actions"><button type="button" id="retry-failed">Retry all failed</button></div>
      </div>
      <div class="panel-error" hidden></div>
      <div class="table-wrap"><table>
        <thead><tr><th>Channel</th><th class="num">Pending</th><th class="num">Failed</th><th class="num">Delivered</th><th class="num">Oldest pending</th></tr></thead>
        <tbody id="deliveries-summary"></tbody>
      </table></div>
      <div class="section-head"><h3>Latest failed</h3><span class="hint">the dispatchers gave up on these; Retry gives each a fresh run of retries</span></div>
      <div class="table-wrap"><table>
        <thead><tr><th class="num">ID</th><th>Channel</th><th>Event</th><th>To</th><th class="num">Tries</th><th>Last error</th><th class="num">Failed</th><th></th></tr></thead>
        <tbody id="deliveries-failed"></tbody>
      </table></div>
    </section>

    <section class="card" id="dlq-card">
      <div class="card-head">
        <h2>Dead-letter queue</h2><span class="hint" id="dlq-hint"></span>
        <div class="actions">
          <button type="button" id="replay-all">Replay all</button>
          <button type="button" class="danger" id="purge-all">Purge all</button>
        </div>
      </div>
      <form class="filters" id="dlq-filters">
        <input type="search" id="dlq-search" placeholder="Event id" aria-label="Search by event id" autocomplete="off">
        <select id="dlq-event" aria-label="Event type"><option value="">Every event type</option></select>
        <select id="dlq-kind" aria-label="Kind"><option value="">Every kind</option></select>
        <button type="submit" id="dlq-apply">Search</button>
        <button type="button" id="dlq-clear">Clear</button>
      </form>
      <div class="panel-error" hidden></div>
      <div class="table-wrap"><table>
        <thead><tr><th>Event</th><th>Event ID</th><th>Routing key</th><th class="num">Attempts</th><th>Kind</th><th>Error</th><th class="num">Age</th><th></th></tr></thead>
        <tbody id="dlq-body"></tbody>
      </table></div>
      <div class="pager">
        <button type="button" id="dlq-prev">&larr; Previous</button>
        <span class="muted" id="dlq-page" data-testid="dlq-page">Page 1</span>
        <button type="button" id="dlq-next">Next &rarr;</button>
      </div>
    </section>
  </div>

  <div class="modal-backdrop" id="message-view" role="dialog" aria-modal="true" aria-labelledby="message-title" hidden>
    <div class="modal">
      <div class="card-head"><h2 id="message-title"></h2><div class="actions"><button type="button" id="message-close">Close</button></div></div>
      <p class="muted" id="message-meta"></p>
      <div class="panel-error" id="message-error" hidden></div>
      <div class="section-head"><h3>Headers</h3><span class="hint" id="message-routing"></span><button type="button" id="copy-headers" data-label="Copy headers">Copy headers</button></div>
      <pre class="code" id="message-headers" data-testid="message-headers"></pre>
      <div class="section-head"><h3>Properties</h3></div>
      <pre class="code" id="message-properties"></pre>
      <div class="section-head"><h3>Body</h3><span class="hint" id="message-body-hint"></span><button type="button" id="copy-body" data-label="Copy body">Copy body</button></div>
      <pre class="code" id="message-body" data-testid="message-body"></pre>
    </div>
  </div>
</main>
`

// Plain JavaScript (no template literals: this file holds it in one).
const SCRIPT = `
"use strict";
(function () {
  var TOKEN_KEY = "opsdesk.ops.token";
  var USER_KEY = "opsdesk.ops.user";
  var POLL_MS = 2000;
  var COUNTERS = ["processed", "failed", "retried", "duplicates", "deadLettered"];
  var EVENT_TYPES = ${JSON.stringify(EVENT_NAMES)};
  var KINDS = ${JSON.stringify(DLQ_KINDS)};
  var HISTORY_EVERY_MS = 5000;
  var CHART_HEIGHT = 200;
  var pollTimer = null;
  var previous = null;
  var charts = {};
  var lastHistoryAt = 0;
  // anchors[p]: the id page p follows (the API's "next" of the page before), so a page stays put when entries before it leave the queue.
  var dlqView = { page: 0, limit: 50, eventId: "", event: "", kind: "", anchors: [""] };
  var dlqNext = null;
  var bannerTimer = null;
  var busy = false;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = String(v);
        else if (k === "className") node.className = v;
        else if (k === "onclick") node.addEventListener("click", v);
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function showBanner(kind, message) {
    var b = $("banner");
    b.className = "banner " + kind;
    b.textContent = message;
    b.hidden = false;
    if (bannerTimer) clearTimeout(bannerTimer);
    bannerTimer = kind === "success" ? setTimeout(hideBanner, 6000) : null;
  }
  function hideBanner() { $("banner").hidden = true; }

  function setStatus(kind, text) {
    $("status-dot").className = "dot " + kind;
    $("status-text").textContent = text;
  }

  function formatAge(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "\\u2013";
    var s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    var h = Math.floor(m / 60);
    if (h < 24) return h + "h " + (m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }
  function formatCount(n) { return (n === null || n === undefined) ? "\\u2013" : Number(n).toLocaleString("en-US"); }
  function formatRate(r) {
    if (r === null || r === undefined) return "\\u2013/s";
    return (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)) + "/s";
  }
  function formatMs(ms) {
    if (ms === null || ms === undefined) return "\\u2013";
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms.toFixed(1) + " ms";
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function AuthError(status, message) { this.status = status; this.message = message; }

  // Calls the API; JSON in and out. A 401 or 403 becomes an AuthError, any other failure an Error with the server's message.
  function api(method, path, body) {
    var headers = { "accept": "application/json" };
    var t = token();
    if (t) headers["authorization"] = "Bearer " + t;
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) { headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (res.ok) return data;
        var message = data && typeof data.message === "string" ? data.message : "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
        if (res.status === 401 || res.status === 403) throw new AuthError(res.status, message);
        var failure = new Error(message);
        failure.body = data;
        failure.status = res.status;
        throw failure;
      });
    }, function (e) {
      throw new Error("Cannot reach the API (" + (e && e.message ? e.message : "network error") + ")");
    });
  }

  function showLogin(message) {
    stopPolling();
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    previous = null;
    $("dashboard").hidden = true;
    $("user").hidden = true;
    $("login-view").hidden = false;
    hideBanner();
    var err = $("login-error");
    err.textContent = message || "";
    err.hidden = !message;
    setStatus("", "Not signed in");
    $("username").focus();
  }

  function showDashboard() {
    $("login-view").hidden = true;
    $("dashboard").hidden = false;
    $("user").hidden = false;
    $("user-name").textContent = sessionStorage.getItem(USER_KEY) || "";
    setStatus("", "Loading\\u2026");
    startPolling();
  }

  function handleError(e) {
    if (e instanceof AuthError) {
      showLogin(e.status === 403
        ? "This dashboard is for admins only: " + e.message
        : "Your session has ended (" + e.message + "). Please sign in again.");
      return;
    }
    showBanner("error", e && e.message ? e.message : String(e));
  }

  function panelError(card, panel) {
    var box = card.querySelector(".panel-error");
    if (panel.available) { box.hidden = true; box.textContent = ""; }
    else { box.hidden = false; box.textContent = panel.error || "unavailable"; }
  }

  function renderQueues(q) {
    var card = $("queues-card");
    panelError(card, q);
    var body = $("queues-body");
    clear(body);
    var queued = 0;
    q.items.forEach(function (item) {
      var isDlq = item.queue === "tickets.dlq";
      if (!isDlq) queued += item.messages;
      body.appendChild(el("tr", { className: isDlq && item.messages > 0 ? "hot" : "", "data-queue": item.queue }, [
        el("td", { className: "mono", text: item.queue }),
        el("td", { className: "num", "data-testid": "depth-" + item.queue, text: formatCount(item.messages) }),
        el("td", { className: "num", text: formatCount(item.consumers) })
      ]));
    });
    if (!q.items.length) body.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 3, text: "No data" })]));
    document.querySelector("[data-testid=queued-total]").textContent = q.available ? formatCount(queued) : "\\u2013";
  }

  function renderOutbox(o) {
    var value = document.querySelector("[data-testid=outbox-backlog]");
    var note = document.querySelector("[data-testid=outbox-oldest]");
    value.textContent = o.available ? formatCount(o.backlog) : "\\u2013";
    note.textContent = !o.available ? (o.error || "unavailable")
      : o.oldestUnpublishedSeconds === null ? "nothing waiting to be published"
      : "oldest unpublished: " + formatAge(o.oldestUnpublishedSeconds);
    var unroutable = document.querySelector("[data-testid=outbox-unroutable]");
    unroutable.textContent = o.available && o.unroutable > 0
      ? formatCount(o.unroutable) + " unroutable (no queue bound): waiting for a route" : "";
    $("tile-outbox").className = "tile" + (o.available && ((o.backlog > 0 && o.oldestUnpublishedSeconds > 30) || o.unroutable > 0) ? " alert" : "");
  }

  // Rates per second from the previous scrape; null when there is none or a counter went down (the worker restarted).
  function rates(current) {
    var out = {};
    if (!previous || !current.available || !current.scrapedAt) return out;
    var dt = (Date.parse(current.scrapedAt) - previous.at) / 1000;
    if (!(dt > 0)) return out;
    current.events.concat([{ event: "*total*", processed: current.totals.processed, failed: current.totals.failed, retried: current.totals.retried, duplicates: current.totals.duplicates, deadLettered: current.totals.deadLettered }])
      .forEach(function (e) {
        var before = previous.values[e.event];
        if (!before) return;
        out[e.event] = {};
        COUNTERS.forEach(function (c) {
          var d = e[c] - before[c];
          out[e.event][c] = d >= 0 ? d / dt : null;
        });
      });
    return out;
  }

  function remember(w) {
    if (!w.available || !w.scrapedAt) { previous = null; return; }
    var values = {};
    w.events.forEach(function (e) { values[e.event] = e; });
    values["*total*"] = w.totals;
    previous = { at: Date.parse(w.scrapedAt), values: values };
  }

  function counterCell(event, counter, value, rate) {
    return el("td", { className: "num", "data-testid": "worker-" + counter + "-" + event }, [
      el("span", { className: "count", text: formatCount(value) }),
      el("span", { className: "rate", text: formatRate(rate) })
    ]);
  }

  function renderWorker(w) {
    var card = $("worker-card");
    panelError(card, w);
    $("worker-url").textContent = w.url ? "scraped from " + w.url : "sum of " + w.live + " live worker" + (w.live === 1 ? "" : "s");
    var body = $("worker-body");
    clear(body);
    var r = rates(w);
    if (w.available) {
      w.events.forEach(function (e) {
        var er = r[e.event] || {};
        body.appendChild(el("tr", { "data-event": e.event }, [el("td", { className: "mono", text: e.event })]
          .concat(COUNTERS.map(function (c) { return counterCell(e.event, c, e[c], er[c]); }))
          .concat([el("td", { className: "num", text: formatMs(e.avgProcessingMs) }), el("td", { className: "num", text: formatMs(e.avgLagMs) })])));
      });
      var tr = r["*total*"] || {};
      body.appendChild(el("tr", { className: "total" }, [el("td", { text: "All events" })]
        .concat(COUNTERS.map(function (c) { return counterCell("all", c, w.totals[c], tr[c]); }))
        .concat([el("td", {}), el("td", {})])));
      document.querySelector("[data-testid=processed-rate]").textContent = formatRate(tr.processed);
      document.querySelector("[data-testid=processed-total]").textContent = formatCount(w.totals.processed) + " since the worker started";
    } else {
      body.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 8, text: "worker metrics unavailable" })]));
      document.querySelector("[data-testid=processed-rate]").textContent = "\\u2013";
      document.querySelector("[data-testid=processed-total]").textContent = "worker metrics unavailable";
    }
    remember(w);
  }

  function dlqFiltered() { return dlqView.page > 0 || !!dlqView.eventId || !!dlqView.event || !!dlqView.kind; }

  function dlqQuery() {
    var q = ["limit=" + dlqView.limit];
    var after = dlqView.anchors[dlqView.page];
    if (after) q.push("after=" + encodeURIComponent(after));
    if (dlqView.eventId) q.push("eventId=" + encodeURIComponent(dlqView.eventId));
    if (dlqView.event) q.push("event=" + encodeURIComponent(dlqView.event));
    if (dlqView.kind) q.push("kind=" + encodeURIComponent(dlqView.kind));
    return "/ops/api/dlq?" + q.join("&");
  }

  // d: the overview's DLQ panel (depth, first entries); list: the page asked for when paging or filtering.
  function renderDlq(d, list) {
    var card = $("dlq-card");
    panelError(card, list && list.error ? { available: false, error: list.error } : d);
    var depth = d.depth;
    document.querySelector("[data-testid=dlq-depth]").textContent = depth === null ? "\u2013" : formatCount(depth);
    $("tile-dlq").className = "tile" + (depth > 0 ? " alert" : "");
    var entries = list ? (list.entries || []) : d.entries;
    var hasMore = list ? !!list.hasMore : depth !== null && depth > d.entries.length;
    var first = list ? (list.offset || 0) : 0;
    dlqNext = list ? (list.next || null) : hasMore && entries.length ? entries[entries.length - 1].id : null;
    var filtered = !!(dlqView.eventId || dlqView.event || dlqView.kind);
    $("dlq-hint").textContent = depth === null ? "" : !entries.length ? (depth + " message" + (depth === 1 ? "" : "s"))
      : (filtered ? "matching entries " : "entries ") + (first + 1) + "\u2013" + (first + entries.length) +
        (filtered ? "" : " of " + formatCount(depth));
    $("dlq-page").textContent = "Page " + (dlqView.page + 1);
    $("dlq-prev").disabled = dlqView.page === 0;
    $("dlq-next").disabled = !hasMore;
    $("replay-all").disabled = busy || !depth;
    $("purge-all").disabled = busy || !depth;
    var body = $("dlq-body");
    clear(body);
    if (!entries.length) {
      body.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 8, text: !d.available ? "No data"
        : dlqFiltered() ? "No dead letter matches." : "The dead-letter queue is empty." })]));
      return;
    }
    entries.forEach(function (e) {
      body.appendChild(el("tr", { "data-dlq-id": e.id, "data-event-id": e.eventId || "" }, [
        el("td", { className: "mono", text: e.event || "\u2013" }),
        el("td", { className: "mono ellipsis", title: e.eventId || "", text: e.eventId || "\u2013" }),
        el("td", { className: "mono", text: e.originalRoutingKey || "\u2013" }),
        el("td", { className: "num", text: e.attempts === null ? "\u2013" : String(e.attempts) }),
        el("td", {}, [el("span", { className: "chip " + e.kind, text: e.kind })]),
        el("td", { className: "err-text", "data-testid": "dlq-error", text: e.error || "\u2013" }),
        el("td", { className: "num", title: e.failedAt || "", text: formatAge(e.ageSeconds) }),
        el("td", { className: "actions" }, [
          el("button", { type: "button", "data-action": "view", onclick: function () { openMessage(e.id); } }, ["View"]),
          el("button", { type: "button", "data-action": "replay", disabled: busy || !e.replayable,
            title: e.replayable ? "Republish to " + (e.originalRoutingKey || e.event) : "Cannot be replayed (" + e.kind + ")",
            onclick: function () { act("Replay", "/ops/api/dlq/replay", { id: e.id }, null); } }, ["Replay"]),
          el("button", { type: "button", className: "danger", "data-action": "discard", disabled: busy,
            onclick: function () { act("Discard", "/ops/api/dlq/discard", { id: e.id }, "Discard this " + (e.event || "message") + " for good? It cannot be replayed afterwards."); } }, ["Discard"])
        ])
      ]));
    });
  }

  // The message view: one dead letter whole, fetched when opened (the table shows a preview only).
  function openMessage(id) {
    $("message-view").hidden = false;
    $("message-title").textContent = "Loading\u2026";
    ["message-meta", "message-routing", "message-headers", "message-properties", "message-body", "message-body-hint"]
      .forEach(function (k) { $(k).textContent = ""; });
    $("message-error").hidden = true;
    $("message-view").setAttribute("data-id", id);
    return api("GET", "/ops/api/dlq/" + encodeURIComponent(id)).then(function (r) {
      var e = r.entry;
      $("message-title").textContent = (e.event || "Message") + " \u00b7 " + (e.eventId || e.id);
      $("message-meta").textContent = e.kind + (e.attempts === null ? "" : " after " + e.attempts + " attempt" + (e.attempts === 1 ? "" : "s")) +
        (e.error ? ": " + e.error : "") + (e.failedAt ? " (failed " + e.failedAt + ")" : "");
      $("message-routing").textContent = "routing key " + r.routingKey;
      $("message-headers").textContent = JSON.stringify(r.headers, null, 2);
      $("message-properties").textContent = JSON.stringify(r.properties, null, 2);
      var body = r.body;
      if (r.json) { try { body = JSON.stringify(JSON.parse(r.body), null, 2); } catch (x) { body = r.body; } }
      $("message-body").textContent = body;
      $("message-body-hint").textContent = (r.bodyEncoding === "base64" ? "not UTF-8, shown as base64" : r.json ? "JSON" : "text") +
        " \u00b7 " + formatCount(r.size) + " bytes";
      $("message-view").setAttribute("data-loaded", id);
    }, function (e) {
      if (e instanceof AuthError) return handleError(e);
      $("message-title").textContent = "Message";
      $("message-error").textContent = e && e.message ? e.message : String(e);
      $("message-error").hidden = false;
    });
  }

  function closeMessage() {
    $("message-view").hidden = true;
    $("message-view").removeAttribute("data-loaded");
  }

  function copyFallback(text) {
    var t = el("textarea", { "aria-hidden": "true" });
    t.value = text;
    document.body.appendChild(t);
    t.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(t);
    return ok;
  }

  function copyFrom(source, button) {
    var text = $(source).textContent || "";
    var label = button.getAttribute("data-label") || button.textContent;
    function said(word) { button.textContent = word; setTimeout(function () { button.textContent = label; }, 1500); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { said("Copied"); }, function () { said(copyFallback(text) ? "Copied" : "Copy failed"); });
    } else said(copyFallback(text) ? "Copied" : "Copy failed");
  }

  // The charts: uPlot (bundled with this page), redrawn from /ops/api/history every few seconds.
  var CHARTS = [
    { id: "chart-throughput", series: [{ label: "processed/s", key: "processedPerSecond", stroke: "#3056d3" }, { label: "retried/s", key: "retriedPerSecond", stroke: "#c27c0e" }] },
    { id: "chart-failures", series: [{ label: "dead-lettered/s", key: "failedPerSecond", stroke: "#d1343b" }] },
    // Lag exists only between samples that processed something: its points are joined across the gaps.
    { id: "chart-lag", series: [{ label: "avg lag ms", key: "avgLagMs", stroke: "#1f9d55", spanGaps: true }] },
    { id: "chart-queues", queues: true }
  ];
  var QUEUE_COLORS = ["#3056d3", "#1f9d55", "#c27c0e", "#7b4fd6", "#d1343b", "#0f8b8d"];

  function chartWidth(holder) { return Math.max(240, holder.clientWidth || 400); }

  function renderHistory(h) {
    var xs = h.points.map(function (p) { return Date.parse(p.at) / 1000; });
    var queueNames = [];
    h.points.forEach(function (p) {
      if (p.queues) Object.keys(p.queues).forEach(function (q) { if (queueNames.indexOf(q) < 0) queueNames.push(q); });
    });
    CHARTS.forEach(function (c) {
      var series = c.queues
        ? queueNames.map(function (q, i) {
          return { label: q, stroke: QUEUE_COLORS[i % QUEUE_COLORS.length], value: function (p) { return p.queues && p.queues[q] !== undefined ? p.queues[q] : null; } };
        })
        : c.series.map(function (s) { return { label: s.label, stroke: s.stroke, spanGaps: !!s.spanGaps, value: function (p) { return p[s.key]; } }; });
      var data = [xs].concat(series.map(function (s) { return h.points.map(s.value); }));
      var key = series.map(function (s) { return s.label; }).join("|");
      var holder = $(c.id);
      var existing = charts[c.id];
      if (existing && existing.key === key) existing.plot.setData(data);
      else {
        if (existing) existing.plot.destroy();
        clear(holder);
        var plot = new uPlot({
          width: chartWidth(holder),
          height: CHART_HEIGHT,
          scales: { x: { time: true } },
          axes: [{}, { size: 56 }],
          series: [{}].concat(series.map(function (s) { return { label: s.label, stroke: s.stroke, width: 2, spanGaps: !!s.spanGaps }; }))
        }, data, holder);
        charts[c.id] = { plot: plot, key: key };
      }
      holder.setAttribute("data-points", String(xs.length));
    });
    $("charts-hint").textContent = "a sample every " + h.intervalSeconds + " s, kept by this API for an hour (" + h.points.length + " so far)";
  }

  function refreshHistory() {
    lastHistoryAt = Date.now();
    return api("GET", "/ops/api/history").then(function (h) {
      try { renderHistory(h); } catch (e) { showBanner("error", "Cannot draw the charts: " + (e && e.message ? e.message : String(e))); }
    }, function (e) { if (e instanceof AuthError) throw e; $("charts-hint").textContent = "history unavailable: " + e.message; });
  }

  // Notification deliveries: per channel, and the newest failed ones with a Retry each.
  function renderDeliveries(d) {
    var card = $("deliveries-card");
    panelError(card, d);
    $("deliveries-hint").textContent = d.available ? formatCount(d.pending) + " pending \u00b7 " + formatCount(d.failed) + " failed" +
      (d.oldestPendingSeconds === null ? "" : " \u00b7 oldest pending " + formatAge(d.oldestPendingSeconds)) : "";
    $("retry-failed").disabled = busy || !d.failed;
    var summary = $("deliveries-summary");
    clear(summary);
    d.channels.forEach(function (c) {
      summary.appendChild(el("tr", { "data-channel": c.channel, className: c.failed > 0 ? "hot" : "" }, [
        el("td", { className: "mono", text: c.channel }),
        el("td", { className: "num", "data-testid": "deliveries-pending-" + c.channel, text: formatCount(c.pending) }),
        el("td", { className: "num", "data-testid": "deliveries-failed-" + c.channel, text: formatCount(c.failed) }),
        el("td", { className: "num", text: formatCount(c.delivered) }),
        el("td", { className: "num", text: c.oldestPendingSeconds === null ? "\u2013" : formatAge(c.oldestPendingSeconds) })
      ]));
    });
    if (!d.channels.length) summary.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 5, text: "No data" })]));
    var failed = $("deliveries-failed");
    clear(failed);
    d.latestFailed.forEach(function (x) {
      failed.appendChild(el("tr", { "data-delivery-id": x.id }, [
        el("td", { className: "num mono", text: x.id }),
        el("td", { className: "mono", text: x.channel }),
        el("td", { className: "mono", text: x.eventType }),
        el("td", { className: "mono ellipsis", title: x.recipientId || x.subscriptionId || "", text: x.recipientId || x.subscriptionId || "\u2013" }),
        el("td", { className: "num", text: String(x.attempts) }),
        el("td", { className: "err-text", text: (x.lastStatus === null ? "" : x.lastStatus + " ") + (x.lastError || "") || "\u2013" }),
        el("td", { className: "num", title: x.updatedAt, text: formatAge((Date.now() - Date.parse(x.updatedAt)) / 1000) + " ago" }),
        el("td", { className: "actions" }, [
          el("button", { type: "button", "data-action": "retry-delivery", disabled: busy,
            onclick: function () { act("Retry", "/ops/api/deliveries/retry", { id: x.id }, null); } }, ["Retry"])
        ])
      ]));
    });
    if (!d.latestFailed.length) failed.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 8, text: d.available ? "No failed delivery." : "No data" })]));
  }

  function renderBroker(b) {
    var node = $("broker-node");
    node.textContent = b.publisher ? "RabbitMQ node " + b.publisher : b.connections.length ? "RabbitMQ node " + b.connections[0].node : "RabbitMQ";
    node.title = b.connections.map(function (c) { return c.connection + ": " + c.node; }).join("; ");
  }

  // One row per live worker (the registry their heartbeats write); the worker card shows their sum when there is one.
  function renderWorkers(ws) {
    var card = $("workers-card");
    panelError(card, ws);
    $("workers-hint").textContent = ws.available ? ws.live + " live \u00b7 silent for " + ws.ttlSeconds + " s = gone" : "";
    var body = $("workers-body");
    clear(body);
    ws.items.forEach(function (w) {
      var up = (Date.parse(ws.scrapedAt) - Date.parse(w.startedAt)) / 1000;
      body.appendChild(el("tr", { "data-worker": w.id }, [
        el("td", { className: "mono ellipsis", title: w.id, text: w.id }),
        el("td", { className: "mono", text: w.host }),
        el("td", { className: "num", text: String(w.pid) }),
        el("td", { className: "mono", "data-testid": "worker-node", text: w.brokerNode === null ? "disconnected" : w.brokerNode.split("://").pop() }),
        el("td", { className: "num", text: formatAge(up) }),
        el("td", { className: "num", text: formatAge(w.lastSeenSeconds) + " ago" }),
        el("td", { className: "num", "data-testid": "worker-processed", text: formatCount(w.processed) }),
        el("td", { className: "num", text: w.share === null ? "\u2013" : (w.share * 100).toFixed(1) + "%" }),
        el("td", { className: "num", text: formatCount(w.retried) }),
        el("td", { className: "num", text: formatCount(w.duplicates) }),
        el("td", { className: "num", text: formatCount(w.deadLettered) }),
        el("td", { className: "num", text: formatMs(w.avgLagMs) })
      ]));
    });
    if (ws.items.length > 1) {
      body.appendChild(el("tr", { className: "total" }, [el("td", { text: "All workers" }), el("td", {}), el("td", {}), el("td", {}), el("td", {}), el("td", {}),
        el("td", { className: "num", "data-testid": "workers-processed-total", text: formatCount(ws.totals.processed) }), el("td", {}),
        el("td", { className: "num", text: formatCount(ws.totals.retried) }), el("td", { className: "num", text: formatCount(ws.totals.duplicates) }),
        el("td", { className: "num", text: formatCount(ws.totals.deadLettered) }), el("td", {})]));
    }
    if (!ws.items.length) body.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 12, text: ws.available ? "No live worker." : "No data" })]));
  }

  // Webhook subscriptions OpsDesk disabled stay flagged until an admin re-enables them (PATCH /v1/webhooks/{id}).
  function renderWebhooks(w) {
    var flag = $("webhooks-flag");
    flag.hidden = !(w.available && w.disabled > 0);
    if (flag.hidden) return;
    flag.textContent = formatCount(w.disabled) + " webhook subscription" + (w.disabled === 1 ? " is" : "s are") +
      " disabled after failing: " + w.items.map(function (i) { return i.url + (i.disabledReason ? " (" + i.disabledReason + ")" : ""); }).join("; ") +
      '. Re-enable with PATCH /v1/webhooks/{id} {"active": true}.';
  }

  function render(o, list) {
    renderQueues(o.queues);
    renderOutbox(o.outbox);
    var shown = o.workers && o.workers.available && o.workers.live > 0 ? o.workers : o.worker;
    renderWorker(shown);
    if (o.workers) renderWorkers(o.workers);
    if (o.webhooks) renderWebhooks(o.webhooks);
    if (o.deliveries) renderDeliveries(o.deliveries);
    if (o.broker) renderBroker(o.broker);
    renderDlq(o.dlq, list);
    var degraded = [o.queues, o.outbox, shown, o.dlq].concat(o.deliveries ? [o.deliveries] : []).filter(function (p) { return !p.available; }).length;
    var at = new Date(o.generatedAt).toLocaleTimeString();
    setStatus(degraded ? "warn" : "ok", "Updated " + at + (degraded ? " \\u00b7 " + degraded + " source" + (degraded === 1 ? "" : "s") + " unavailable" : ""));
  }

  // Each poll loop has a generation; stopping or restarting the loop ends the older one. Late answers never overwrite newer ones.
  var pollGeneration = 0;
  var requested = 0;
  var rendered = 0;
  var pollFailed = false;

  // Paging or filtering the DLQ: the overview brings its depth only, the page comes from /ops/api/dlq.
  function refresh() {
    var seq = ++requested;
    var view = JSON.stringify(dlqView);
    var paged = dlqFiltered();
    if (Date.now() - lastHistoryAt >= HISTORY_EVERY_MS) refreshHistory().then(null, handleError);
    return Promise.all([
      api("GET", paged ? "/ops/api/overview?dlqLimit=1" : "/ops/api/overview"),
      paged ? api("GET", dlqQuery()).then(null, function (e) {
        if (e instanceof AuthError) throw e;
        return { error: e.message, anchorGone: e.status === 404 };
      }) : null
    ]).then(function (r) {
      var o = r[0];
      if (seq < rendered) return;
      rendered = seq;
      if (pollFailed) { pollFailed = false; hideBanner(); }
      // The view changed meanwhile: the next poll (started by the change) shows it.
      if (view !== JSON.stringify(dlqView)) return;
      // The entry this page follows was replayed or discarded (here or elsewhere): start again from the first page.
      if (r[1] && r[1].anchorGone) {
        showBanner("error", r[1].error + "; showing the first page.");
        applyDlqView(0);
        return;
      }
      try { render(o, r[1]); } catch (e) { showBanner("error", "Cannot show the data: " + (e && e.message ? e.message : String(e))); }
    }, function (e) {
      if (seq < rendered) return;
      rendered = seq;
      setStatus("bad", "Update failed");
      pollFailed = !(e instanceof AuthError);
      handleError(e);
    });
  }

  function loop(generation) {
    refresh().then(function () {
      if (generation === pollGeneration && token()) pollTimer = setTimeout(function () { loop(generation); }, POLL_MS);
    });
  }
  function startPolling() { stopPolling(); loop(pollGeneration); }
  function stopPolling() { pollGeneration++; if (pollTimer) clearTimeout(pollTimer); pollTimer = null; }

  function setBusy(b) {
    busy = b;
    var buttons = document.querySelectorAll("#dlq-card td button, #dlq-card .actions button, #deliveries-card button");
    for (var i = 0; i < buttons.length; i++) if (b) buttons[i].disabled = true;
  }

  function describeResult(name, r) {
    if (!r) return name + " done.";
    if (typeof r.purged === "number") return "Purged " + r.purged + " message" + (r.purged === 1 ? "" : "s") + " from the DLQ.";
    if (typeof r.discarded === "string") return "Discarded message " + r.discarded + ".";
    if (r.retried && typeof r.retried.length === "number") return "Retried " + r.retried.length + " deliver" + (r.retried.length === 1 ? "y" : "ies") + ".";
    if (typeof r.replayed === "number") {
      var text = "Replayed " + r.replayed + " message" + (r.replayed === 1 ? "" : "s");
      if (r.skipped) text += "; " + r.skipped + " skipped" + (r.skippedMessages && r.skippedMessages[0] ? " (" + r.skippedMessages[0].reason + ")" : "");
      return text + ".";
    }
    return name + " done.";
  }

  function act(name, path, body, question) {
    if (question && !window.confirm(question)) return;
    setBusy(true);
    return api("POST", path, body).then(function (r) {
      pollFailed = false;
      showBanner("success", describeResult(name, r));
    }, function (e) {
      pollFailed = false;
      if (e instanceof AuthError) return handleError(e);
      showBanner("error", name + " failed: " + (e && e.message ? e.message : String(e)));
      // Older than DLQ_REPLAY_WINDOW: the operator may still replay it, knowingly (docs/OPS.md, Retention).
      if (e && e.body && e.body.tooOld === true && body && body.id && !body.force &&
          window.confirm(e.message + "\\n\\nReplay it anyway? Only if its event was never processed: otherwise it runs twice.")) {
        return act(name + " (forced)", path, { id: body.id, force: true }, null);
      }
    }).then(function () {
      busy = false;
      // After a replay or purge of everything, the page's anchor is gone too: back to the first page, quietly.
      if ((path === "/ops/api/dlq/replay" || path === "/ops/api/dlq/purge") && !(body && body.id)) {
        dlqView.page = 0;
        dlqView.anchors = [""];
      }
      if (token()) startPolling();
    });
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var username = $("username").value.trim();
    var password = $("password").value;
    var submit = $("login-submit");
    submit.disabled = true;
    $("login-error").hidden = true;
    api("POST", "/v1/auth/login", { username: username, password: password }).then(function (r) {
      sessionStorage.setItem(TOKEN_KEY, r.accessToken);
      sessionStorage.setItem(USER_KEY, username);
      $("password").value = "";
      showDashboard();
    }, function (e) {
      var err = $("login-error");
      err.textContent = e instanceof AuthError ? "Wrong username or password." : (e && e.message ? e.message : String(e));
      err.hidden = false;
    }).then(function () { submit.disabled = false; });
  });

  $("logout").addEventListener("click", function () { showLogin(""); });
  EVENT_TYPES.forEach(function (t) { $("dlq-event").appendChild(el("option", { value: t, text: t })); });
  KINDS.forEach(function (k) { $("dlq-kind").appendChild(el("option", { value: k, text: k })); });
  function applyDlqView(page) {
    if (page === 0) dlqView.anchors = [""];
    // Until the new page is drawn, its "next" is unknown: a second click must not reuse this page's.
    dlqNext = null;
    $("dlq-next").disabled = true;
    dlqView.page = page;
    dlqView.eventId = $("dlq-search").value.trim();
    dlqView.event = $("dlq-event").value;
    dlqView.kind = $("dlq-kind").value;
    $("dlq-page").textContent = "Page " + (page + 1);
    if (token()) startPolling();
  }
  $("dlq-filters").addEventListener("submit", function (ev) { ev.preventDefault(); applyDlqView(0); });
  $("dlq-event").addEventListener("change", function () { applyDlqView(0); });
  $("dlq-kind").addEventListener("change", function () { applyDlqView(0); });
  $("dlq-clear").addEventListener("click", function () {
    $("dlq-search").value = ""; $("dlq-event").value = ""; $("dlq-kind").value = "";
    applyDlqView(0);
  });
  $("dlq-prev").addEventListener("click", function () { if (dlqView.page > 0) applyDlqView(dlqView.page - 1); });
  $("dlq-next").addEventListener("click", function () {
    if (!dlqNext) return;
    dlqView.anchors[dlqView.page + 1] = dlqNext;
    applyDlqView(dlqView.page + 1);
  });
  $("message-close").addEventListener("click", closeMessage);
  $("message-view").addEventListener("click", function (ev) { if (ev.target === $("message-view")) closeMessage(); });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape" && !$("message-view").hidden) closeMessage(); });
  $("copy-headers").addEventListener("click", function () { copyFrom("message-headers", $("copy-headers")); });
  $("copy-body").addEventListener("click", function () { copyFrom("message-body", $("copy-body")); });
  $("retry-failed").addEventListener("click", function () {
    act("Retry all", "/ops/api/deliveries/retry", { all: true }, "Retry every failed delivery?");
  });
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) { charts[id].plot.setSize({ width: chartWidth($(id)), height: CHART_HEIGHT }); });
  });
  $("replay-all").addEventListener("click", function () {
    act("Replay all", "/ops/api/dlq/replay", { all: true }, "Replay every message in the dead-letter queue to its original queue?");
  });
  $("purge-all").addEventListener("click", function () {
    act("Purge", "/ops/api/dlq/purge", undefined, "Remove EVERY message from the dead-letter queue for good? This cannot be undone.");
  });

  window.addEventListener("error", function (ev) { showBanner("error", "Something went wrong in the page: " + (ev.message || "unknown error")); });
  window.addEventListener("unhandledrejection", function (ev) {
    var r = ev.reason;
    showBanner("error", "Something went wrong in the page: " + (r && r.message ? r.message : String(r)));
  });

  if (token()) showDashboard(); else showLogin("");
})();
`

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`

export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>OpsDesk &middot; Operations</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath d='M8 1l7 7-7 7-7-7z' fill='%233056d3'/%3E%3C/svg%3E">
<style>${UPLOT_CSS}</style>
<style>${STYLE}</style>
</head>
<body>${BODY}<noscript><p class="banner error">The ops dashboard needs JavaScript.</p></noscript>
<script>${UPLOT_JS}</script>
<script>${SCRIPT}</script>
</body>
</html>
`

const CSP = [
  "default-src 'none'",
  `script-src ${sha256(UPLOT_JS)} ${sha256(SCRIPT)}`,
  `style-src ${sha256(UPLOT_CSS)} ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "form-action 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'"
].join("; ")

const HEADERS = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}

const page = HttpServerResponse.text(PAGE, { contentType: "text/html; charset=utf-8", headers: HEADERS })

/** `GET /ops`: the page. A plain route, not part of the OpenAPI contract. */
export const OpsPageRouteLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    // The router ignores a trailing slash: this serves /ops/ as well.
    yield* router.get("/ops", Effect.succeed(page))
  })
)
