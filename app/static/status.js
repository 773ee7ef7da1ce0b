// The status page: subscribes to the "status" channel of /ws (docs/websocket.md) and draws the figures
// every worker publishes there once a second (app/status.py).  A worker silent for DOWN_AFTER_MS is
// drawn as down; one silent for FORGET_AFTER_MS is dropped.  Rows are rebuilt from the data on every
// tick; every text is set with textContent.
"use strict";

(() => {
  const CHANNEL = "status";
  const DOWN_AFTER_MS = 3000;
  const FORGET_AFTER_MS = 60000;
  const TICK_MS = 250;
  const COLUMNS = 9;

  const workers = new Map();           // "host|pid" -> {fig, seen}
  const connection = document.getElementById("connection");
  const body = document.getElementById("workers");
  const foot = document.getElementById("total");
  let retries = 0;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = () => {
      retries = 0;
      socket.send(JSON.stringify({op: "subscribe", channel: CHANNEL}));
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        setConnection("open", "live");
      } else if (message.type === "message" && message.channel === CHANNEL) {
        receive(message.data);
      } else if (message.type === "error") {
        setConnection("closed", "error: " + message.code);
        if (message.code === "unavailable") {        // Redis could not be reached just now: ask again
          setTimeout(() => socket.send(JSON.stringify({op: "subscribe", channel: CHANNEL})), 1000);
        }
      }
    };
    socket.onclose = () => {
      const wait = Math.min(5000, 250 * 2 ** retries++);
      setConnection("closed", "disconnected, retrying in " + (wait / 1000).toFixed(1) + " s");
      setTimeout(connect, wait);
    };
  }

  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }

  function receive(fig) {
    if (!fig || typeof fig.host !== "string" || typeof fig.pid !== "number") return;
    workers.set(fig.host + "|" + fig.pid, {fig, seen: performance.now()});
  }

  // -- formatting -------------------------------------------------------------------------------

  function number(value, digits) {
    return value === null || value === undefined ? "–" : value.toFixed(digits);
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    return value.toFixed(value < 10 ? 2 : 1);
  }

  function cell(row, field, text, value, className) {
    const td = document.createElement("td");
    td.dataset.field = field;
    if (value !== undefined && value !== null) td.dataset.value = String(value);
    if (className) td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function backendsCell(row, backends) {
    const td = cell(row, "backends", "", undefined, "backends");
    for (const b of backends) {
      const span = document.createElement("span");
      span.className = "backend " + (b.connected ? "ok" : "bad");
      span.dataset.backend = b.name;
      span.dataset.connected = String(b.connected);
      span.title = b.name + (b.connected ? " connected" : " not connected") + ", " + b.errors + " errors in all";
      const pool = b.pool_max > 0 ? " " + b.pool_in_use + "/" + b.pool_max : "";
      span.textContent = b.name + (b.up !== undefined ? " " + b.up + "/" + b.of : "") + pool;
      if (b.errors_per_s > 0) {
        const errors = document.createElement("span");
        errors.className = "errors";
        errors.textContent = " " + number(b.errors_per_s, 1) + " err/s";
        span.appendChild(errors);
      }
      td.appendChild(span);
    }
  }

  function figureCells(row, f) {
    cell(row, "rps", number(f.requests_per_s, 1), f.requests_per_s);
    cell(row, "p50", ms(f.p50_ms), f.p50_ms);
    cell(row, "p99", ms(f.p99_ms), f.p99_ms);
    cell(row, "in_flight", String(f.in_flight), f.in_flight);
    cell(row, "loop_lag", ms(f.loop_lag_ms), f.loop_lag_ms);
    cell(row, "ws", String(f.ws_connections), f.ws_connections);
    backendsCell(row, f.backends);
  }

  // Sums of the live workers; the worst of their latencies and lags; backends as "up of all".
  function total(entries) {
    const live = entries.filter((e) => !e.down).map((e) => e.fig);
    const worst = (key) => live.reduce((m, f) => (f[key] === null ? m : Math.max(m === null ? 0 : m, f[key])), null);
    const sum = (key) => live.reduce((s, f) => s + f[key], 0);
    const backends = new Map();
    for (const f of live) {
      for (const b of f.backends) {
        const t = backends.get(b.name) || {name: b.name, connected: true, up: 0, of: 0, errors: 0,
                                           errors_per_s: 0, pool_in_use: 0, pool_max: 0};
        t.of += 1;
        t.up += b.connected ? 1 : 0;
        t.connected = t.connected && b.connected;
        t.errors += b.errors;
        t.errors_per_s += b.errors_per_s;
        t.pool_in_use += b.pool_in_use;
        t.pool_max += b.pool_max;
        backends.set(b.name, t);
      }
    }
    return {
      live: live.length, requests_per_s: sum("requests_per_s"), p50_ms: worst("p50_ms"), p99_ms: worst("p99_ms"),
      in_flight: sum("in_flight"), loop_lag_ms: worst("loop_lag_ms"), ws_connections: sum("ws_connections"),
      backends: [...backends.values()],
    };
  }

  function render() {
    const now = performance.now();
    const hosts = new Map();
    for (const [key, entry] of workers) {
      const silent = now - entry.seen;
      if (silent > FORGET_AFTER_MS) {
        workers.delete(key);
        continue;
      }
      entry.silent = silent;
      entry.down = silent > DOWN_AFTER_MS;
      if (!hosts.has(entry.fig.host)) hosts.set(entry.fig.host, []);
      hosts.get(entry.fig.host).push(entry);
    }
    const rows = [];
    const all = [];
    for (const host of [...hosts.keys()].sort()) {
      const entries = hosts.get(host).sort((a, b) => a.fig.pid - b.fig.pid);
      all.push(...entries);
      const t = total(entries);
      const hostRow = document.createElement("tr");
      hostRow.className = "host";
      hostRow.dataset.host = host;
      cell(hostRow, "name", host + " — " + t.live + " of " + entries.length + " workers up", undefined, "name");
      figureCells(hostRow, t);
      cell(hostRow, "seen", "");
      rows.push(hostRow);
      for (const entry of entries) {
        const f = entry.fig;
        const row = document.createElement("tr");
        const state = entry.down ? "down" : f.draining ? "draining" : "up";
        row.className = "worker " + state;
        row.dataset.host = host;
        row.dataset.pid = String(f.pid);
        row.dataset.state = state;
        cell(row, "name", "pid " + f.pid, f.pid, "name");
        figureCells(row, f);
        cell(row, "seen", (entry.silent / 1000).toFixed(1) + " s ago", Math.round(entry.silent));
        rows.push(row);
      }
    }
    if (rows.length === 0) {
      const row = document.createElement("tr");
      row.className = "empty";
      cell(row, "name", "waiting for the workers' first figures…").colSpan = COLUMNS;
      rows.push(row);
    }
    body.replaceChildren(...rows);
    const t = total(all);
    const row = document.createElement("tr");
    row.className = "cluster";
    const hostCount = hosts.size + (hosts.size === 1 ? " host, " : " hosts, ");
    cell(row, "name", "cluster: " + hostCount + t.live + " of " + all.length + " workers up", undefined, "name");
    figureCells(row, t);
    cell(row, "seen", "");
    foot.replaceChildren(row);
  }

  connect();
  render();
  setInterval(render, TICK_MS);
})();
