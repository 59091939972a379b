// The dms dashboard: polls the node's control API (read-only) once a second.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
let selected = null;

async function get(path) {
  const r = await fetch("api" + path, { headers: { "X-Dms-Token": token }, cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
function row(cells, cls) { const tr = el("tr", undefined, cls); for (const c of cells) { const td = el("td"); if (c instanceof Node) td.append(c); else td.textContent = c; tr.append(td); } return tr; }
function fill(id, rows, empty) { const tb = document.querySelector("#" + id + " tbody"); tb.replaceChildren(...rows); if (!rows.length) tb.append(row([empty])); }
function bytes(n) { const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; n = Number(n || 0); while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(2) : n) + " " + u[i]; }
function cores(c) { return ((c && c.cpu && c.cpu.millicores) || 0) / 1000; }
// Output is a JSON string, or {"base64": ...} when it is not text.
function text(o) { if (!o) return ""; if (typeof o === "string") return o; try { return new TextDecoder().decode(Uint8Array.from(atob(o.base64 || ""), c => c.charCodeAt(0))); } catch (e) { return ""; } }
function state(s) { return el("span", s, s); }
// A queued job says since when and why it waits, as dms job status does.
function queued(j) { return j.state === "queued" ? "queued since " + clock(j.queued_since) + ": " + (j.queue_reason || "") : ""; }

async function refresh() {
  try {
    const [st, cap, peers, jobs, allocs] = await Promise.all([get("/v1/status"), get("/v1/capability"), get("/v1/peers"), get("/v1/jobs"), get("/v1/allocations")]);
    document.getElementById("node").textContent = st.peer_id + " on " + st.network;
    const t = document.getElementById("status"); t.replaceChildren();
    for (const [k, v] of [["peer id", st.peer_id], ["network", st.network], ["peers", st.peers + " connected, " + st.topic_peers + " on the bid-request topic"],
      ["bootstrap", st.bootstrap_peers ? st.bootstrap_peers + " peers" : "none (a network of its own)"], ["onboarded", st.onboarded ? "yes" : "no"],
      ["allocations running", st.allocations_running], ["jobs in flight", st.jobs_in_flight]]) t.append(row([el("th", k), String(v)]));
    const acc = cap.ledger || cap;
    fill("capacity", ["registered", "held", "locked", "available"].filter(k => acc[k]).map(k => row([k, cores(acc[k]), bytes(acc[k].memory), bytes(acc[k].disk), (acc[k].gpus || []).length])), "no offer");
    fill("peers", (peers.peers || []).map(p => row([el("code", p.peer_id), p.direction, p.on_topic ? "yes" : "no", (p.addrs || []).join(" ")])), "no peers");
    const js = (jobs.jobs || []).slice().reverse();
    fill("jobs", js.map(j => { const id = el("code", jobID(j.id)); id.title = j.id; const st = state(j.state); st.title = queued(j); const r = row([id, st, runs(j), clock(j.submitted), took(j), short(j.provider), j.result && j.state !== "cancelled" ? j.result.exit_code : ""], "job" + (j.id === selected ? " selected" : "")); r.onclick = () => { selected = j.id; refresh(); }; return r; }), "no jobs yet");
    if (!selected && js.length) selected = js[0].id;
    if (selected) await showJob(selected);
    fill("allocs", (allocs.allocations || []).map(a => row([el("code", a.id), jobID(a.job_id), state(a.state), short(a.requester), a.capability ? "cpu " + cores(a.capability) + ", memory " + bytes(a.capability.memory) : ""])), "no allocations");
    document.getElementById("updated").textContent = "updated " + clock(new Date());
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach the node: " + e.message;
  }
}

async function showJob(id) {
  const j = await get("/v1/jobs/" + encodeURIComponent(id));
  const box = document.getElementById("job"); box.replaceChildren();
  box.append(el("h3", "Job " + jobID(j.id)), state(j.state), el("p", runs(j) + ", submitted " + clock(j.submitted) + ", took " + took(j)));
  if (j.error) box.append(el("p", j.error, "failed"));
  if (queued(j)) box.append(el("p", queued(j), "queued"));
  const ol = el("ol");
  for (const p of j.progress || []) ol.append(el("li", clock(p.time) + "  " + p.kind + (p.message ? ": " + p.message : "") + (p.event && p.event.state ? ": " + p.event.state : "")));
  box.append(el("h4", "Steps"), ol);
  if (j.result) { box.append(el("h4", "Output"), el("pre", text(j.result.stdout) + text(j.result.stderr) || "(no output)")); }
}

refresh();
setInterval(refresh, 1000);
