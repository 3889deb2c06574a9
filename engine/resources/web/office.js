/* The pixel office: live state from /ws (snapshot + RFC 7396 patches, resume), a floor plan sized to the fleet,
   sprites that show each agent's state, walks by BFS on the tile grid, meetings, speech bubbles, hover/click,
   a text view, and test hooks (window.office). docs/office.md says what each state looks like and why. */
"use strict";
const QUERY = new URLSearchParams(location.search);
const ZOOM = Math.max(1, Math.min(6, parseInt(QUERY.get("zoom") || "4", 10) || 4)), HOLD_MS = 2000, STEP_MS = 150;
const canvas = document.getElementById("office"), ctx = canvas.getContext("2d");
const MAX_SEEN = 200;  // desks for agents seen only in events, until the next snapshot says who is there
// Maps keyed by names from outside have no prototype: an agent called `__proto__` is a name like any other.
const dict = () => Object.create(null);
const parse = text => JSON.parse(text, (k, v) => (v && typeof v === "object" && !Array.isArray(v)
  ? Object.assign(dict(), v) : v));
const office = window.office = {state: parse('{"agents": {}, "problems": {}, "queue": {}, "runs": {}}'),
                                agents: dict(), frozen: false, clock: 0, plan: null, frames: 0};

function merge(target, patch) {  // RFC 7396
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = (target && typeof target === "object" && !Array.isArray(target)) ? target : dict();
  for (const [k, v] of Object.entries(patch)) { if (v === null) delete out[k]; else out[k] = merge(out[k], v); }
  return out;
}

// --- sprites: each grid is painted once at the zoom, then copied (drawImage) wherever it shows ---------------
const painted = {};
function paint(name) {
  if (painted[name]) return painted[name];
  const grid = ART[name], c = document.createElement("canvas"), g = c.getContext("2d");
  c.width = grid[0].length * ZOOM; c.height = grid.length * ZOOM;
  grid.forEach((row, y) => [...row].forEach((ch, x) => {
    if (ch === ".") return;
    g.fillStyle = ART.palette[ch]; g.fillRect(x * ZOOM, y * ZOOM, ZOOM, ZOOM);
  }));
  return (painted[name] = c);
}
function sprite(target, name, px, py) { target.drawImage(paint(name), px * ZOOM, py * ZOOM); }  // unzoomed px

// --- the floor plan, from the agents: rooms as tall as their desks need ---------------------------------------
function roomOf(a) { return a && a.room !== "overflow" && LAYOUT.rooms[a.room] ? a.room : "overflow"; }

function makePlan(names) {
  const members = Object.fromEntries(Object.keys(LAYOUT.rooms).map(r => [r, []]));  // the rooms are ours
  names.forEach(n => members[roomOf(office.state.agents[n])].push(n));
  const deskRows = r => Math.max(LAYOUT.minRows, Math.ceil(members[r].length / LAYOUT.perRow));
  const height = r => 2 + deskRows(r) * 3 + (LAYOUT.rooms[r].table ? 3 : 0);
  const rooms = {}, span = LAYOUT.roomWidth + LAYOUT.gap;
  let y = 1;
  for (const line of LAYOUT.grid) {
    const h = Math.max(...line.map(height));
    line.forEach((r, i) => { rooms[r] = {...LAYOUT.rooms[r], x: 1 + i * span, y, w: LAYOUT.roomWidth, h}; });
    y += h + LAYOUT.gap;
  }
  const seats = dict();
  for (const [r, list] of Object.entries(members)) {
    list.forEach((n, i) => {
      seats[n] = {x: rooms[r].x + 2 + (i % LAYOUT.perRow) * 4, y: rooms[r].y + 2 + Math.floor(i / LAYOUT.perRow) * 3};
    });
  }
  const m = rooms.meeting, table = {x: m.x + LAYOUT.table.dx, y: m.y + m.h - 3, w: LAYOUT.table.w}, spots = [];
  for (let k = 0; k < table.w; k += 2) spots.push({x: table.x + k, y: table.y - 1}, {x: table.x + k, y: table.y + 1});
  const walls = new Set();
  for (const seat of Object.values(seats)) for (let i = -1; i <= 1; i++) walls.add(`${seat.x + i},${seat.y + 1}`);
  for (let i = 0; i < table.w; i++) walls.add(`${table.x + i},${table.y}`);
  return {key: names.map(n => `${n}@${roomOf(office.state.agents[n])}`).join(","), rooms, seats, table, spots, walls,
          cols: 1 + LAYOUT.grid[0].length * span, rows: y,
          coffee: {x: LAYOUT.roomWidth + 1, y: rooms[LAYOUT.grid[0][0]].y + rooms[LAYOUT.grid[0][0]].h},
          window: {x: 6, y: 0}};
}

let floor = null;  // the plan drawn once: floors, labels, furniture, desks
function drawFloor(plan) {
  canvas.width = plan.cols * TILE * ZOOM; canvas.height = plan.rows * TILE * ZOOM;
  ctx.imageSmoothingEnabled = false;
  floor = document.createElement("canvas"); floor.width = canvas.width; floor.height = canvas.height;
  const g = floor.getContext("2d"), z = TILE * ZOOM;
  g.fillStyle = "#222034"; g.fillRect(0, 0, floor.width, floor.height);
  for (const r of Object.values(plan.rooms)) {
    g.fillStyle = r.floor; g.fillRect(r.x * z, r.y * z, r.w * z, r.h * z);
    g.fillStyle = "#cbdbfc"; g.font = `${4 * ZOOM}px sans-serif`;
    g.fillText(r.label, (r.x * TILE + 2) * ZOOM, (r.y * TILE + 6) * ZOOM);
    if (r.plant) sprite(g, "plant", (r.x + r.w - 2) * TILE + 1, (r.y + 1) * TILE);
    if (r.shelf) sprite(g, "shelf", (r.x + r.w - 2) * TILE, (r.y + 2) * TILE);
  }
  g.fillStyle = "#5fcde4"; g.fillRect(plan.window.x * z, 2 * ZOOM, 4 * z, 4 * ZOOM);
  sprite(g, "coffee", plan.coffee.x * TILE + 2, plan.coffee.y * TILE + 2);
  sprite(g, "table", plan.table.x * TILE, plan.table.y * TILE + 2);
  g.font = `${3 * ZOOM}px sans-serif`;
  for (const [name, seat] of Object.entries(plan.seats)) {  // each desk with its owner's name under it
    sprite(g, "desk", seat.x * TILE - 2, (seat.y + 1) * TILE);
    g.fillStyle = "#cbdbfc"; g.fillText(name.slice(0, 12), (seat.x * TILE - 2) * ZOOM, (seat.y * TILE + 17) * ZOOM);
  }
}

function bfs(from, to) {  // shortest path on the tile grid; desks and the table are in the way
  const plan = office.plan, key = p => `${p.x},${p.y}`, prev = new Map([[key(from), null]]), queue = [from];
  for (let head = 0; head < queue.length; head++) {
    const p = queue[head];
    if (p.x === to.x && p.y === to.y) break;
    for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      const n = {x: p.x + dx, y: p.y + dy};
      const outside = n.x < 0 || n.y < 0 || n.x >= plan.cols || n.y >= plan.rows;
      if (outside || prev.has(key(n)) || (plan.walls.has(key(n)) && key(n) !== key(to))) continue;
      prev.set(key(n), p); queue.push(n);
    }
  }
  const path = [];
  for (let p = to; p && prev.has(key(p)); p = prev.get(key(p))) path.unshift(p);
  return path.slice(1);
}

// --- what each agent is doing --------------------------------------------------------------------------------
function byAgent(items, nameOf) {
  const out = dict();
  for (const [id, item] of Object.entries(items || {})) {
    const name = item && nameOf(item);
    if (typeof name === "string") (out[name] = out[name] || []).push({id, ...item});
  }
  return out;
}

const asks = r => r.waiting === "approval";  // a run of it waits at an approve step for a person's answer

function visualState(a, problems, runs) {  // first that applies: docs/office.md
  if (a.state === "down" || (a.declared && !a.pid)) return "down";
  if (runs.some(asks)) return "waiting";
  if (a.degraded || (typeof a.score === "number" && a.score < 0.3) || problems.length) return "degraded";
  if (a.state === "learning") return "learning";
  if (a.state === "working" || a.task || runs.length) return "running";
  return "idle";
}

function bubbleFor(vis, problems, runs, a) {  // what a person should know
  if (problems.some(p => p.escalated_at)) return "escalated";
  if (runs.some(asks)) return "waiting for approval";
  if (a && a.state === "stopped") return "stopped by an operator";  // on purpose: nobody restarts it
  if (vis === "down") return runs.length || problems.length ? "restarting…" : "down";
  if (runs.length) return `${runs[0].playbook}…`;
  return "";
}

function meetings(names, runsOf) {  // agents on one pipeline (or one run) meet at the meeting-room table
  const groups = dict();
  for (const n of names) {
    const a = office.state.agents[n];
    if (visualState(a, [], []) === "down") continue;
    const keys = [...(a.pipeline ? [`pipeline ${a.pipeline}`] : []), ...(runsOf[n] || []).map(r => `run ${r.id}`)];
    for (const k of keys) (groups[k] = groups[k] || []).push(n);
  }
  const where = dict();
  Object.keys(groups).sort().forEach(k => {
    if (groups[k].length > 1) groups[k].forEach(n => { if (!(n in where)) where[n] = k; });
  });
  return where;
}

function sync() {
  const st = office.state, names = Object.keys(st.agents || {}).sort();
  const plan = makePlan(names);
  if (!office.plan || plan.key !== office.plan.key) {
    office.plan = plan; drawFloor(plan);
    for (const n of Object.keys(office.agents)) if (!plan.seats[n]) delete office.agents[n];
  }
  const runsOf = byAgent(st.runs, r => r.agent), problemsOf = byAgent(st.problems, p => (p.subject || {}).agent);
  const meet = meetings(names, runsOf), now = performance.now();
  let spot = 0;
  for (const name of names) {
    const a = st.agents[name], seat = office.plan.seats[name], runs = runsOf[name] || [];
    const problems = problemsOf[name] || [];
    let s = office.agents[name];
    if (!s) s = office.agents[name] = {name, x: seat.x, y: seat.y, path: [], state: "idle", since: -Infinity};
    const meeting = meet[name] || null;
    const target = meeting ? office.plan.spots[spot++ % office.plan.spots.length] : seat;
    const want = visualState(a, problems, runs);
    Object.assign(s, {seat, score: a.score, room: roomOf(a)});
    const changed = want !== s.state || meeting !== (s.meeting || null);
    if (changed && (now - s.since >= HOLD_MS || office.frozen)) {
      const was = s.state;
      Object.assign(s, {state: want, since: now, meeting, target});
      if (was === "down" && want !== "down") Object.assign(s, office.plan.coffee);  // walks in from the corridor
      s.path = office.frozen || want === "down" ? [] : bfs({x: s.x, y: s.y}, target);
      if (office.frozen || want === "down") Object.assign(s, {x: target.x, y: target.y});
    }
    s.pending = want !== s.state ? want : null;
    s.bubble = bubbleFor(s.state, problems, runs, a);
    s.doing = [s.meeting && `meeting on ${s.meeting}`, a.task,
      ...runs.map(r => `run ${r.playbook}` + (asks(r) ? ` waits for approval: ${r.message || ""}` : ""))]
      .filter(Boolean).join(" · ");
  }
  renderList();
}

let listed = "";
function renderList() {  // the text view: the same state for screen readers, rebuilt only when it reads differently
  const lines = Object.values(office.agents).map(s => `${s.name}: ${s.state}, score ` +
    `${typeof s.score === "number" ? s.score.toFixed(2) : "–"}${s.doing ? ` · ${s.doing}` : ""}` +
    `${s.bubble ? ` (${s.bubble})` : ""}`);
  if (lines.join("\n") === listed) return;
  listed = lines.join("\n");
  document.getElementById("list").replaceChildren(...lines.map(text => {
    const li = document.createElement("li"); li.textContent = text; return li;
  }));
}

// --- drawing -------------------------------------------------------------------------------------------------
function drawAgent(s) {
  const sx = s.seat.x * TILE, sy = s.seat.y * TILE, t = office.clock, blink = Math.floor(t / 400) % 2;
  const here = s.x === s.seat.x && s.y === s.seat.y, px = s.x * TILE, py = s.y * TILE;
  if (s.state !== "down") sprite(ctx, "person", px, py - 4);  // feet at the bottom of its tile
  sprite(ctx, "screen", sx + 1, sy + 4);
  if (s.bubble) bubble(s.bubble, s.state === "down" ? sx : px, (s.state === "down" ? sy : py) - 12);
  if (s.state === "down" || s.path.length) return;
  if (!here) {  // at the meeting table or the coffee machine
    if (s.meeting) sprite(ctx, "doc", px + 6, py + 1);
    return;
  }
  if (s.state === "running" && Math.floor(t / 3000) % 2) sprite(ctx, "doc", sx + 6, sy + 1);  // reading docs
  else if (s.state === "running") sprite(ctx, "hand", sx + blink * 6, sy + 4);  // typing, left and right
  if (s.state === "idle") sprite(ctx, "cup", sx + 8, sy + 6);
  if (s.state === "waiting") sprite(ctx, "hourglass", sx + 8, sy + 3);  // hands still, an hourglass by them
  if (s.state === "learning") { sprite(ctx, "book", sx + 2, sy + 5); sprite(ctx, "pencil", sx + 7, sy + 3 + blink); }
  if (s.state === "degraded") {  // scratching its head, smoke over it
    sprite(ctx, "hand", sx, sy - 4 - blink); sprite(ctx, "smoke", sx + 1, sy - 10 - blink);
  }
}

function bubble(text, px, py) {  // a speech bubble: what a person should know
  ctx.font = `${4 * ZOOM}px sans-serif`;
  const w = ctx.measureText(text).width + 8;
  ctx.fillStyle = "#ffffff"; ctx.fillRect(px * ZOOM, (py - 5) * ZOOM, w, 6 * ZOOM);
  ctx.fillStyle = "#222034"; ctx.fillText(text, px * ZOOM + 4, (py - 1) * ZOOM);
}

const drawTimes = [];
function draw() {
  if (!floor) return;
  const started = performance.now();
  ctx.drawImage(floor, 0, 0);
  Object.values(office.agents).forEach(drawAgent);
  drawTimes.push(performance.now() - started);
  if (drawTimes.length > 600) drawTimes.shift();
}

let last = performance.now();
function frame(now) {
  if (!office.frozen) {
    const before = office.clock;
    office.clock += Math.min(now - last, 1000);
    const steps = Math.floor(office.clock / STEP_MS) - Math.floor(before / STEP_MS);
    for (let i = 0; i < steps; i++) step();
    if (steps) sync();  // held states show once their hold lapses
  }
  last = now; draw(); office.frames += 1; requestAnimationFrame(frame);
}

function step() {  // one tile along each walker's path, every STEP_MS
  for (const s of Object.values(office.agents)) {
    wander(s);
    if (s.path.length) Object.assign(s, s.path.shift());
  }
}

function wander(s) {  // an idle agent now and then fetches a coffee or looks out of the window, then comes back
  const atSeat = s.x === s.seat.x && s.y === s.seat.y;
  if (s.state !== "idle" || s.path.length || !atSeat || office.clock < (s.rested || 0)) return;
  if (!s.rested) { s.rested = office.clock + 2000 + (s.name.length % 5) * 500; return; }
  const plan = office.plan, to = Math.floor(office.clock / 7000) % 2 ? plan.coffee : {x: plan.window.x + 1, y: 0};
  s.path = [...bfs(s.seat, to), ...bfs(to, s.seat)];
  s.rested = office.clock + s.path.length * STEP_MS + 8000;
}

// --- hooks for tests and the benchmark -----------------------------------------------------------------------
function area(s) {  // the desk, the person at it, and the smoke over its head (the bubble is above it)
  return [(s.seat.x * TILE - 2) * ZOOM, (s.seat.y * TILE - 11) * ZOOM, 12 * ZOOM, 23 * ZOOM];
}

office.freeze = on => {
  office.frozen = !!on;
  if (on) {  // every character at its place, clock at 0: a frame depends on the state only
    office.clock = 0;
    for (const s of Object.values(office.agents)) {
      const to = s.target || s.seat;
      Object.assign(s, {path: [], x: to.x, y: to.y, rested: 0});
    }
  }
  sync(); draw();
};
office.signature = name => {  // pixels per palette colour in the agent's sprite area, "k:12 s:30 ..."
  const s = office.agents[name]; if (!s) return "";
  draw();
  const data = ctx.getImageData(...area(s)).data, hex = {}, counts = {};
  for (const [k, v] of Object.entries(ART.palette)) hex[v] = k;
  for (let i = 0; i < data.length; i += 4) {
    const c = "#" + [data[i], data[i + 1], data[i + 2]].map(v => v.toString(16).padStart(2, "0")).join("");
    if (hex[c]) counts[hex[c]] = (counts[hex[c]] || 0) + 1;
  }
  return Object.keys(counts).sort().map(k => `${k}:${counts[k]}`).join(" ");
};
office.measure = ms => new Promise(done => {  // frames per second of the live page, and what one draw costs
  const frames = office.frames, from = performance.now();
  drawTimes.length = 0;
  setTimeout(() => {
    const sorted = [...drawTimes].sort((a, b) => a - b), q = f => sorted[Math.floor(f * (sorted.length - 1))] || 0;
    done({fps: (office.frames - frames) * 1000 / (performance.now() - from), draw_ms_p50: q(0.5),
          draw_ms_p95: q(0.95), agents: Object.keys(office.agents).length});
  }, ms);
});
office.center = name => {  // page coordinates of an agent's person, for hover and click in tests
  const s = office.agents[name], r = canvas.getBoundingClientRect();
  return s && {x: r.left + (s.x * TILE + 4) * ZOOM, y: r.top + (s.y * TILE + 2) * ZOOM};
};

function at(ev) {
  const r = canvas.getBoundingClientRect(), x = (ev.clientX - r.left) / ZOOM / TILE;
  const y = (ev.clientY - r.top) / ZOOM / TILE;
  const near = (p, h) => x >= p.x - 0.25 && x <= p.x + 1.25 && y >= p.y - 0.5 && y <= p.y + h;
  const all = Object.values(office.agents);
  return all.find(s => s.state !== "down" && near(s, 1)) || all.find(s => near(s.seat, 1.5));
}
canvas.addEventListener("mousemove", ev => {
  const s = at(ev), tip = document.getElementById("tip");
  tip.style.display = s ? "block" : "none";
  if (!s) return;
  tip.textContent = `${s.name} · ${s.state} · score ${typeof s.score === "number" ? s.score.toFixed(2) : "–"}` +
    (s.doing ? ` · ${s.doing}` : "");
  tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + "px";
});
canvas.addEventListener("click", ev => {
  const s = at(ev);
  if (s) location.href = "/?agent=" + encodeURIComponent(s.name);  // the dashboard filters its events by it
});

// --- the stream ----------------------------------------------------------------------------------------------
let resume = "";
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = office.ws = new WebSocket(`${scheme}://${location.host}/ws${resume}`);
  ws.onopen = () => { document.getElementById("conn").textContent = "live"; };
  ws.onmessage = msg => {
    const f = parse(msg.data);
    if (f.seq === undefined) return;
    resume = `?resume=${encodeURIComponent(f.epoch)}:${f.seq}`;
    office.epoch = f.epoch; office.seq = f.seq;
    office.state = f.snapshot ? f.state : merge(office.state, f.state);
    let room = MAX_SEEN - Object.keys(office.state.agents).length;
    for (const e of f.events || []) {  // seen only in events: a desk in the open space too (a bounded number)
      if (typeof e.agent !== "string" || office.state.agents[e.agent] || room <= 0) continue;
      office.state.agents[e.agent] = Object.assign(dict(), {name: e.agent, declared: false});
      room -= 1;
    }
    sync(); draw();
  };
  ws.onclose = () => { document.getElementById("conn").textContent = "reconnecting…"; setTimeout(connect, 1000); };
}
connect();
requestAnimationFrame(frame);
