/* The studio's behaviour: plain JavaScript, no build step, no library, no network but this server.

   Every change is a POST carrying the token (X-Studio-Token header); the page then fetches itself
   again and swaps the comic and the inspectors in place, keeping open inspectors and the scroll
   position. Progress and the queue arrive as server-sent events on /events. */
const token = document.querySelector('meta[name="studio-token"]').content;
const message = document.querySelector(".studio-message");
const progressLine = document.querySelector(".studio-progress");
const jobList = document.querySelector(".job-list");
window.studioEvents = [];

function say(text, bad) {
  message.textContent = text;
  message.classList.toggle("bad", Boolean(bad));
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Studio-Token": token},
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: response.status + " " + response.statusText}; }
  if (!response.ok) {
    say((data.error || "Refused") + (data.hint ? " " + data.hint : ""), true);
    return null;
  }
  say(data.message || "Done.");
  return data;
}

// ------------------------------------------------------------------ the page, refreshed in place
function openPanels() {
  return Array.from(document.querySelectorAll("details.panel-inspector[open]")).map((d) => d.id);
}

// One refresh at a time, in order: a refresh asked for meanwhile runs once more after it, so an
// older page never lands over a newer one.
let refreshing = null;
let again = false;
function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    try {
      do { again = false; await refreshOnce(); } while (again);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function refreshOnce() {
  const open = openPanels();
  const response = await fetch(location.pathname, {credentials: "same-origin", cache: "no-store"});
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of ["header.masthead", "main", "#studio-templates"]) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (now && next) now.replaceWith(document.adoptNode(next));
  }
  for (const id of open) {
    const d = document.getElementById(id);
    if (d) d.open = true;
  }
  enhance();
  document.dispatchEvent(new CustomEvent("studio:refreshed"));
}
window.studioRefresh = refresh;

function enhance() {
  // The panel's controls, into its inspector.
  document.querySelectorAll("template.studio-controls").forEach((tpl) => {
    const body = document.querySelector(`#inspect-${tpl.dataset.panel} .inspector-body`);
    if (body && !body.querySelector(".studio-panel")) body.prepend(tpl.content.cloneNode(true));
  });
  // A pick button under every candidate.
  document.querySelectorAll("details.panel-inspector").forEach((d) => {
    const panel = d.id.replace("inspect-", "");
    d.querySelectorAll("article.candidate").forEach((c) => {
      const place = c.querySelector(".pick") || c;
      if (place.querySelector(".studio-pick")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "studio-pick";
      button.dataset.action = "pick";
      button.dataset.panel = panel;
      button.dataset.candidate = c.dataset.candidate;
      const chosen = c.classList.contains("chosen");
      button.textContent = chosen ? "shown" : "pick";
      button.disabled = chosen;
      place.prepend(button);
    });
  });
  // An "edit" button on every panel of the comic, opening its inspector.
  document.querySelectorAll("article.panel").forEach((a) => {
    if (a.querySelector(".studio-open")) return;
    const number = a.id.replace("panel-", "");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "studio-open";
    button.dataset.action = "open";
    button.dataset.panel = number;
    button.textContent = "edit";
    a.append(button);
  });
}

// ------------------------------------------------------------------ actions
function dialogueOf(form) {
  return Array.from(form.querySelectorAll(".dialogue-line")).map((row) => ({
    speaker: row.querySelector("select").value,
    text: row.querySelector("input").value,
  })).filter((line) => line.text.trim());
}

async function act(button) {
  const action = button.dataset.action;
  const panel = Number(button.dataset.panel);
  let result = null;
  if (action === "open") {
    const d = document.getElementById(`inspect-${panel}`);
    if (d) { d.open = true; d.scrollIntoView({behavior: "smooth", block: "start"}); }
    return;
  }
  button.disabled = true;
  try {
    if (action === "pick") result = await post("/api/pick", {panel, candidate: Number(button.dataset.candidate)});
    else if (action === "auto") result = await post("/api/auto", {panel});
    else if (action === "restore") result = await post("/api/restore", {panel, name: button.dataset.name});
    else if (action === "reroll") result = await post("/api/reroll", {panel});
    else if (action === "run") result = await post("/api/run", {});
    else if (action === "cancel") result = await post("/api/cancel", {job: Number(button.dataset.job)});
  } finally {
    button.disabled = false;
  }
  if (result && !result.job) await refresh();
}

document.addEventListener("click", (ev) => {
  const button = ev.target.closest ? ev.target.closest("button[data-action]") : null;
  if (button) { ev.preventDefault(); act(button); }
  // Open all / close all (storyboard.js binds the first page's buttons; these survive a refresh).
  const toggle = ev.target.closest ? ev.target.closest("button[data-details]") : null;
  if (toggle) {
    const open = toggle.dataset.details === "open";
    document.querySelectorAll("details.panel-inspector").forEach((d) => { d.open = open; });
  }
});

document.addEventListener("submit", async (ev) => {
  const form = ev.target;
  if (!form.classList.contains("studio-edit")) return;
  ev.preventDefault();
  const body = {
    panel: Number(form.dataset.panel),
    prompt: form.elements.prompt.value,
    caption: form.elements.caption.value,
    dialogue: dialogueOf(form),
  };
  const result = await post("/api/edit", body);
  if (result) await refresh();
});

// ------------------------------------------------------------------ progress and the queue
function showJob(job) {
  let item = jobList.querySelector(`li[data-job="${job.id}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.job = job.id;
    item.innerHTML = '<span class="job-label"></span> <span class="job-state"></span> <span class="job-message"></span>';
    jobList.prepend(item);
  }
  item.dataset.state = job.state;
  item.querySelector(".job-label").textContent = job.label;
  item.querySelector(".job-state").textContent = job.state;
  const note = item.querySelector(".job-message") || item.appendChild(document.createElement("span"));
  note.className = "job-message";
  note.textContent = job.message || "";
  let cancel = item.querySelector("button");
  const live = ["queued", "waiting", "running"].includes(job.state);
  if (live && !cancel) {
    cancel = document.createElement("button");
    cancel.type = "button";
    cancel.dataset.action = "cancel";
    cancel.dataset.job = job.id;
    cancel.textContent = "cancel";
    item.append(cancel);
  } else if (!live && cancel) {
    cancel.remove();
  }
}

function showProgress(data) {
  const parts = [];
  if (data.panel) parts.push(`panel ${data.panel}`);
  if (data.panels_total) parts.push(`${data.panels_done} of ${data.panels_total} panels`);
  if (data.candidates_total) parts.push(`candidates ${data.candidates_done}/${data.candidates_total}`);
  if (data.steps_total) parts.push(`steps ${data.steps_done}/${data.steps_total}`);
  progressLine.textContent = `job ${data.job}: ` + (parts.join(" · ") || "starting");
}

function listen() {
  const after = document.querySelector('meta[name="studio-last-event"]').content;
  const source = new EventSource(`/events?after=${encodeURIComponent(after)}`);
  const kinds = ["job", "run", "panel", "progress", "panel_done", "note", "worker", "indexing"];
  for (const kind of kinds) {
    source.addEventListener(kind, (ev) => {
      const data = JSON.parse(ev.data);
      window.studioEvents.push({kind, data});
      if (kind === "job") {
        showJob(data);
        if (["done", "failed", "cancelled"].includes(data.state)) {
          progressLine.textContent = `job ${data.id} ${data.state}` + (data.message ? `: ${data.message}` : "");
          refresh();
        }
      } else if (kind === "note") {
        progressLine.title = data.text;
      } else if (kind === "panel_done") {
        showProgress(data);
        refresh();
      } else if (kind !== "worker" && kind !== "indexing") {
        showProgress(data);
      }
    });
  }
}

enhance();
listen();
