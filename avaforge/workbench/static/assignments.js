// The clip list: who labels and who reviews each clip, its status (unstarted / in progress / labelled /
// reviewed) and your role on it (GET /api/assignments; the job's owner assigns with PUT
// /api/assignments/{clip}). Your role on the open clip decides where your saves go: its labels (annotator),
// its review pass (reviewer), or nowhere (read only: the server answers 403).

import { api } from "./api.js";

const ROLE_TEXT = { annotator: "annotator", reviewer: "review pass" };

export async function showAssignments(clipId, onOpen) {
  let rows;
  try {
    rows = await api("GET", "/api/assignments");
  } catch (err) {
    return null; // an older server without assignments: the page works as before
  }
  const head = document.createElement("tr");
  for (const h of ["clip", "annotator", "reviewer", "status", "you"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  const body = rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.clip = r.clip_id;
    tr.dataset.status = r.status;
    tr.classList.toggle("current", r.clip_id === clipId);
    const cells = [r.clip_id, r.annotator ?? "(owner)", r.reviewer ?? "-", r.status, r.role ?? "read only"];
    for (const v of cells) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    tr.onclick = () => onOpen(r.clip_id);
    return tr;
  });
  document.querySelector("#assignments").replaceChildren(head, ...body);
  return rows.find((r) => r.clip_id === clipId) ?? null;
}

// The header's "which role you have" on the open clip
export function roleText(row, name) {
  return `${row && row.role ? ROLE_TEXT[row.role] : "read only"} · ${name}`;
}
