/* The pixel office: live state from /ws (snapshot + RFC 7396 patches, resume), sprites that show each agent's
   state, walking by BFS on the tile grid, hover/click, a text view, and test hooks (window.office). */
"use strict";
const ZOOM = 3, HOLD_MS = 2000;
const canvas = document.getElementById("office"), ctx = canvas.getContext("2d");
canvas.width = LAYOUT.cols * TILE * ZOOM; canvas.height = LAYOUT.rows * TILE * ZOOM;
ctx.imageSmoothingEnabled = false;
const office = window.office = {state: {agents: {}, problems: {}, queue: {}}, agents: {}, frozen: false, clock: 0};

function merge(target, patch) {  // RFC 7396
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = (target && typeof target === "object" && !Array.isArray(target)) ? target : {};
  for (const [k, v] of Object.entries(patch)) { if (v === null) delete out[k]; else out[k] = merge(out[k], v); }
  return out;
}

function visualState(name, a) {
  if (a.state === "down" || (a.declared && !a.pid)) return "down";
  const problem = Object.values(office.state.problems || {})
    .some(p => JSON.stringify(p.subject || p).includes(`"${name}"`));
  if (a.degraded || (typeof a.score === "number" && a.score < 0.3) || problem) return "degraded";
  if (a.state === "learning") return "learning";
  if (a.state === "working" || a.task) return "running";
  return "idle";
}

function seatFor(room, index) {
  const r = LAYOUT.rooms[room] || LAYOUT.rooms.overflow;
  return {x: r.x + 2 + (index % 3) * 4, y: r.y + 2 + Math.floor(index / 3) * 3};
}

function blocked() {
  const set = new Set();
  for (const a of Object.values(office.agents)) {
    for (let i = 0; i < 3; i++) set.add(`${a.seat.x - 1 + i},${a.seat.y + 1}`);
  }
  return set;
}

function bfs(from, to) {  // shortest path on the tile grid, desks are in the way
  const walls = blocked(), key = p => `${p.x},${p.y}`, prev = new Map([[key(from), null]]), queue = [from];
  while (queue.length) {
    const p = queue.shift();
    if (p.x === to.x && p.y === to.y) break;
    for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      const n = {x: p.x + dx, y: p.y + dy};
      const outside = n.x < 0 || n.y < 0 || n.x >= LAYOUT.cols || n.y >= LAYOUT.rows;
      if (outside || prev.has(key(n)) || walls.has(key(n))) continue;
      prev.set(key(n), p); queue.push(n);
    }
  }
  const path = [];
  for (let p = to; p && prev.has(key(p)); p = prev.get(key(p))) path.unshift(p);
  return path;
}

function bubbleFor(a, vis) {
  if (vis === "down") return a.declared ? "restarting…" : "";
  const mine = Object.values(office.state.problems || {}).filter(p => JSON.stringify(p).includes(`"${a.name}"`));
  if (mine.some(p => p.status === "escalated")) return "escalated";
  return "";
}

function sync() {
  const names = Object.keys(office.state.agents || {}).sort(), counts = {};
  names.forEach(name => {
    const a = office.state.agents[name], room = LAYOUT.rooms[a.room] ? a.room : "overflow";
    counts[room] = (counts[room] || 0) + 1;
    let s = office.agents[name];
    if (!s) {
      const seat = seatFor(room, counts[room] - 1);
      s = office.agents[name] = {name, seat, x: seat.x, y: seat.y, path: [], state: "idle", since: 0};
    }
    Object.assign(s, {score: a.score, room});
    const want = visualState(name, a);
    if (want !== s.state && (Date.now() - s.since >= HOLD_MS || office.frozen)) {
      const was = s.state;
      s.state = want; s.since = Date.now();
      if (was === "down" && want !== "down") { s.x = LAYOUT.coffee.x; s.y = LAYOUT.coffee.y; }
      s.path = office.frozen ? [] : bfs({x: s.x, y: s.y}, s.seat);
      if (office.frozen) { s.x = s.seat.x; s.y = s.seat.y; }
    }
    s.pending = want !== s.state ? want : null;
    s.bubble = bubbleFor(a, s.state);
  });
  renderList();
}

function renderList() {
  const list = document.getElementById("list"); list.textContent = "";
  for (const s of Object.values(office.agents)) {
    const li = document.createElement("li");
    li.textContent = `${s.name}: ${s.state}, score ${typeof s.score === "number" ? s.score.toFixed(2) : "–"}` +
      (s.bubble ? ` (${s.bubble})` : "");
    list.appendChild(li);
  }
}

function sprite(grid, px, py) {  // px, py in unzoomed pixels
  grid.forEach((row, y) => [...row].forEach((ch, x) => {
    if (ch === ".") return;
    ctx.fillStyle = ART.palette[ch]; ctx.fillRect((px + x) * ZOOM, (py + y) * ZOOM, ZOOM, ZOOM);
  }));
}

function drawAgent(s) {
  const sx = s.seat.x * TILE, sy = s.seat.y * TILE, t = office.clock, blink = Math.floor(t / 400) % 2;
  const here = s.x === s.seat.x && s.y === s.seat.y;
  if (s.state !== "down" || !here) sprite(ART.person, s.x * TILE + 4, s.y * TILE + 2);
  sprite(ART.desk, sx - 2, sy + TILE);
  sprite(ART.screen, sx + 5, sy + TILE - 4);
  if (s.bubble) bubble(s.bubble, sx, sy - 8);
  if (!here || s.state === "down") return;
  if (s.state === "running") sprite(ART.hand, sx + 4 + blink * 6, sy + 12);
  if (s.state === "idle") sprite(ART.cup, sx + 12, sy + 10);
  if (s.state === "learning") sprite(ART.book, sx + 6, sy + 11);
  if (s.state === "degraded") { sprite(ART.hand, sx + 3, sy + 1 - blink); sprite(ART.smoke, sx + 5, sy - 5 - blink); }
}

function bubble(text, px, py) {  // a speech bubble: what a person should know
  ctx.font = "14px sans-serif";
  const w = ctx.measureText(text).width + 8;
  ctx.fillStyle = "#ffffff"; ctx.fillRect(px * ZOOM, (py - 6) * ZOOM, w, 20);
  ctx.fillStyle = "#222034"; ctx.fillText(text, px * ZOOM + 4, (py - 6) * ZOOM + 15);
}

function draw() {
  ctx.fillStyle = "#222034"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const r of Object.values(LAYOUT.rooms)) {
    const z = TILE * ZOOM;
    ctx.fillStyle = r.floor; ctx.fillRect(r.x * z, r.y * z, r.w * z, r.h * z);
    ctx.fillStyle = "#cbdbfc"; ctx.font = "14px sans-serif";
    ctx.fillText(r.label, (r.x * TILE + 4) * ZOOM, (r.y * TILE + 10) * ZOOM);
  }
  ctx.fillStyle = "#5fcde4"; ctx.fillRect(LAYOUT.window.x * TILE * ZOOM, 0, 4 * TILE * ZOOM, 6 * ZOOM);
  sprite(ART.coffee, LAYOUT.coffee.x * TILE + 6, LAYOUT.coffee.y * TILE + 6);
  sprite(ART.plant, LAYOUT.plant.x * TILE, LAYOUT.plant.y * TILE);
  Object.values(office.agents).forEach(drawAgent);
}

let last = 0;
function frame(now) {
  if (!office.frozen) {
    office.clock += now - last;
    if (Math.floor(office.clock / 250) !== Math.floor((office.clock - (now - last)) / 250)) step();
    sync();
  }
  last = now; draw(); requestAnimationFrame(frame);
}

function step() {  // one tile along each walker's path, four tiles a second
  for (const s of Object.values(office.agents)) {
    wander(s);
    if (s.path.length) Object.assign(s, s.path.shift());
  }
}

function wander(s) {  // an idle agent now and then fetches a coffee or looks out of the window, then comes back
  const atSeat = s.x === s.seat.x && s.y === s.seat.y;
  if (s.state !== "idle" || s.path.length || !atSeat || office.clock < (s.rested || 0)) return;
  if (!s.rested) { s.rested = office.clock + 2000 + (s.name.length % 5) * 500; return; }
  const spot = Math.floor(office.clock / 7000) % 2 ? LAYOUT.coffee : {x: LAYOUT.window.x + 1, y: 1};
  s.path = [...bfs(s.seat, spot), ...bfs(spot, s.seat)];
  s.rested = office.clock + s.path.length * 250 + 8000;
}

function area(s) { return [(s.seat.x * TILE - 2) * ZOOM, (s.seat.y * TILE - 8) * ZOOM, 20 * ZOOM, 40 * ZOOM]; }

office.freeze = on => {
  office.frozen = !!on;
  if (on) {  // every character at its desk, clock at 0: a frame depends on the state only
    office.clock = 0;
    for (const s of Object.values(office.agents)) Object.assign(s, {path: [], x: s.seat.x, y: s.seat.y, rested: 0});
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

function at(ev) {
  const r = canvas.getBoundingClientRect(), x = (ev.clientX - r.left) / ZOOM / TILE;
  const y = (ev.clientY - r.top) / ZOOM / TILE;
  return Object.values(office.agents)
    .find(s => x >= s.seat.x - 0.2 && x <= s.seat.x + 1.2 && y >= s.seat.y - 0.5 && y <= s.seat.y + 2);
}
canvas.addEventListener("mousemove", ev => {
  const s = at(ev), tip = document.getElementById("tip");
  tip.style.display = s ? "block" : "none";
  if (!s) return;
  tip.textContent = `${s.name} · ${s.state} · score ${typeof s.score === "number" ? s.score.toFixed(2) : "–"}`;
  tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + "px";
});
canvas.addEventListener("click", ev => {
  const s = at(ev);
  if (s) location.href = "/?agent=" + encodeURIComponent(s.name);  // the dashboard filters by it
});

let resume = "";
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${resume}`);
  ws.onopen = () => { document.getElementById("conn").textContent = "live"; };
  ws.onmessage = msg => {
    const f = JSON.parse(msg.data);
    if (f.seq === undefined) return;
    resume = `?resume=${encodeURIComponent(f.epoch)}:${f.seq}`;
    office.state = f.snapshot ? f.state : merge(office.state, f.state);
    for (const e of f.events || []) {  // seen only in events: a desk in the open space too
      if (e.agent && !office.state.agents[e.agent]) office.state.agents[e.agent] = {name: e.agent, declared: false};
    }
    sync(); draw();
  };
  ws.onclose = () => { document.getElementById("conn").textContent = "reconnecting…"; setTimeout(connect, 1000); };
}
connect();
requestAnimationFrame(frame);
