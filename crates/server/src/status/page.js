// Refreshes the server-rendered tables from status.json about once a second. Names are set with
// textContent, never as markup. If the server answers 401 (a token is configured), asks for the
// token once and keeps it in sessionStorage for this tab, sent as `Authorization: Bearer`.
"use strict";
(() => {
  const KEY = "throttle-token";
  let asked = false;
  const $ = (id) => document.getElementById(id);
  const dur = (ms) => {
    if (ms == null) return "—";
    const s = Math.floor(ms / 1000), m = Math.floor(s / 60), h = Math.floor(m / 60);
    const two = (n) => String(n).padStart(2, "0");
    if (ms < 10000) return Math.floor(ms / 1000) + "." + Math.floor(ms / 100) % 10 + " s";
    if (s < 60) return s + " s";
    return h < 1 ? m + "m " + two(s % 60) + "s" : h + "h " + two(m % 60) + "m";
  };
  const cell = (tr, text, cls) => {
    const td = tr.insertCell();
    td.dataset.label = tr.closest("table").tHead.rows[0].cells[td.cellIndex].textContent;
    if (cls) td.className = cls;
    if (text != null) td.textContent = text;
    return td;
  };
  const lock = (l) => l.semaphore + " ×" + l.count;
  const held = (l) => lock(l) + " #" + l.fencing_token;
  const fill = (id, rows, draw) => {
    const body = $(id).tBodies[0], fresh = document.createElement("tbody");
    body.replaceWith(fresh);
    rows.forEach((r) => draw(fresh.insertRow(), r));
  };
  function render(s) {
    fill("semaphores", s.semaphores, (tr, x) => {
      if (x.pending > 0) tr.className = "waiting";
      cell(tr, x.name, "name");
      [x.level, x.max, x.acquired, x.pending].forEach((v) => cell(tr, String(v), "n"));
      cell(tr, dur(x.longest_pending_ms), "n");
      const bar = document.createElement("div"), a = document.createElement("span"), p = document.createElement("span");
      bar.className = "bar"; a.className = "a"; p.className = "p";
      bar.title = x.acquired + " acquired, " + x.pending + " pending of " + x.max;
      const scale = Math.max(x.max, x.acquired + x.pending);
      const pct = (v) => (scale > 0 ? (100 * Math.max(0, v)) / scale : 0) + "%";
      a.style.width = pct(x.acquired);
      p.style.width = pct(x.pending);
      if (x.max > 0 && scale > x.max) {
        const cap = document.createElement("i");
        cap.className = "cap";
        cap.style.left = pct(x.max);
        bar.append(cap);
      }
      bar.append(a, p);
      cell(tr).append(bar);
    });
    fill("peers", s.peers, (tr, x) => {
      if (x.pending) tr.className = "waiting";
      cell(tr, String(x.id), "n");
      cell(tr, x.name == null ? "—" : x.name, "name");
      cell(tr, x.acquired.map(held).join(", ") || "—", "name");
      cell(tr, x.pending ? lock(x.pending) + " for " + dur(x.pending.waited_ms) : "—", "name");
      cell(tr, dur(x.expires_in_ms), "n");
    });
    $("peer-count").textContent = "showing " + s.peers.length + " of " + s.num_peers;
    const cluster = $("cluster");
    const c = s.cluster;
    cluster.hidden = c == null;
    cluster.textContent = c == null ? "" : "Member " + c.id + " of a cluster of " + c.members + ": " +
      (c.leader == null ? "no leader: nothing is granted until a majority elects one"
        : c.leader === c.id ? "this member leads" : "member " + c.leader + " leads") +
      " (term " + c.term + ", commit " + c.commit + ", applied " + c.applied + ")";
    $("members-section").hidden = c == null;
    if (c != null) {
      const lags = new Map((c.members_lag || []).map((m) => [m.id, m]));
      const ids = Array.from({ length: c.members }, (_, i) => i + 1);
      fill("members", ids, (tr, id) => {
        const known = lags.get(id);
        cell(tr, id === c.id ? id + " (this member)" : String(id), "n");
        cell(tr, c.leader == null ? "—" : c.leader === id ? "leader" : "follower");
        cell(tr, known ? String(known.match) : "—", "n");
        cell(tr, known ? String(known.lag) : "—", "n");
      });
      $("members-note").textContent = c.members_lag != null
        ? "Lag: entries the member's log is behind the commit index."
        : c.leader != null ? "Only the leader knows how far each member lags: see member " + c.leader + "'s page."
          : "Only a leader knows how far each member lags; there is none.";
    }
    const grace = $("grace");
    grace.hidden = s.grace_remaining_ms == null;
    grace.textContent = grace.hidden ? "" : "Grace period after a restart: no new locks are granted for " +
      dur(s.grace_remaining_ms) + " while holders restore theirs.";
  }
  async function poll() {
    if (!document.hidden) {
      const token = sessionStorage.getItem(KEY);
      try {
        const r = await fetch("status.json", { cache: "no-store", headers: token ? { Authorization: "Bearer " + token } : {} });
        if (r.status === 401) {
          sessionStorage.removeItem(KEY);
          const t = asked ? null : prompt("This Throttle server needs a token:");
          asked = true;
          if (!t) return void ($("state").textContent = "needs a token: reload the page to enter it");
          sessionStorage.setItem(KEY, t);
          return poll();
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        render(await r.json());
        $("state").textContent = "live · " + new Date().toLocaleTimeString();
      } catch (e) {
        $("state").textContent = "offline (" + e.message + "), retrying";
      }
    }
    setTimeout(poll, 1000);
  }
  // A page served without data (the token is missing) asks at once.
  setTimeout(poll, document.body.dataset.locked === "yes" ? 0 : 1000);
})();
