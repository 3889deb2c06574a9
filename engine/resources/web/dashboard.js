// The live dashboard: one /ws stream (a snapshot, then RFC 7396 merge patches with batched events) plus the
// API for what the stream does not carry (runs, problem timelines, rules health). No third-party code.
"use strict";
(() => {
  const MAX_EVENTS = 500, MAX_SCORES = 60, SEVERITIES = ["debug", "info", "warning", "error", "critical"];
  const d = window.dashboard = {
    state: dict(), events: [], connected: false, frames: 0, epoch: null, seq: null, paused: false,
    filter: null, scores: dict(), lastError: null, runs: [], playbookTypes: dict(),
  };
  const $ = (id) => document.getElementById(id);

  /** Maps keyed by names from outside (agents, problems) have no prototype: `__proto__` is a name like any. */
  function dict() { return Object.create(null); }
  /** JSON with prototype-free objects, so that a key such as `__proto__` stays a plain key. */
  function parse(text) {
    return JSON.parse(text, (k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.assign(dict(), v) : v));
  }

  /** RFC 7396: objects merge key by key, null removes, anything else (lists included) replaces. */
  function mergePatch(target, patch) {
    if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
    const out = (target && typeof target === "object" && !Array.isArray(target)) ? target : dict();
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete out[key];
      else out[key] = mergePatch(out[key], value);
    }
    return out;
  }

  function el(tag, attrs, ...children) {  // textContent only: event data never becomes markup
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : String(show(child)));
    return node;
  }
  const fill = (node, rows) => node.replaceChildren(...rows);
  const show = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v ?? "");
  const time = (ts) => (ts || "").replace("T", " ").replace(/\.\d+/, "").replace("Z", "");

  // --- the stream -------------------------------------------------------------------------------------
  let retry = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const resume = d.epoch !== null ? `?resume=${encodeURIComponent(d.epoch + ":" + d.seq)}` : "";
    setConn("connecting", d.epoch ? "reconnecting…" : "connecting…");
    const ws = d.ws = new WebSocket(`${scheme}//${location.host}/ws${resume}`);
    ws.onopen = () => { retry = 1000; d.connected = true; setConn("open", "live"); };
    ws.onmessage = (message) => onMessage(parse(message.data));
    ws.onclose = () => {
      d.connected = false;
      setConn("closed", `disconnected, retrying in ${retry / 1000} s`);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  function onMessage(msg) {
    if (!("seq" in msg)) {  // not a frame: a filter acknowledgement or an error
      if ("filter" in msg) $("filter-status").textContent = "filter on: " + JSON.stringify(msg.filter);
      if ("error" in msg) { d.lastError = msg; $("filter-status").textContent = "refused: " + msg.error; }
      return;
    }
    const fresh = msg.epoch !== d.epoch;
    d.frames += 1; d.epoch = msg.epoch; d.seq = msg.seq;
    if (fresh && d.filter) send({filter: d.filter});  // a new stream (engine restarted) starts unfiltered
    d.state = msg.snapshot ? (msg.state || dict()) : mergePatch(d.state, msg.state || dict());
    for (const event of msg.events || []) d.events.unshift(event);
    if (d.events.length > MAX_EVENTS) d.events.length = MAX_EVENTS;
    recordScores(msg.snapshot ? d.state.agents : (msg.state || {}).agents);
    if ((msg.events || []).some((e) => /^(playbook|reactor)\./.test(e.type))) scheduleRuns();
    if (drawing === null) drawing = requestAnimationFrame(() => { drawing = null; render(); });  // one per paint
  }

  function send(obj) { if (d.ws && d.ws.readyState === WebSocket.OPEN) d.ws.send(JSON.stringify(obj)); }
  function setConn(state, text) { const c = $("conn"); c.dataset.state = state; c.textContent = text; }

  function recordScores(changed) {  // the agents whose score this frame carries (all of them in a snapshot)
    for (const [name, agent] of Object.entries(changed || {})) {
      if (!agent || typeof agent.score !== "number") continue;
      const list = d.scores[name] || (d.scores[name] = []);  // d.scores has no prototype: any name is safe
      list.push(agent.score);
      if (list.length > MAX_SCORES) list.shift();
    }
  }

  // --- rendering --------------------------------------------------------------------------------------
  let lastPlaybookKeys = "", lastRunning = "", drawing = null;
  function render() {
    const s = d.state, queue = s.queue || {};
    $("engine-status").textContent = (s.engine || {}).status || "?";
    $("queue-depth").textContent = queue.depth ?? 0;
    $("running-count").textContent = (queue.running || []).length;
    if (!d.paused) renderEvents();
    renderAgents(); renderProblems(); renderRunning(); renderPlaybooks(); controls.render();
    const keys = Object.keys(s.playbooks || {}).join(",");
    if (keys !== lastPlaybookKeys) { lastPlaybookKeys = keys; loadRulesHealth(); }
    const running = (queue.running || []).join(",");
    if (running !== lastRunning) { lastRunning = running; scheduleRuns(); }
  }

  function renderEvents() {
    fill($("events"), d.events.map((e) => el("tr", {class: "sev-" + (e.severity || "info"), "data-id": e.id || ""},
      el("td", {}, time(e.ts)), el("td", {}, e.type), el("td", {}, e.severity || "info"), el("td", {}, e.agent || ""),
      el("td", {class: "data", title: JSON.stringify(e.data || {})}, JSON.stringify(e.data || {})))));
  }

  function sparkline(scores) {
    const values = scores.length === 1 ? [scores[0], scores[0]] : scores;  // one score: a flat line, not nothing
    const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark"); svg.setAttribute("width", "120"); svg.setAttribute("height", "24");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `last ${scores.length} scores`);
    const line = document.createElementNS(ns, "polyline");
    const step = values.length > 1 ? 118 / (values.length - 1) : 0;
    line.setAttribute("points", values.map((v, i) => `${1 + i * step},${23 - v * 22}`).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2a6fdb"); line.setAttribute("stroke-width", "1.5");
    svg.append(line);
    return svg;
  }

  function renderAgents() {
    const agents = Object.values(d.state.agents || {}).sort((a, b) => a.name.localeCompare(b.name));
    fill($("agents"), agents.map((a) => el("tr", {"data-agent": a.name},
      el("th", {scope: "row"}, a.name),
      el("td", {class: "state-" + (a.state || "")}, a.state || (a.declared ? "?" : "seen")),
      el("td", {}, typeof a.score === "number" ? a.score.toFixed(2) : "–"),
      el("td", {}, sparkline(d.scores[a.name] || [])), el("td", {}, a.restarts ?? ""),
      el("td", {}, ...controls.agentButtons(a)))));
  }

  function renderProblems() {
    const open = Object.values(d.state.problems || {}).filter((p) => p.status !== "resolved");
    fill($("problems"), open.map((p) => el("tr", {},
      el("th", {scope: "row"}, el("button", {class: "linkish", onclick: () => showProblem(p.id)}, p.id)),
      el("td", {}, p.kind), el("td", {}, show(p.subject ?? p.key)), el("td", {}, time(p.opened_at)),
      el("td", {}, (p.escalated_at ? "escalated" : p.status) + (p.running ? " · running" : "")))));
  }

  function renderRunning() {  // the runs in progress, from the state: no API call per frame
    fill($("running"), Object.entries(d.state.runs || {}).map(([id, r]) => el("tr", {"data-run": id},
      el("th", {scope: "row"}, el("button", {class: "linkish", onclick: () => showRun(id)}, id)),
      el("td", {}, r.playbook), el("td", {}, r.agent || ""), el("td", {}, r.priority), el("td", {}, r.cause || ""),
      el("td", {}, r.waiting === "approval" ? "waiting for approval " : "", controls.cancelButton(id)))));
  }

  function renderPlaybooks() {
    const books = Object.entries(d.state.playbooks || {}).sort(([a], [b]) => a.localeCompare(b));
    const held = (d.state.controls || {}).disabled || dict();  // disabled at run time, for a while
    fill($("playbooks"), books.map(([id, p]) => el("tr", {"data-playbook": id},
      el("th", {scope: "row"}, id),
      el("td", {}, p.enabled === false ? "disabled in YAML" : id in held ? "disabled by " + held[id].by : "enabled"),
      el("td", {class: p.circuit === "closed" ? "closed" : "open"},
         show(p.circuit || "closed")),
      el("td", {}, p.priority || ""), el("td", {}, ...controls.playbookButtons(id, p, d.playbookTypes)))));
  }

  // --- the API ----------------------------------------------------------------------------------------
  async function api(path, options) {
    const answer = await fetch(path, {credentials: "same-origin", ...options});
    let body = null;
    try { body = parse(await answer.text()); } catch (_) { body = {error: answer.statusText}; }
    return {status: answer.status, body};
  }

  async function loadRulesHealth() {
    const {status, body} = await api("/api/playbooks");
    const box = $("rules-health");
    if (status !== 200) { box.textContent = "rules health unavailable: " + (body.error || status); return; }
    for (const p of body.playbooks || []) d.playbookTypes[p.id] = p.on;  // what "Run now" makes an event of
    const health = body.health || {};
    const problems = [...Object.entries(health.rejected || {}), ...Object.entries(health.unreadable || {})];
    box.replaceChildren(el("h3", {}, "Lint"), problems.length
      ? el("ul", {}, ...problems.map(([file, lines]) => el("li", {class: "refused"}, `${file}: `,
        el("pre", {}, [].concat(lines).join("\n")))))
      : el("p", {class: "done"}, `all ${health.files ?? ""} rule files load (${health.state || "?"})`));
  }

  let runsTimer = null;
  function scheduleRuns() {  // one /api/runs per 0.3 s at most, however many frames come
    if (runsTimer === null) runsTimer = setTimeout(() => { runsTimer = null; loadRuns(); }, 300);
  }

  async function loadRuns() {
    const {status, body} = await api("/api/runs?limit=20");
    if (status !== 200) return;
    d.runs = body.runs || [];
    fill($("runs"), d.runs.map((r) => el("tr", {"data-run": r.run_id},
      el("th", {scope: "row"}, el("button", {class: "linkish", onclick: () => showRun(r.run_id)}, r.run_id)),
      el("td", {}, r.playbook), el("td", {}, r.status), el("td", {}, time(r.started)),
      el("td", {}, ...(r.status === "running" ? [controls.cancelButton(r.run_id)]
        : [controls.rerunButton(r.run_id), " ",
           el("button", {class: "rollback", "data-run": r.run_id, onclick: () => rollback(r.run_id)},
              "Roll back")])))));
  }

  async function showRun(runId) {
    const {status, body} = await api(`/api/runs/${encodeURIComponent(runId)}`);
    const box = $("run-detail");
    if (status !== 200) { box.replaceChildren(el("p", {class: "refused"}, body.error || status)); return; }
    const steps = [...body.steps, ...body.rollback_steps].map((step) => el("li", {},
      `${step.id} (${step.action}): ${step.status}`,
      ...step.attempts.map((a) => el("div", {},
        a.detail && a.detail.argv ? el("pre", {}, "$ " + a.detail.argv.join(" ")) : "",
        a.exit_code !== null ? `exit ${a.exit_code} ` : "", a.error ? el("span", {class: "refused"}, a.error) : "",
        a.stdout ? el("pre", {}, a.stdout) : "", a.stderr ? el("pre", {}, a.stderr) : ""))));
    box.replaceChildren(el("h3", {}, `Run ${body.run_id} — ${body.playbook}: ${body.status}`),
      el("p", {}, `cause ${body.cause_type} ${body.cause}` + (body.error ? ` · ${body.error}` : "")),
      el("ol", {}, ...steps),
      ...(body.rollbacks || []).map((r) => el("p", {}, `rolled back ${time(r.at)} by ${r.by}: ${r.paths.join(", ")}`)));
  }

  async function rollback(runId) {
    const {status, body} = await api(`/api/runs/${encodeURIComponent(runId)}/rollback`, {method: "POST"});
    const ok = status === 200;
    $("run-detail").replaceChildren(el("p", {class: ok ? "done" : "refused", id: "rollback-answer",
      "data-status": status}, ok ? `rolled back ${runId}: restored ${(body.restored || []).join(", ") || "nothing"}`
        : `rollback of ${runId} refused (${status}): ${body.error || ""}`));
    loadRuns();
  }

  async function showProblem(problemId) {
    const {status, body} = await api(`/api/problems/${encodeURIComponent(problemId)}`);
    const box = $("problem-detail");
    if (status !== 200) { box.replaceChildren(el("p", {class: "refused"}, body.error || status)); return; }
    const entries = (body.timeline || []).map((t) => {
      const {at, ts, kind, type, ...rest} = t;
      return el("li", {}, `${time(at || ts)} ${kind || type || ""} `,
        Object.entries(rest).map(([k, v]) => `${k}=${show(v)}`).join(" "));
    });
    box.replaceChildren(el("h3", {}, `Problem ${body.id}: ${body.kind} ${show(body.subject)} — ${body.status}`),
      el("p", {}, `opened ${time(body.opened_at)}` + (body.resolved_at ? `, resolved ${time(body.resolved_at)}` : "")
        + ((body.runs || []).length ? `, runs ${body.runs.map((r) => r.run_id || r).join(", ")}` : "")),
      el("ol", {}, ...entries), body.elided ? el("p", {}, `${body.elided} entries elided`) : "");
  }

  // --- controls ---------------------------------------------------------------------------------------
  const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const filter = {};
    const types = list($("f-types").value), agents = list($("f-agents").value), sev = $("f-severity").value;
    if (types.length) filter.types = types;
    if (agents.length) filter.agents = agents;
    if (SEVERITIES.includes(sev)) filter.min_severity = sev;
    d.filter = Object.keys(filter).length ? filter : null;
    send({filter: d.filter});
  });
  $("pause").addEventListener("click", () => {
    d.paused = !d.paused;
    $("pause").setAttribute("aria-pressed", String(d.paused));
    $("pause").textContent = d.paused ? "Resume" : "Pause";
    if (!d.paused) renderEvents();
  });

  function filterFromAddress() {  // `/?agent=NAME` (one name, commas and all: the office links here), or
    const q = new URLSearchParams(location.search);  // `agents=a,b&types=agent.*,resource.*&severity=warning`
    const agents = q.has("agent") ? [q.get("agent")] : list(q.get("agents") || ""), types = list(q.get("types") || "");
    const severity = SEVERITIES.includes(q.get("severity")) ? q.get("severity") : "";
    $("f-agents").value = agents.join(", "); $("f-types").value = types.join(", "); $("f-severity").value = severity;
    const filter = {...(types.length && {types}), ...(agents.length && {agents}),
                    ...(severity && {min_severity: severity})};
    d.filter = Object.keys(filter).length ? filter : null;  // sent with the first frame of the stream
  }

  const controls = d.controls = window.dashboardControls({el, fill, time, api, $, dict, state: () => d.state,
    redraw: render, reloadRuns: scheduleRuns});
  d.mergePatch = mergePatch;
  filterFromAddress();
  d.reloadRuns = loadRuns;
  connect();
  loadRuns();
})();
