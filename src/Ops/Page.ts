/**
 * `GET /ops`: the ops dashboard, one self-contained HTML page (inline CSS and
 * vanilla JS, nothing fetched from elsewhere). It signs in through
 * `POST /v1/auth/login` (the token lives in sessionStorage), polls
 * `GET /ops/api/overview` every 2 s, and calls the `/ops/api/dlq/*` actions.
 *
 * The page itself is public (it holds no data); everything it shows comes
 * from the admin-only JSON endpoints. Its Content-Security-Policy allows only
 * this page's own script and style (by hash) and requests to this origin.
 * Data is put in the page with textContent only, never as HTML.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash } from "node:crypto"

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
@media (max-width: 900px) { .tiles { grid-template-columns: repeat(2, minmax(0, 1fr)); } .columns { grid-template-columns: minmax(0, 1fr); } }
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

    <div class="columns">
      <section class="card" id="queues-card">
        <div class="card-head"><h2>Queues</h2><span class="hint">RabbitMQ</span></div>
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
        <thead><tr><th>Worker</th><th>Host</th><th class="num">PID</th><th class="num">Up</th><th class="num">Last seen</th><th class="num">Processed</th><th class="num">Share</th><th class="num">Retried</th><th class="num">Duplicates</th><th class="num">Dead-lettered</th></tr></thead>
        <tbody id="workers-body"></tbody>
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
      <div class="panel-error" hidden></div>
      <div class="table-wrap"><table>
        <thead><tr><th>Event</th><th>Event ID</th><th>Routing key</th><th class="num">Attempts</th><th>Kind</th><th>Error</th><th class="num">Age</th><th></th></tr></thead>
        <tbody id="dlq-body"></tbody>
      </table></div>
    </section>
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
  var pollTimer = null;
  var previous = null;
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

  function renderDlq(d) {
    var card = $("dlq-card");
    panelError(card, d);
    var depth = d.depth;
    document.querySelector("[data-testid=dlq-depth]").textContent = depth === null ? "\\u2013" : formatCount(depth);
    $("tile-dlq").className = "tile" + (depth > 0 ? " alert" : "");
    $("dlq-hint").textContent = depth === null ? "" : depth > d.entries.length
      ? "showing the first " + d.entries.length + " of " + depth
      : depth + " message" + (depth === 1 ? "" : "s");
    $("replay-all").disabled = busy || !depth;
    $("purge-all").disabled = busy || !depth;
    var body = $("dlq-body");
    clear(body);
    if (!d.entries.length) {
      body.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 8, text: d.available ? "The dead-letter queue is empty." : "No data" })]));
      return;
    }
    d.entries.forEach(function (e) {
      body.appendChild(el("tr", { "data-dlq-id": e.id, "data-event-id": e.eventId || "" }, [
        el("td", { className: "mono", text: e.event || "\\u2013" }),
        el("td", { className: "mono ellipsis", title: e.eventId || "", text: e.eventId || "\\u2013" }),
        el("td", { className: "mono", text: e.originalRoutingKey || "\\u2013" }),
        el("td", { className: "num", text: e.attempts === null ? "\\u2013" : String(e.attempts) }),
        el("td", {}, [el("span", { className: "chip " + e.kind, text: e.kind })]),
        el("td", { className: "err-text", "data-testid": "dlq-error", text: e.error || "\\u2013" }),
        el("td", { className: "num", title: e.failedAt || "", text: formatAge(e.ageSeconds) }),
        el("td", { className: "actions" }, [
          el("button", { type: "button", "data-action": "replay", disabled: busy || !e.replayable,
            title: e.replayable ? "Republish to " + (e.originalRoutingKey || e.event) : "Cannot be replayed (" + e.kind + ")",
            onclick: function () { act("Replay", "/ops/api/dlq/replay", { id: e.id }, null); } }, ["Replay"]),
          el("button", { type: "button", className: "danger", "data-action": "discard", disabled: busy,
            onclick: function () { act("Discard", "/ops/api/dlq/discard", { id: e.id }, "Discard this " + (e.event || "message") + " for good? It cannot be replayed afterwards."); } }, ["Discard"])
        ])
      ]));
    });
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
        el("td", { className: "num", text: formatAge(up) }),
        el("td", { className: "num", text: formatAge(w.lastSeenSeconds) + " ago" }),
        el("td", { className: "num", "data-testid": "worker-processed", text: formatCount(w.processed) }),
        el("td", { className: "num", text: w.share === null ? "\u2013" : (w.share * 100).toFixed(1) + "%" }),
        el("td", { className: "num", text: formatCount(w.retried) }),
        el("td", { className: "num", text: formatCount(w.duplicates) }),
        el("td", { className: "num", text: formatCount(w.deadLettered) })
      ]));
    });
    if (ws.items.length > 1) {
      body.appendChild(el("tr", { className: "total" }, [el("td", { text: "All workers" }), el("td", {}), el("td", {}), el("td", {}), el("td", {}),
        el("td", { className: "num", "data-testid": "workers-processed-total", text: formatCount(ws.totals.processed) }), el("td", {}),
        el("td", { className: "num", text: formatCount(ws.totals.retried) }), el("td", { className: "num", text: formatCount(ws.totals.duplicates) }),
        el("td", { className: "num", text: formatCount(ws.totals.deadLettered) })]));
    }
    if (!ws.items.length) body.appendChild(el("tr", {}, [el("td", { className: "empty", colspan: 10, text: ws.available ? "No live worker." : "No data" })]));
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

  function render(o) {
    renderQueues(o.queues);
    renderOutbox(o.outbox);
    var shown = o.workers && o.workers.available && o.workers.live > 0 ? o.workers : o.worker;
    renderWorker(shown);
    if (o.workers) renderWorkers(o.workers);
    if (o.webhooks) renderWebhooks(o.webhooks);
    renderDlq(o.dlq);
    var degraded = [o.queues, o.outbox, shown, o.dlq].filter(function (p) { return !p.available; }).length;
    var at = new Date(o.generatedAt).toLocaleTimeString();
    setStatus(degraded ? "warn" : "ok", "Updated " + at + (degraded ? " \\u00b7 " + degraded + " source" + (degraded === 1 ? "" : "s") + " unavailable" : ""));
  }

  // Each poll loop has a generation; stopping or restarting the loop ends the older one. Late answers never overwrite newer ones.
  var pollGeneration = 0;
  var requested = 0;
  var rendered = 0;
  var pollFailed = false;

  function refresh() {
    var seq = ++requested;
    return api("GET", "/ops/api/overview").then(function (o) {
      if (seq < rendered) return;
      rendered = seq;
      if (pollFailed) { pollFailed = false; hideBanner(); }
      try { render(o); } catch (e) { showBanner("error", "Cannot show the data: " + (e && e.message ? e.message : String(e))); }
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
    var buttons = document.querySelectorAll("#dlq-card button");
    for (var i = 0; i < buttons.length; i++) if (b) buttons[i].disabled = true;
  }

  function describeResult(name, r) {
    if (!r) return name + " done.";
    if (typeof r.purged === "number") return "Purged " + r.purged + " message" + (r.purged === 1 ? "" : "s") + " from the DLQ.";
    if (typeof r.discarded === "string") return "Discarded message " + r.discarded + ".";
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
<style>${STYLE}</style>
</head>
<body>${BODY}<noscript><p class="banner error">The ops dashboard needs JavaScript.</p></noscript>
<script>${SCRIPT}</script>
</body>
</html>
`

const CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
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
