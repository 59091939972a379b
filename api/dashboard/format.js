// How the dashboard writes IDs, times and durations: as the command line
// does (cmd/dms/format.go), so that what one shows can be found in the
// other. Pure functions, tested against the command line's under node
// (cmd/dms TestDashboardFormsMatchTheCLI).
"use strict";
// The forms the command line prints: a peer by its last 8 characters, a
// job by its first 12 (any unique prefix names it in dms job status), a
// time on a 24-hour clock, elapsed time as dms job list does.
function short(id) { return id ? String(id).slice(-8) : ""; }
function jobID(id) { return id ? String(id).slice(0, 12) : ""; }
function pad(n) { return String(n).padStart(2, "0"); }
function clock(t) { const d = new Date(t); if (isNaN(d)) return ""; const hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); const now = new Date(); return d.toDateString() === now.toDateString() ? hms : d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hms.slice(0, 5); }
function elapsed(ms) { if (ms < 1000) return Math.max(0, Math.round(ms)) + "ms"; if (ms < 60000) return (ms / 1000).toFixed(2) + "s"; let s = Math.round(ms / 1000), out = ""; const h = Math.floor(s / 3600); s -= h * 3600; const m = Math.floor(s / 60); s -= m * 60; if (h) out += h + "h"; if (h || m) out += m + "m"; return out + s + "s"; }
const finalStates = ["completed", "failed", "cancelled"];
function took(j, now = Date.now()) { const ended = j.ended && !String(j.ended).startsWith("0001-") ? new Date(j.ended) : null; if (ended) return elapsed(ended - new Date(j.submitted)); return finalStates.includes(j.state) ? "-" : elapsed(now - new Date(j.submitted)) + " so far"; }
function runs(j) { return (j.executor || "") + (j.image ? " " + j.image : ""); }
