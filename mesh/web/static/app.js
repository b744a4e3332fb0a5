// The live page: one EventSource, each message the whole picture (see mesh/web/feed.py `snapshot`), drawn
// with textContent only (names, notes and subjects come from other sessions: never parsed as HTML).
"use strict";
(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const q = (path) => path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // node_id -> {el, key}
  let lastSeq = null; // newest activity entry drawn; null until the first picture
  let source = null;
  let retryTimer = null;

  const GLYPH = { alive: "●", suspect: "◐", dead: "✕", left: "○" };
  const WORD = { alive: "alive", suspect: "suspect", dead: "dead", left: "left" };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function glyph(g) {
    const s = el("span", "glyph", g);
    s.setAttribute("aria-hidden", "true");
    return s;
  }

  function badge(state) {
    const b = el("span", "badge st-" + state);
    b.append(glyph(GLYPH[state] || "?"), " " + (WORD[state] || state));
    return b;
  }

  // ------------------------------------------------------------------ time

  const now = () => Date.now(); // the page and its server share this host's clock
  const ms = (iso) => (iso ? Date.parse(iso) : NaN);

  function span(sec) {
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return sec + " s";
    const m = Math.floor(sec / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + String(m % 60).padStart(2, "0") + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function ago(iso) {
    const t = ms(iso);
    if (Number.isNaN(t)) return "never";
    const sec = (now() - t) / 1000;
    return sec < 2 ? "just now" : span(sec) + " ago";
  }

  function countdown(iso) {
    const t = ms(iso);
    if (Number.isNaN(t)) return "—";
    const sec = Math.floor((t - now()) / 1000);
    if (sec <= 0) return "ending…";
    if (sec < 3600) return Math.floor(sec / 60) + ":" + String(sec % 60).padStart(2, "0");
    return span(sec);
  }

  function clock(iso) {
    const t = ms(iso);
    if (Number.isNaN(t)) return "";
    const d = new Date(t);
    const sameDay = new Date(now()).toDateString() === d.toDateString();
    const hms = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return sameDay ? hms : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + hms;
  }

  // An element whose text is redrawn every second: "3 min ago", "12:04 left".
  function live(kind, iso, prefix = "", suffix = "") {
    const s = el("span", "live-time");
    s.dataset[kind] = iso || "";
    s.dataset.prefix = prefix;
    s.dataset.suffix = suffix;
    if (iso) s.title = new Date(ms(iso)).toLocaleString();
    return s;
  }

  function tick() {
    for (const s of document.querySelectorAll("[data-ago]")) {
      s.textContent = s.dataset.prefix + ago(s.dataset.ago) + s.dataset.suffix;
    }
    for (const s of document.querySelectorAll("[data-until]")) {
      const text = countdown(s.dataset.until);
      s.textContent = s.dataset.prefix + text + s.dataset.suffix;
      const left = (ms(s.dataset.until) - now()) / 1000;
      s.classList.toggle("soon", left < 60);
    }
  }

  // ------------------------------------------------------------------ sessions

  function card(m, fresh) {
    const li = el("li", "card st-" + m.state);
    li.dataset.node = m.node_id;
    li.dataset.name = m.name;
    li.dataset.state = m.state;
    if (fresh) li.classList.add("changed");

    const head = el("div", "card-head");
    head.append(el("h3", "name", m.name), badge(m.state));
    li.append(head);

    const tags = el("p", "tags");
    if (m.role) tags.append(el("span", "role", m.role));
    if (m.steward) tags.append(el("span", "tag", "steward"));
    if (m.is_self) tags.append(el("span", "tag self", "this node"));
    if (m.unread) tags.append(el("span", "tag unread", m.unread + " unread"));
    if (tags.childNodes.length) li.append(tags);

    const doing = el("p", "doing");
    if (m.action || m.target || m.phase) {
      if (m.action) doing.append(el("strong", "action", m.action));
      if (m.target) doing.append(" ", el("span", "target", m.target));
      if (m.phase) doing.append(" ", el("span", "phase", m.phase));
    } else {
      doing.append(el("span", "idle", "no status published yet"));
    }
    li.append(doing);

    const row = el("div", "progress");
    const bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(m.progress));
    bar.setAttribute("aria-label", m.name + " progress");
    const fill = el("div", "fill");
    fill.style.width = Math.max(0, Math.min(100, m.progress)) + "%";
    bar.append(fill);
    row.append(bar, el("span", "pct", m.progress + "%"));
    li.append(row);

    if (m.note) li.append(el("p", "note", m.note));

    if (m.claims && m.claims.length) {
      const held = el("p", "held");
      held.append("holds ");
      m.claims.forEach((c, i) => {
        if (i) held.append(", ");
        held.append(el("code", null, c.type + "/" + c.name));
      });
      li.append(held);
    }

    const foot = el("p", "foot");
    if (m.state === "alive") foot.append(el("span", null, "heard now"));
    else if (m.state === "suspect") foot.append(live("ago", m.last_seen, "silent, last heard "));
    else if (m.state === "dead") foot.append(live("ago", m.state_since, "died "), " · last heard " + clock(m.last_seen));
    else foot.append(live("ago", m.state_since, "left "));
    if (m.status_updated_at) foot.append(" · ", live("ago", m.status_updated_at, "status "));
    li.append(foot);
    return li;
  }

  function renderCards(members, first) {
    const list = $("cards");
    const seen = new Set();
    members.forEach((m, i) => {
      seen.add(m.node_id);
      const key = JSON.stringify(m);
      const have = cards.get(m.node_id);
      if (!have || have.key !== key) {
        const c = card(m, !first && !!have);
        if (have) have.el.replaceWith(c);
        cards.set(m.node_id, { el: c, key });
      }
      const want = cards.get(m.node_id).el;
      if (list.children[i] !== want) list.insertBefore(want, list.children[i] || null);
    });
    for (const [id, c] of cards) {
      if (!seen.has(id)) {
        c.el.remove();
        cards.delete(id);
      }
    }
    $("no-sessions").hidden = members.length > 0;
  }

  // ------------------------------------------------------------------ side panels

  function renderClaims(claims) {
    const body = $("claims").tBodies[0];
    body.replaceChildren(
      ...claims.map((c) => {
        const tr = el("tr");
        const item = el("td");
        item.append(el("code", null, c.type + "/" + c.name));
        const token = el("span", "token", "token " + c.token);
        item.append(" ", token);
        const ends = el("td", "ends");
        ends.append(live("until", c.expires_at));
        tr.append(item, el("td", "holder", c.holder), ends);
        return tr;
      }),
    );
    $("claims").hidden = claims.length === 0;
    $("no-claims").hidden = claims.length > 0;
  }

  function renderStewards(s) {
    $("epoch").textContent = s.stewards.epoch ? "epoch " + s.stewards.epoch : "";
    const stewards = s.stewards.members;
    $("stewards").replaceChildren(
      ...(stewards.length
        ? stewards.map((st) => {
            const li = el("li");
            li.append(el("span", "name", st.name), " ");
            if (st.state === "gone") li.append(el("span", "muted", "an earlier run, no longer here"));
            else li.append(badge(st.state));
            return li;
          })
        : [el("li", "empty", "No steward set yet.")]),
    );
  }

  function renderBoard(board) {
    // Issue 12: once the API has a board, the feed sends its task rows [{id, title, priority, state,
    // holder, milestone_title, role, …}] in board order; until then it sends null and this says so.
    const box = $("board");
    if (board === null || board === undefined) {
      box.replaceChildren(el("p", "empty", "No board yet: tasks by priority appear here once the mesh has a board."));
      return;
    }
    if (!board.length) {
      box.replaceChildren(el("p", "empty", "The board is empty."));
      return;
    }
    const groups = new Map();
    for (const t of board) {
      const p = t.priority || "P?";
      if (!groups.has(p)) groups.set(p, []);
      groups.get(p).push(t);
    }
    const out = [];
    for (const [p, tasks] of groups) {
      out.push(el("h3", "prio prio-" + p, p));
      const ul = el("ul", "tasks");
      for (const t of tasks) {
        const li = el("li", "task st-" + (t.state || "open"));
        li.append(el("span", "title", t.title), " ", el("span", "tag", t.state || "open"));
        if (t.holder) li.append(" ", el("span", "muted", "by " + t.holder));
        if (t.milestone_title || t.milestone) li.append(" ", el("span", "muted", "· " + (t.milestone_title || t.milestone)));
        if (t.role) li.append(" ", el("span", "role", t.role));
        ul.append(li);
      }
      out.push(ul);
    }
    box.replaceChildren(...out);
  }

  function renderMessages(messages, me) {
    $("messages-who").textContent = me ? "to and from " + me : "";
    $("messages").replaceChildren(
      ...messages.map((m) => {
        const li = el("li", "msg dir-" + m.dir + (m.state === "unread" ? " unread" : ""));
        const head = el("p", "msg-head");
        head.append(el("span", "who", m.from + " → " + m.to), " ", el("span", "tag state", m.state), " ", live("ago", m.sent_at));
        li.append(head, el("p", "subject", m.subject));
        if (m.body !== undefined) li.append(el("p", "body", m.body + (m.truncated ? " …" : "")));
        return li;
      }),
    );
    $("no-messages").hidden = messages.length > 0;
  }

  function renderActivity(entries) {
    const list = $("activity");
    if (entries.length && lastSeq !== null && entries[0].seq < lastSeq) {
      list.replaceChildren(); // numbering started over: a new feed behind the same page
      lastSeq = 0;
    }
    const fresh = lastSeq === null ? entries : entries.filter((e) => e.seq > lastSeq);
    // Entries arrive newest first; prepend oldest-first so the newest ends on top.
    for (const e of fresh.slice().reverse()) {
      const li = el("li", "act kind-" + e.kind + " st-" + e.state);
      li.append(el("time", "at", clock(e.at)), " ", el("strong", null, e.name), " " + e.text);
      list.insertBefore(li, list.firstChild);
    }
    while (list.children.length > 40) list.lastChild.remove();
    if (entries.length) lastSeq = Math.max(lastSeq || 0, entries[0].seq);
    else if (lastSeq === null) lastSeq = 0;
    // Announce changes only after the first picture: opening the page must not read out its history.
    list.setAttribute("aria-live", "polite");
    $("no-activity").hidden = list.children.length > 0;
  }

  // ------------------------------------------------------------------ the whole picture

  function render(s) {
    const first = lastSeq === null;
    $("mesh-name").textContent = s.node.mesh;
    $("served-by").textContent = "node " + s.node.name;
    const count = (st) => s.members.filter((m) => m.state === st).length;
    const alive = count("alive") + count("suspect");
    const parts = [alive + " of " + s.members.length + " sessions alive"];
    if (count("suspect")) parts.push(count("suspect") + " suspect");
    if (count("dead")) parts.push(count("dead") + " dead");
    if (count("left")) parts.push(count("left") + " left");
    parts.push(s.claims.length + (s.claims.length === 1 ? " claim" : " claims"));
    $("summary").textContent = parts.join(" · ");
    document.title = alive + "/" + s.members.length + " alive · mesh " + s.node.mesh;

    const up = s.upstream;
    document.body.classList.toggle("stale", !up.connected);
    if (up.connected) setConn("live", "live via " + s.node.name);
    else setConn("node", "node " + s.node.name + " not answering — reconnecting…");
    $("banner").hidden = up.connected;
    if (!up.connected) {
      $("banner").textContent =
        "The node " + s.node.name + " is not answering (" + up.error + "). What you see is its last picture; " +
        "this page reconnects by itself.";
    }

    renderCards(s.members, first);
    renderClaims(s.claims);
    renderStewards(s);
    renderBoard(s.board);
    renderMessages(s.messages, s.node.name);
    renderActivity(s.activity);
    tick();
  }

  function setConn(kind, text) {
    const c = $("conn");
    c.dataset.conn = kind;
    c.querySelector(".glyph").textContent = { live: "●", node: "◐", server: "✕", token: "✕" }[kind] || "◌";
    $("conn-text").textContent = text;
  }

  // ------------------------------------------------------------------ the stream

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = new EventSource(q("/events"));
    source.addEventListener("state", (e) => render(JSON.parse(e.data)));
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) probe(); // an HTTP error: the browser will not retry
      else setConn("server", "page server unreachable — retrying…");
    };
  }

  async function probe() {
    let status = 0;
    try {
      status = (await fetch(q("/api/state"), { cache: "no-store" })).status;
    } catch (_) {
      status = 0;
    }
    if (status === 401) {
      setConn("token", "this page's token is no longer valid");
      $("banner").hidden = false;
      $("banner").textContent =
        "The page server restarted with a new token: open the URL that `meshctl web` printed this time.";
      retryTimer = setTimeout(connect, 10000);
      return;
    }
    setConn("server", status === 503 ? "too many pages open — retrying…" : "page server unreachable — retrying…");
    retryTimer = setTimeout(connect, 2000);
  }

  setInterval(tick, 1000);
  connect();
})();
