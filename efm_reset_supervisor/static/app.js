// The operator page: renders the supervisor's fleet snapshot (server-sent events) and sends commands.
// Authentication is the efm_operator cookie the server set when the page was opened with ?token=.
"use strict";

const ACTION_TEXT = { reset_done: "Reset done", label_success: "\u2713 Success", label_failure: "\u2717 Failure",
                      pause: "Pause", resume: "Resume", estop: "E-STOP" };
let snapshot = null;
let selected = 0;            // index of the selected robot, for keyboard shortcuts
let receivedAt = 0;          // performance.now() of the snapshot, to keep times in state moving

const $ = (id) => document.getElementById(id);

function fmtDuration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function notice(text, bad) {
  const n = $("notice");
  n.textContent = text;
  n.style.color = bad ? "var(--bad)" : "var(--muted)";
}

async function post(path, body) {
  try {
    const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                  body: body ? JSON.stringify(body) : undefined, credentials: "same-origin" });
    const answer = await r.json();
    const list = Array.isArray(answer) ? answer : [answer];
    const text = list.map((a) => a.detail || `${a.robot || ""} ${a.action || ""}: ${a.outcome} ${a.message || ""}`);
    notice(text.join(" | "), !r.ok);
  } catch (e) {
    notice(`not sent: ${e}`, true);
  }
}

function command(robot, action, episodeId) {
  return post(`/api/robots/${encodeURIComponent(robot)}/${action}`, episodeId ? { episode_id: episodeId } : null);
}

function tileFor(t, index) {
  const detector = t.detector.steps_to_go === null ? "-" :
    `${t.detector.steps_to_go.toFixed(1)} steps to go${t.detector.success ? ", success" : ""}`;
  const last = t.last_episode ? `${t.last_episode.outcome}` + (t.last_episode.label ? `, labelled ${t.last_episode.label}` : "") : "-";
  const buttons = el("div", { class: "buttons" });
  const resumeOrPause = t.actions.includes("resume") ? "resume" : "pause";
  for (const action of ["reset_done", "label_success", "label_failure", resumeOrPause, "estop"]) {
    const label = action.startsWith("label_") && t.last_episode ? t.last_episode.episode_id : t.episode_id;
    const b = el("button", { class: action === "estop" ? "estop" : action === "reset_done" ? "done" : "",
                             "data-action": action, "data-robot": t.robot,
                             onclick: () => command(t.robot, action, label) }, ACTION_TEXT[action]);
    b.disabled = !t.actions.includes(action) || t.in_flight.includes(action);
    buttons.append(b);
  }
  const img = el("img", { alt: `${t.robot} camera`, src: t.thumbnail_seq ?
    `/api/robots/${encodeURIComponent(t.robot)}/thumbnail?seq=${t.thumbnail_seq}` : "data:," });
  const age = t.time_in_state_s + (performance.now() - receivedAt) / 1000;
  return el("section", { class: `tile ${t.state}${t.stale ? " stale" : ""}${index === selected ? " selected" : ""}`,
                         id: `tile-${t.robot}`, "data-state": t.state, onclick: () => { selected = index; render(); } },
    el("h3", {}, el("span", {}, `${index + 1}. ${t.robot}`),
       t.stale ? el("span", { class: "stale-badge" }, "STALE") : ""),
    el("div", {}, el("span", { class: "state" }, t.state.replace("_", " ")), ` for `,
       el("span", { class: "age", "data-base": t.time_in_state_s }, fmtDuration(age)),
       t.queue_position ? `  \u2022 #${t.queue_position} in queue` : "", t.auto_reset ? "  \u2022 auto reset" : ""),
    img,
    el("div", { class: "meta" }, "Instruction: ", el("b", {}, t.instruction || "-")),
    el("div", { class: "meta" }, "Detector: ", el("b", {}, detector)),
    el("div", { class: "meta" }, "Last episode: ", el("b", {}, last)),
    el("div", { class: "meta" }, "Policy: ", el("b", {}, t.policy_version || "-"), `  steps ${t.steps}`),
    t.message ? el("div", { class: "meta" }, t.message) : "",
    t.last_command ? el("div", { class: "meta" }, "Last command: ", t.last_command) : "",
    buttons);
}

function renderTotals(s) {
  const t = s.totals;
  const rates = Object.entries(t.success_rate_by_policy)
    .map(([v, e]) => `${v} ${(100 * e.success_rate).toFixed(0)}% of ${e.episodes}`).join(", ") || "-";
  const perRobot = Object.keys(t.waiting_for_human_s_per_robot).length || 1;
  $("totals").innerHTML = "";
  $("totals").append(
    "Episodes/hour ", el("b", {}, t.episodes_per_hour.toFixed(1)),
    " \u2022 success by policy ", el("b", {}, rates),
    " \u2022 waiting for a human ", el("b", {}, fmtDuration(t.waiting_for_human_s / perRobot)), " per robot",
    " \u2022 detector disagreement ",
    el("b", {}, t.disagreement_rate === null ? "-" : `${(100 * t.disagreement_rate).toFixed(0)}% of ${t.labelled}`));
}

function render() {
  if (!snapshot) return;
  renderTotals(snapshot);
  const queue = $("queue");
  queue.innerHTML = "";
  const byName = Object.fromEntries(snapshot.robots.map((t) => [t.robot, t]));
  for (const name of snapshot.queue) {
    const t = byName[name];
    queue.append(el("li", { "data-robot": name }, el("b", {}, name), ` waiting ${fmtDuration(t.time_in_state_s)} `,
      el("button", { class: "done", "data-robot": name, onclick: () => command(name, "reset_done", t.episode_id) },
         `Reset done ${name}`)));
  }
  $("queue-count").textContent = snapshot.queue.length ? `(${snapshot.queue.length})` : "(nobody waits)";
  $("queue-done").disabled = !snapshot.queue.length;
  selected = Math.min(selected, snapshot.robots.length - 1);
  $("tiles").replaceChildren(...snapshot.robots.map(tileFor));
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (e) => {
    snapshot = JSON.parse(e.data);
    receivedAt = performance.now();
    $("connection").textContent = "";
    $("connection").className = "";
    render();
  };
  source.onerror = () => {
    $("connection").textContent = " \u2022 connection lost, retrying";
    $("connection").className = "down";
  };
}

setInterval(() => {  // keep times in state moving between snapshots
  for (const span of document.querySelectorAll(".age")) {
    span.textContent = fmtDuration(Number(span.dataset.base) + (performance.now() - receivedAt) / 1000);
  }
}, 1000);

document.addEventListener("keydown", (e) => {
  if (!snapshot || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = snapshot.robots[selected];
  if (e.key === "Escape") { post("/api/estop"); return; }
  if (e.key === " ") { e.preventDefault(); post("/api/queue/reset_done"); return; }
  if (/^[1-9]$/.test(e.key) && Number(e.key) <= snapshot.robots.length) { selected = Number(e.key) - 1; render(); return; }
  if (!t) return;
  const last = t.last_episode ? t.last_episode.episode_id : "";
  const keys = { d: ["reset_done", t.episode_id], s: ["label_success", last], f: ["label_failure", last],
                 x: ["estop", ""], p: [t.actions.includes("resume") ? "resume" : "pause", t.episode_id] };
  if (keys[e.key]) command(t.robot, ...keys[e.key]);
});

$("estop-all").addEventListener("click", () => post("/api/estop"));
$("queue-done").addEventListener("click", () => post("/api/queue/reset_done"));
if (location.search.includes("token=")) history.replaceState(null, "", "/");  // keep the token out of history
connect();
