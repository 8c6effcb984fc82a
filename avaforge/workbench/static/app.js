// The workbench page: a person x second grid, a player looping +-1.5 s of rawframes around the selected
// keyframe, keyboard-first labelling. Every edit goes to the server as one request naming its base revision
// (POST /api/clips/{clip}/edits); the server applies it (avaforge/workbench/edits.py: the only place the
// rules live) and saves a new revision. Undo/redo save an earlier document again (PUT). Requests run one at
// a time in order; a 409 (someone saved a newer revision) stops editing until the page reloads.

import { api, loadImage, setToken } from "./api.js";
import { roleText, showAssignments } from "./assignments.js";
import { Player } from "./player.js";

const FPS = 30;
const TYPING_PAUSE_MS = 400; // a pause this long after the last save lets the player load its loop again
const $ = (sel) => document.querySelector(sel);

const COMMANDS = [
  ["←/→", "previous / next second"],
  ["↑/↓", "previous / next person, same second"],
  ["Tab/⇧Tab", "next / previous person, at its first box (where its labelling starts)"],
  ["a", "accept the machine suggestion"],
  ["c", "copy the person's previous second"],
  ["f", "carry the labels forward to the person's next second"],
  ["m", "merge: mark a person, then m on the other (it takes the marked id)"],
  ["w", "swap ids from this second on: mark, then w on the other"],
  ["s", "split the person's track at this second"],
  ["d / Del", "delete this box"],
  ["n", "draw a new person (drag on the player)"],
  ["z / Ctrl+Z", "undo"],
  ["y / Ctrl+Y", "redo"],
  ["Space", "play / pause the loop"],
  ["?", "this help"],
  ["Esc", "cancel a mark or drawing"],
];

const state = {
  config: null,
  clipId: null,
  revision: 0,
  doc: null,
  sel: { person: null, second: null },
  mark: null, // {kind: "merge"|"swap", person}
  undo: [],
  redo: [],
  conflict: false,
  queue: Promise.resolve(),
  pending: 0,
  resumeLoads: null, // the timer that lets the player load again after a pause in saving
  lint: [],
  actionByKey: new Map(),
  actionName: new Map(),
};

let player = null;

function setStatus(kind, text) {
  const el = $("#status");
  el.dataset.state = kind;
  el.dataset.revision = String(state.revision);
  el.textContent = text;
  $("#reload").hidden = kind !== "conflict";
}

// ---- document helpers -------------------------------------------------------------------------------------

function people() {
  return [...new Set(state.doc.boxes.map((b) => b.person))].sort((a, b) => a - b);
}

function boxAt(person, second) {
  return state.doc.boxes.find((b) => b.person === person && b.second === second) || null;
}

function boxesAt(second) {
  return state.doc.boxes.filter((b) => b.second === second);
}

function names(ids) {
  return ids.map((i) => state.actionName.get(i) || `#${i}`).join(", ");
}

// ---- talking to the server ----------------------------------------------------------------------------------

function enqueue(run) {
  if (state.conflict) return;
  state.pending += 1;
  // a save goes first: the loop's frames wait until the annotator pauses (TYPING_PAUSE_MS without a save)
  clearTimeout(state.resumeLoads);
  if (player) player.holdLoads(true);
  setStatus("saving", "saving…");
  state.queue = state.queue
    .then(async () => {
      if (state.conflict) return;
      await run();
    })
    .catch((err) => {
      if (err.status === 409) {
        state.conflict = true;
        setStatus("conflict", "conflict: someone saved a newer revision of this clip; reload to continue");
      } else {
        setStatus("error", `not saved: ${err.message}`);
        state.errorShown = true;
      }
    })
    .finally(() => {
      state.pending -= 1;
      if (state.pending === 0 && !state.conflict && !state.errorShown) {
        setStatus("saved", `saved · revision ${state.revision}`);
      }
      state.errorShown = false;
      if (state.pending === 0 && player) {
        state.resumeLoads = setTimeout(() => state.pending === 0 && player.holdLoads(false), TYPING_PAUSE_MS);
      }
    });
}

function applied(result) {
  state.revision = result.revision;
  state.doc = result.document;
  const option = $("#clip").selectedOptions[0];
  const labelled = state.doc.boxes.filter((b) => b.actions.length).length;
  if (option) option.textContent = `${state.clipId} (${labelled}/${state.doc.boxes.length} labelled)`;
  showLint(result.lint); // a save answers with the clip's lint list
  render();
}

function edit(op, after) {
  enqueue(async () => {
    const before = state.doc;
    const result = await api("POST", `/api/clips/${encodeURIComponent(state.clipId)}/edits`, {
      base: state.revision,
      op,
    });
    state.undo.push(before);
    state.redo = [];
    applied(result);
    if (after) after();
  });
}

function saveDocument(doc, kind, from, to) {
  enqueue(async () => {
    const current = state.doc;
    const result = await api("PUT", `/api/clips/${encodeURIComponent(state.clipId)}`, {
      base: state.revision,
      document: doc,
      edit: kind,
    });
    from.pop();
    to.push(current);
    applied(result);
  });
}

function undo() {
  if (state.undo.length) saveDocument(state.undo[state.undo.length - 1], "undo", state.undo, state.redo);
}

function redo() {
  if (state.redo.length) saveDocument(state.redo[state.redo.length - 1], "redo", state.redo, state.undo);
}

async function loadClip(clipId) {
  state.clipId = clipId;
  thumbnails.clear();
  const result = await api("GET", `/api/clips/${encodeURIComponent(clipId)}`);
  state.revision = result.revision;
  state.doc = result.document;
  state.undo = [];
  state.redo = [];
  state.conflict = false;
  state.mark = null;
  const ps = people();
  state.sel = { person: ps.length ? ps[0] : null, second: state.doc.seconds[0] ?? null };
  const first = state.sel.person === null ? null : state.doc.boxes.find((b) => b.person === state.sel.person);
  if (first) state.sel.second = first.second;
  setStatus("saved", result.revision ? `saved · revision ${result.revision}` : "nothing saved yet");
  render();
  refreshLint();
  refreshAdjudication();
  refreshAssignments();
}

async function refreshAssignments() {
  const open = (clipId) => {
    $("#clip").value = clipId;
    loadClip(clipId);
  };
  const row = await showAssignments(state.clipId, open);
  if (!row) return;
  $("#mode").textContent = roleText(row, state.config.annotator);
  $("#mode").dataset.role = row.role ?? "none";
}

async function refreshLint() {
  let issues = [];
  try {
    issues = await api("GET", `/api/clips/${encodeURIComponent(state.clipId)}/lint`);
  } catch (err) {
    // the panel stays empty; the grid still works
  }
  showLint(issues);
  renderGrid();
}

function showLint(issues) {
  state.lint = issues;
  $("#lint-count").textContent = `(${state.lint.length})`;
  const ul = $("#lint");
  ul.replaceChildren(
    ...state.lint.map((i) => {
      const li = document.createElement("li");
      li.textContent = `${i.second} s · person ${i.person}: ${i.message}`;
      li.onclick = () => select(i.person, i.second);
      return li;
    }),
  );
}

async function refreshAdjudication() {
  let data;
  try {
    data = await api("GET", `/api/clips/${encodeURIComponent(state.clipId)}/disagreements`);
  } catch (err) {
    $("#agreement").textContent = "";
    return;
  }
  if (!data.reviewed) {
    $("#agreement").textContent = "no review pass yet (avaforge annotate WORKDIR --review)";
    $("#disagreements").replaceChildren();
    return;
  }
  $("#adjudication-panel").open = true;
  const ag = data.agreement;
  const groups = ag.groups.map((g) => JSON.stringify(g)).join("; ");
  $("#agreement").textContent =
    `${ag.matched} boxes matched, ${ag.unmatched_a} only in the annotator's, ${ag.unmatched_b} only in the review's · ${groups}`;
  $("#disagreements").replaceChildren(
    ...data.disagreements.map((d) => {
      const li = document.createElement("li");
      const side = (p, acts) => (p === null ? "no box" : `person ${p}: ${names(acts) || "—"}`);
      li.textContent = `${d.second} s · ${d.group ?? d.kind} · annotator ${side(d.person_a, d.actions_a)} · review ${side(d.person_b, d.actions_b)}`;
      const person = d.person_a ?? d.person_b;
      if (person !== undefined && person !== null) li.onclick = () => select(person, d.second);
      return li;
    }),
  );
}

// ---- rendering ------------------------------------------------------------------------------------------------

function render() {
  renderGrid();
  renderActions();
  renderSelection();
  if (player) player.show(state.doc, state.sel, state.clipId);
}

function renderSelection() {
  const { person, second } = state.sel;
  const mark = state.mark ? ` · ${state.mark.kind}: person ${state.mark.person} marked` : "";
  $("#selection").textContent = person === null ? "" : `person ${person} · second ${second}${mark}`;
  const b = person === null ? null : boxAt(person, second);
  $("#suggestion").textContent =
    b && b.suggested.length ? `suggestion (a accepts): ${names(b.suggested)}` : "";
}

// Thumbnails by URL (person, second, box): a re-render after a save reuses the decoded images instead of
// making ~40 new <img> elements that the browser fetches and decodes again.
const thumbnails = new Map();

function thumbnail(person, second, box) {
  const url = `api/clips/${encodeURIComponent(state.clipId)}/crops/${person}/${second}?v=${box.join(",")}`;
  let img = thumbnails.get(url);
  if (!img) {
    img = document.createElement("img");
    img.loading = "lazy";
    img.alt = `person ${person} at ${second} s`;
    loadImage(img, url);
    thumbnails.set(url, img);
  }
  return img;
}

function renderGrid() {
  if (!state.doc) return;
  const table = $("#grid");
  const head = document.createElement("tr");
  head.append(document.createElement("th"));
  for (const s of state.doc.seconds) {
    const th = document.createElement("th");
    th.textContent = `${s} s`;
    head.append(th);
  }
  const linted = new Set(state.lint.map((i) => `${i.person}@${i.second}`));
  const rows = people().map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.person = String(p);
    if (p === state.sel.person) tr.classList.add("selected");
    if (state.mark && state.mark.person === p) tr.classList.add("marked");
    const th = document.createElement("th");
    th.textContent = `person ${p}`;
    tr.append(th);
    for (const s of state.doc.seconds) {
      const td = document.createElement("td");
      td.dataset.person = String(p);
      td.dataset.second = String(s);
      const b = boxAt(p, s);
      if (!b) {
        td.classList.add("nobox");
      } else {
        const img = thumbnail(p, s, b.box);
        const labels = document.createElement("div");
        labels.className = "labels";
        labels.dataset.actions = b.actions.join(",");
        labels.textContent = b.actions.length ? names(b.actions) : "—";
        td.append(img, labels);
        if (!b.actions.length) td.classList.add("unlabelled");
        if (!b.actions.length && b.suggested.length) {
          const sg = document.createElement("div");
          sg.className = "sugg";
          sg.textContent = `? ${names(b.suggested)}`;
          td.append(sg);
        }
        if (linted.has(`${p}@${s}`)) td.classList.add("linted");
      }
      if (p === state.sel.person && s === state.sel.second) td.classList.add("selected");
      td.onclick = () => select(p, s);
      tr.append(td);
    }
    return tr;
  });
  table.replaceChildren(head, ...rows);
  const selected = table.querySelector("td.selected");
  if (selected) selected.scrollIntoView({ block: "nearest", inline: "nearest" });
}

function renderActions() {
  const b = state.sel.person === null ? null : boxAt(state.sel.person, state.sel.second);
  const on = new Set(b ? b.actions : []);
  const wrap = $("#actions");
  wrap.replaceChildren(
    ...state.config.groups.map((g) => {
      const div = document.createElement("div");
      div.className = "group";
      const title = document.createElement("b");
      title.textContent = g.exclusive ? `${g.name} (one)` : g.name;
      div.append(title);
      for (const a of g.actions) {
        const btn = document.createElement("button");
        btn.dataset.action = String(a.id);
        if (on.has(a.id)) btn.classList.add("on");
        btn.innerHTML = `<kbd></kbd> `;
        btn.querySelector("kbd").textContent = a.key;
        btn.append(document.createTextNode(a.name));
        btn.onclick = () => toggle(a.id);
        div.append(btn);
      }
      return div;
    }),
  );
}

// ---- commands -----------------------------------------------------------------------------------------------

function select(person, second) {
  state.sel = { person, second };
  render();
}

function current() {
  const { person, second } = state.sel;
  return person === null ? null : boxAt(person, second);
}

function toggle(actionId) {
  if (!current()) return;
  edit({ op: "toggle_action", person: state.sel.person, second: state.sel.second, action: actionId });
}

function moveSecond(step) {
  const secs = state.doc.seconds;
  const i = secs.indexOf(state.sel.second);
  const j = Math.min(Math.max(i + step, 0), secs.length - 1);
  select(state.sel.person, secs[j]);
}

function movePerson(step, toFirstBox = false) {
  const ps = people();
  if (!ps.length) return;
  const i = ps.indexOf(state.sel.person);
  const j = i < 0 ? 0 : (i + step + ps.length) % ps.length;
  const own = state.doc.boxes.filter((b) => b.person === ps[j]).map((b) => b.second);
  select(ps[j], toFirstBox && own.length ? Math.min(...own) : state.sel.second);
}

function nextBoxSecond(person, second) {
  const later = state.doc.boxes.filter((b) => b.person === person && b.second > second);
  return later.length ? Math.min(...later.map((b) => b.second)) : null;
}

function markOr(kind, run) {
  const p = state.sel.person;
  if (p === null) return;
  if (state.mark && state.mark.kind === kind && state.mark.person !== p) {
    const marked = state.mark.person;
    state.mark = null;
    run(marked, p);
  } else {
    state.mark = { kind, person: p };
  }
  render();
}

function onKey(ev) {
  if (ev.target instanceof HTMLSelectElement || ev.target instanceof HTMLInputElement) return;
  const help = $("#help");
  const key = ev.key;
  if (key === "?" || (key === "Escape" && !help.hidden)) {
    help.hidden = !help.hidden;
    ev.preventDefault();
    return;
  }
  if (!help.hidden || !state.doc) return;
  const ctrl = ev.ctrlKey || ev.metaKey;
  const { person, second } = state.sel;
  const here = { person, second };
  let handled = true;
  if (key === "ArrowLeft") moveSecond(-1);
  else if (key === "ArrowRight") moveSecond(1);
  else if (key === "ArrowUp") movePerson(-1);
  else if (key === "ArrowDown") movePerson(1);
  else if (key === "Tab") movePerson(ev.shiftKey ? -1 : 1, true);
  else if ((ctrl && key.toLowerCase() === "z" && !ev.shiftKey) || (!ctrl && key === "z")) undo();
  else if ((ctrl && (key.toLowerCase() === "y" || (key.toLowerCase() === "z" && ev.shiftKey))) || key === "y")
    redo();
  else if (ctrl) handled = false;
  else if (key === "Escape") {
    state.mark = null;
    if (player) player.cancelDraw();
    render();
  } else if (key === " ") {
    if (player) player.togglePlay();
  } else if (key === "a") {
    if (current() && current().suggested.length) edit({ op: "accept_suggestion", ...here });
  } else if (key === "c") {
    if (current()) edit({ op: "copy_previous", ...here });
  } else if (key === "f") {
    const nxt = person === null ? null : nextBoxSecond(person, second);
    if (current() && nxt !== null) {
      edit({ op: "carry_forward", ...here });
      select(person, nxt); // the next press carries on along the track
    }
  } else if (key === "m") {
    markOr("merge", (keep, other) => edit({ op: "merge", keep, other }, () => select(keep, second)));
  } else if (key === "w") {
    markOr("swap", (a, b) => edit({ op: "swap", a, b, second }));
  } else if (key === "s") {
    if (person !== null) edit({ op: "split", ...here }, () => select(state.doc.next_person - 1, second));
  } else if (key === "d" || key === "Delete" || key === "Backspace") {
    if (current()) edit({ op: "delete_box", ...here });
  } else if (key === "n") {
    if (player) player.startDraw();
  } else if (state.actionByKey.has(key)) {
    toggle(state.actionByKey.get(key));
  } else handled = false;
  if (handled) ev.preventDefault();
}

function renderCommands() {
  const rows = COMMANDS.map(([k, what]) => {
    const li = document.createElement("li");
    li.innerHTML = "<kbd></kbd> ";
    li.querySelector("kbd").textContent = k;
    li.append(document.createTextNode(what));
    return li;
  });
  $("#commands").replaceChildren(...rows);
  const help = $("#help-keys");
  const lines = [...COMMANDS];
  for (const g of state.config.groups) {
    for (const a of g.actions) lines.push([a.key, `${g.name}: ${a.name}${g.exclusive ? " (replaces)" : ""}`]);
  }
  help.replaceChildren(
    ...lines.map(([k, what]) => {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td><kbd></kbd></td><td></td>";
      tr.querySelector("kbd").textContent = k;
      tr.children[1].textContent = what;
      return tr;
    }),
  );
}

async function main() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) setToken(hash.get("token"));
  const [config, clips] = await Promise.all([api("GET", "/api/config"), api("GET", "/api/clips")]);
  state.config = config;
  for (const g of state.config.groups) {
    for (const a of g.actions) {
      state.actionByKey.set(a.key, a.id);
      state.actionName.set(a.id, a.name);
    }
  }
  $("#mode").textContent = state.config.review
    ? `review pass · ${state.config.annotator}`
    : `annotator · ${state.config.annotator}`;
  renderCommands();
  const sel = $("#clip");
  sel.replaceChildren(
    ...clips.map((c) => {
      const o = document.createElement("option");
      o.value = c.clip_id;
      o.textContent = `${c.clip_id} (${c.labelled}/${c.boxes} labelled)`;
      return o;
    }),
  );
  const wanted = new URLSearchParams(location.search).get("clip"); // /?clip=<id> opens that clip
  if (wanted && clips.some((c) => c.clip_id === wanted)) sel.value = wanted;
  sel.onchange = () => loadClip(sel.value).then(() => sel.blur());
  player = new Player($("#player"), {
    onSelect: (p) => select(p, state.sel.second),
    onMove: (p, s, box) => edit({ op: "move_box", person: p, second: s, box }),
    onDraw: (s, box) => edit({ op: "add_box", second: s, box, person: null }, () => select(state.doc.next_person - 1, s)),
  });
  document.addEventListener("keydown", onKey);
  $("#reload").onclick = () => loadClip(state.clipId);
  $("#assignments-panel").ontoggle = (e) => e.target.open && refreshAssignments(); // statuses as of now
  $("#help-button").onclick = () => ($("#help").hidden = !$("#help").hidden);
  if (clips.length) await loadClip(sel.value);
  document.body.dataset.ready = "1";
}

main().catch((err) => setStatus("error", `cannot load: ${err.message}`));

export { FPS };
