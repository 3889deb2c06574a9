// Operator controls in the dashboard (docs/dashboard.md, docs/controls.md): the pause and its banner, silences,
// runtime disables, maintenance windows, approvals, and the buttons on agents, playbooks and runs. Every button
// posts JSON with the session's cookie and says the engine's answer, a refusal included; the live state (`/ws`)
// keeps the page current, and a control that succeeded reads `GET /api/controls` at once so it shows without
// waiting for the next frame. Data from the engine only ever becomes text.
"use strict";
window.dashboardControls = (ui) => {
  const {el, fill, time, api, $, dict} = ui;
  const ACTOR = "dashboard";  // who the control events name: `dashboard via <address>`
  const REASON = {key: "reason", label: "Reason", required: true};
  const NOTE = {key: "reason", label: "Reason"};  // where the engine takes a reason but does not need one
  const FOR = {key: "for", label: "For", placeholder: "30m, 2h, 1d (empty: until lifted)"};
  const answered = new Set();  // approvals answered from this page (run@expires), until the state drops them
  const path = (...parts) => "/api/" + parts.map(encodeURIComponent).join("/");

  // --- asking a person: one modal dialog (focus stays in it, Escape cancels), fields built per question -------
  function ask(title, detail, fields) {
    const dialog = $("ask");
    $("ask-title").textContent = title;
    $("ask-detail").textContent = detail || "";
    const inputs = fields.map((f) => el("input", {id: "ask-" + f.key, name: f.key, maxlength: "500", size: "40",
      placeholder: f.placeholder || "", ...(f.required ? {required: "", "aria-required": "true"} : {})}));
    fill($("ask-fields"), fields.map((f, i) => el("p", {}, el("label", {for: "ask-" + f.key},
      f.label + (f.required ? " (required)" : "")), " ", inputs[i])));
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((done) => dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") { done(null); return; }
      const out = {};
      fields.forEach((f, i) => { const v = inputs[i].value.trim(); if (v) out[f.key] = v; });
      done(out);
    }, {once: true}));
  }

  // --- telling what happened ----------------------------------------------------------------------------------
  function say(ok, status, text) {
    fill($("control-answer"), [el("span", {class: ok ? "done" : "refused", id: "control-said",
      "data-status": String(status), "data-ok": String(ok)}, text)]);
  }

  /** POST (or DELETE) `body` as JSON; the answer's body when the engine did it, else null (the refusal said). */
  async function act(what, url, body, method = "POST") {
    let status, answer;
    try {
      ({status, body: answer} = await api(url, {method, body: JSON.stringify(body || {}),
        headers: {"Content-Type": "application/json", "X-AIOS-Actor": ACTOR}}));
    } catch (err) {
      say(false, 0, `${what} failed: the engine did not answer (${err.message})`);
      return null;
    }
    const aside = answer.outcome === "set_aside";  // a manual action the guards held (202, but nothing runs)
    if (status >= 300 || aside) {
      const where = answer.pointer ? ` (at ${answer.pointer})` : "";
      say(false, status, `${what} ` + (aside ? `set aside: ${answer.reason || ""} — ${answer.detail || ""}`
        : `refused (${status}): ${answer.error || ""}${where}`));
      return null;
    }
    const outcome = answer.outcome || answer.answer || answer.status || "ok";
    const run = answer.run_id ? ` (run ${answer.run_id}, ${outcome})` : "";
    say(true, status, `${what}: done${run}`);
    refresh();
    return answer;
  }

  async function refresh() {  // the controls as they are now, without waiting for the next frame
    const {status, body} = await api("/api/controls");
    if (status !== 200) return;
    const state = ui.state();
    state.controls = Object.assign(dict(), body, {silences: body.silences.slice(0, 50),
                                                 silences_total: body.silences.length});
    ui.redraw();
    ui.reloadRuns();
  }

  async function askThen(title, detail, fields, what, url, method) {
    const body = await ask(title, detail, fields);
    return body === null ? null : act(what, url, body, method);
  }

  // --- the buttons the other tables carry ---------------------------------------------------------------------
  const button = (label, cls, data, onclick) => el("button", {type: "button", class: cls, ...data, onclick}, label);

  function agentButtons(a) {
    if (!a.declared) return [];
    const name = a.name;
    if (a.state === "stopped") {  // an operator's stop: only start brings it back
      return [button("Start…", "start", {"data-agent": name, "aria-label": `start ${name}`}, () =>
        askThen(`Start ${name}`, "Ends the stop, then restarts it through the guards.", [NOTE],
                `start of ${name}`, path("agents", name, "start")))];
    }
    return [button("Restart…", "restart", {"data-agent": name, "aria-label": `restart ${name}`}, () =>
      askThen(`Restart ${name}`, "Through the loop guard, breaker and budget, like a playbook.", [NOTE],
              `restart of ${name}`, path("agents", name, "restart"))),
    " ", button("Stop…", "stop", {"data-agent": name, "aria-label": `stop ${name}`}, () =>
      askThen(`Stop ${name}`, "Kills it and keeps it stopped, across engine restarts, until started: "
              + "no playbook brings it back meanwhile.", [REASON], `stop of ${name}`, path("agents", name, "stop"))),
    " ", button("Reset budget…", "budget", {"data-agent": name, "aria-label": `reset ${name}'s budget`}, () =>
      askThen(`Reset the remediation budget of ${name}`, "Forgets the runs counted against it.", [REASON],
              `budget reset of ${name}`, path("budget", name, "reset")))];
  }

  function playbookButtons(id, p, types) {
    const held = (ui.state().controls || {}).disabled || {};
    const out = [id in held
      ? button("Enable", "enable", {"data-playbook": id, "aria-label": `enable ${id}`}, () =>
        askThen(`Enable ${id}`, "", [NOTE], `enable of ${id}`, path("playbooks", id, "enable")))
      : button("Disable…", "disable", {"data-playbook": id, "aria-label": `disable ${id}`}, () =>
        askThen(`Disable ${id}`, "Its decisions are set aside (reason disabled) until enabled or the time is up.",
                [REASON, FOR], `disable of ${id}`, path("playbooks", id, "disable")))];
    out.push(" ", button("Run now…", "trigger", {"data-playbook": id, "aria-label": `run ${id} now`}, async () => {
      const type = (types[id] || []).find((t) => !/[*?[]/.test(t)) || "";
      const body = await ask(`Run ${id} now`, "For a stored event (its id), or for a new event of type " +
        `${type || "(give one)"} about the agent given.`, [REASON, {key: "event", label: "Event id"},
        {key: "agent", label: "Agent"}, {key: "type", label: "Type", placeholder: type}]);
      if (body === null) return;
      const fields = {type: body.type || type, ...(body.agent ? {agent: body.agent} : {})};
      act(`run of ${id}`, path("playbooks", id, "trigger"),
          body.event ? {event: body.event, reason: body.reason} : {fields, reason: body.reason});
    }));
    if (p.circuit && p.circuit !== "closed") {
      out.push(" ", button("Reset breaker…", "breaker", {"data-playbook": id, "aria-label": `reset ${id}'s breaker`},
        () => askThen(`Reset the circuit breaker of ${id}`, "", [REASON], `breaker reset of ${id}`,
                      path("breakers", id, "reset"))));
    }
    return out;
  }

  function cancelButton(id) {
    return button("Cancel…", "cancel", {"data-run": id, "aria-label": `cancel run ${id}`}, () =>
      askThen(`Cancel run ${id}`, "Kills its steps' processes and restores its snapshot.", [NOTE],
              `cancel of ${id}`, path("runs", id, "cancel")));
  }

  function rerunButton(id) {
    return button("Re-run…", "rerun", {"data-run": id, "aria-label": `re-run ${id}`}, () =>
      askThen(`Re-run ${id}`, "A new run of the same playbook for the same event, through the guards.", [],
              `re-run of ${id}`, path("runs", id, "rerun")));
  }

  // --- the sections -------------------------------------------------------------------------------------------
  let drawn = "";
  function render() {
    const state = ui.state(), c = state.controls || {};
    const key = JSON.stringify([c, waiting(state).map((w) => [w.id, w.expires_at, answered.has(tag(w))])]);
    if (key === drawn) return;  // rows rebuilt only when they read differently: focus stays where it was
    drawn = key;
    renderPause(c.paused, (c.maintenance || []).filter((w) => w.open));
    renderSilences(c.silences || [], c.silences_total || 0);
    renderDisabled(c.disabled || {});
    renderWindows(c.maintenance || []);
    renderApprovals(waiting(state));
  }

  function renderPause(paused, open) {
    const banner = $("paused-banner");
    banner.hidden = !paused && !open.length;
    fill(banner, [paused ? el("p", {id: "paused-line"}, `Automation paused by ${paused.by} since ${time(paused.since)}`
      + ` — ${paused.reason} — ` + (paused.until ? `until ${time(paused.until)}` : "until resumed")) : "",
    ...open.map((w) => el("p", {class: "window-line"}, `Maintenance window ${w.name} open until ${time(w.open_until)}`
      + (w.reason ? ` — ${w.reason}` : "")))]);
    $("pause-state").textContent = paused ? `paused by ${paused.by}: ${paused.reason}` +
      (paused.until ? ` (until ${time(paused.until)})` : " (until resumed)") : "on";
    $("ctl-pause").hidden = !!paused;
    $("ctl-resume").hidden = !paused;
  }

  const matchers = (s) => [["agent", s.agent], ["playbook", s.playbook], ["type", s.type]]
    .filter(([, v]) => v).map(([k, v]) => `${k}=${v}`)
    .concat(Object.entries(s.labels || {}).map(([k, v]) => `label ${k}=${v}`)).join(" ");

  function renderSilences(silences, total) {
    fill($("silences"), silences.map((s) => el("tr", {"data-silence": s.id},
      el("td", {}, matchers(s)), el("td", {}, s.state),
      el("td", {}, (s.state === "pending" ? `from ${time(s.starts_at)} ` : "") + `until ${time(s.ends_at)}`),
      el("td", {}, s.reason), el("td", {}, s.by),
      el("td", {}, s.state === "expired" ? "" : button("Expire…", "expire",
        {"data-silence": s.id, "aria-label": `expire silence ${matchers(s)}`}, () =>
          askThen(`Expire the silence ${matchers(s)}`, "", [NOTE], `expiry of silence ${s.id}`,
                  path("silences", s.id), "DELETE"))))));
    $("silences-note").textContent = total > silences.length ? `the first ${silences.length} of ${total}` : "";
  }

  function renderDisabled(disabled) {
    fill($("disabled"), Object.entries(disabled).map(([id, h]) => el("tr", {"data-playbook": id},
      el("th", {scope: "row"}, id), el("td", {}, h.until ? time(h.until) : "until enabled"), el("td", {}, h.reason),
      el("td", {}, h.by), el("td", {}, button("Enable", "enable", {"data-playbook": id, "aria-label": `enable ${id}`},
        () => askThen(`Enable ${id}`, "", [NOTE], `enable of ${id}`, path("playbooks", id, "enable")))))));
  }

  function renderWindows(windows) {
    fill($("maintenance"), windows.map((w) => el("tr", {"data-window": w.name},
      el("th", {scope: "row"}, w.name), el("td", {}, `${w.schedule} (${w.timezone})`),
      el("td", {class: w.open ? "open" : ""},
         w.open ? `open until ${time(w.open_until)}` : `next ${time(w.next_start)}`),
      el("td", {}, w.reason || ""))));
  }

  const tag = (w) => `${w.id}@${w.expires_at}`;
  function waiting(state) {
    return Object.entries(state.runs || {}).filter(([, r]) => r && r.waiting === "approval")
      .map(([id, r]) => ({id, ...r})).sort((a, b) => String(a.expires_at).localeCompare(String(b.expires_at)));
  }

  function renderApprovals(list) {
    fill($("approvals"), list.map((w) => {
      const done = answered.has(tag(w)), answer = (approved) => async () => {
        const verb = approved ? "approve" : "deny";
        const said = await askThen(`${approved ? "Approve" : "Deny"} run ${w.id}`, w.message, [NOTE],
                                   `${verb} of ${w.id}`, path("runs", w.id, verb));
        if (said) { answered.add(tag(w)); drawn = ""; render(); }
      };
      return el("tr", {"data-run": w.id}, el("td", {}, w.message || ""), el("td", {}, w.agent || ""),
        el("td", {}, w.playbook || ""), el("td", {}, time(w.expires_at)),
        el("td", {}, done ? "answered" : button("Approve…", "approve", {"data-run": w.id,
          "aria-label": `approve run ${w.id}`}, answer(true)), " ", done ? "" : button("Deny…", "deny",
          {"data-run": w.id, "aria-label": `deny run ${w.id}`}, answer(false))));
    }));
    $("approvals-none").hidden = list.length > 0;
  }

  // --- the forms of the controls section ----------------------------------------------------------------------
  $("ctl-pause").addEventListener("click", () => askThen("Pause automation", "Events are still matched and " +
    "recorded; nothing runs until resumed.", [REASON, FOR], "pause", "/api/pause"));
  $("ctl-resume").addEventListener("click", () => askThen("Resume automation", "Problems the pause held are " +
    "decided again.", [NOTE], "resume", "/api/resume"));
  $("silence-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const k of ["agent", "playbook", "type", "for", "reason"]) {
      const v = $("s-" + k).value.trim();
      if (v) body[k] = v;
    }
    if (await act("silence", "/api/silences", body)) $("silence-form").reset();
  });

  return {render, agentButtons, playbookButtons, cancelButton, rerunButton, ask};
};
