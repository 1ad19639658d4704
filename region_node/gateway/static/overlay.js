// reactmesh overlay: live counts, floating emoji and polls from WS /v1/streams/{id}; taps batched to
// POST /v1/reactions like the SDK does (one session id per page load, batches numbered 1, 2, 3..., every
// unacknowledged batch resent in order until acked, Retry-After honoured, full-jitter backoff otherwise).
// Live comments arrive on the same socket (messages of type "comments") and are posted to
// POST /v1/streams/{id}/comments with a random client_key, resent with the same key until answered (stored once).
(() => {
  "use strict";
  const params = new URLSearchParams(location.search);
  const stream = params.get("stream") || "demo-0";
  const token = params.get("token") || "";
  const viewer = params.get("viewer") || "web-" + Math.random().toString(36).slice(2, 10);
  const BATCH_MS = 250;
  const GLYPH = { like: "👍", heart: "❤️", laugh: "😂", wow: "😮", sad: "😢", fire: "🔥", clap: "👏", love: "😍" };
  const glyph = (e) => GLYPH[e] || "✨";
  const $ = (id) => document.getElementById(id);
  const auth = token ? { Authorization: "Bearer " + token } : {};

  // What the page shows, for people and for tests (window.reactmesh).
  const state = { stream, viewer, shown: {}, polls: {}, last: null, frames: 0, live: false, error: null,
    sent: { batches: 0, acked: 0, accepted_taps: 0, rate_limited_taps: 0, rejected: 0, retries: 0, unacked: 0 },
    comments: {}, commentOrder: [], pinned: null, commentFrames: 0, gaps: 0,
    posted: { sent: 0, stored: 0, duplicates: 0, retries: 0, refused: 0 } };
  const MAX_SHOWN_COMMENTS = 80;
  window.reactmesh = state;
  $("stream-name").textContent = stream;

  const toast = (text) => {
    const t = $("toast");
    t.textContent = text;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
  };
  const jitter = (failures, initial, max) => Math.random() * Math.min(max, initial * 2 ** Math.min(failures - 1, 20));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // -- display --

  const counters = {};
  function renderCount(emoji) {
    let el = counters[emoji];
    if (!el) {
      el = document.createElement("div");
      el.className = "counter";
      el.innerHTML = `<span class="glyph">${glyph(emoji)}</span><span class="n" data-testid="count-${emoji}">0</span>`;
      $("counters").appendChild(el);
      counters[emoji] = el;
    }
    el.querySelector(".n").textContent = (state.shown[emoji] || 0).toLocaleString("en-US").replace(/,/g, " ");
    return el;
  }

  function float(emoji, n, spreadMs) {
    const lane = $("lane");
    const shown = Math.min(n, 8); // the counts stay exact; the animation is a taste of them
    for (let i = 0; i < shown; i++) {
      setTimeout(() => {
        if (lane.childElementCount > 120) return;
        const f = document.createElement("div");
        f.className = "float";
        f.textContent = glyph(emoji);
        f.style.left = 10 + Math.random() * 75 + "%";
        f.style.setProperty("--sway", (Math.random() * 80 - 40).toFixed(0) + "px");
        f.style.setProperty("--dur", (2.2 + Math.random() * 1.4).toFixed(2) + "s");
        f.style.fontSize = 24 + Math.random() * 16 + "px";
        f.addEventListener("animationend", () => f.remove());
        lane.appendChild(f);
      }, (spreadMs * i) / shown);
    }
  }

  function renderPoll(poll) {
    let card = document.querySelector(`[data-poll="${CSS.escape(poll.poll_id)}"]`);
    if (!card) {
      card = document.createElement("div");
      card.className = "poll";
      card.dataset.poll = poll.poll_id;
      card.dataset.testid = "poll";
      $("polls").appendChild(card);
    }
    const total = poll.tallies.reduce((a, b) => a + b, 0);
    const open = poll.state === "open";
    const mine = card.dataset.mine;
    card.innerHTML = `<h3></h3>`;
    card.querySelector("h3").textContent = poll.question;
    if (!open) card.querySelector("h3").insertAdjacentHTML("beforeend", `<span class="closed">closed</span>`);
    poll.options.forEach((label, i) => {
      const b = document.createElement("button");
      b.className = "option" + (String(i) === mine ? " mine" : "");
      b.disabled = !open;
      b.dataset.testid = `vote-${i}`;
      const pct = total ? Math.round((100 * poll.tallies[i]) / total) : 0;
      b.innerHTML = `<div class="bar" style="width:${pct}%"></div><span class="label"></span>` +
        `<span class="tally" data-testid="tally-${i}">${poll.tallies[i]}</span>`;
      b.querySelector(".label").textContent = label;
      b.onclick = () => vote(poll.poll_id, i, card);
      card.appendChild(b);
    });
  }

  function applyFrame(f) {
    if (f.kind === "snapshot") {
      state.shown = { ...f.counts };
      state.polls = {};
      for (const e of Object.keys(state.shown)) renderCount(e);
    } else {
      for (const [e, n] of Object.entries(f.counts)) {
        state.shown[e] = (state.shown[e] || 0) + n;
        const el = renderCount(e);
        el.classList.add("bump");
        setTimeout(() => el.classList.remove("bump"), 150);
        // Overload (degrade_level > 0): counts stay exact, the animation calms down.
        if (f.degrade_level === 0 || Math.random() < 0.3) float(e, n, 100 * (f.coalesced || 1));
      }
    }
    for (const p of f.polls) {
      state.polls[p.poll_id] = p;
      renderPoll(p);
    }
    state.last = [f.epoch, f.seq];
    state.frames += 1;
    if (f.drained) setStatus("ended", false);
  }

  function setStatus(text, live) {
    state.live = live;
    $("status").textContent = text;
    $("status").classList.toggle("live", live);
    $("status-dot").classList.toggle("live", live);
  }

  // -- live frames: one socket, reconnected with full-jitter backoff; each reconnect starts with a snapshot --

  // -- live comments: de-duplicated by id (a comment liked into the priority lane comes again) --

  function commentEl(c) {
    const el = document.createElement("div");
    el.className = "comment" + (c.priority ? " priority" : "");
    el.dataset.testid = "comment";
    el.dataset.id = c.comment_id;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = c.viewer_id || "anonymous";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = c.text;
    el.append(who, text);
    if (c.likes) el.insertAdjacentHTML("beforeend", `<span class="likes">♥ ${Number(c.likes)}</span>`);
    return el;
  }

  function renderComments() {
    const list = $("clist");
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.replaceChildren(...state.commentOrder.map((id) => commentEl(state.comments[id])));
    if (stick) list.scrollTop = list.scrollHeight;
    const pin = $("pinned");
    pin.classList.toggle("show", !!state.pinned);
    pin.textContent = state.pinned ? `${state.pinned.viewer_id}: ${state.pinned.text}` : "";
  }

  function addComment(c) {
    if (!(c.comment_id in state.comments)) state.commentOrder.push(c.comment_id);
    state.comments[c.comment_id] = c;
  }

  function applyComments(m) {
    if (m.snapshot) {
      state.comments = {};
      state.commentOrder = [];
    }
    for (const c of m.comments) addComment(c);
    for (const id of m.deleted_ids) {
      if (id in state.comments) {
        delete state.comments[id];
        state.commentOrder = state.commentOrder.filter((x) => x !== id);
      }
    }
    while (state.commentOrder.length > MAX_SHOWN_COMMENTS) delete state.comments[state.commentOrder.shift()];
    if ("pinned" in m) state.pinned = m.pinned;
    if (m.gap && !m.snapshot) state.gaps += 1;
    state.commentFrames += 1;
    renderComments();
  }

  async function postComment(text) {
    const key = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    const body = JSON.stringify({ viewer_id: viewer, text, client_key: key });
    state.posted.sent += 1;
    for (let fails = 1; ; fails++) {
      let res = null;
      try {
        res = await fetch(`/v1/streams/${encodeURIComponent(stream)}/comments`, {
          method: "POST", headers: { "Content-Type": "application/json", ...auth }, body });
      } catch (e) {
        res = null;
      }
      if (res && res.ok) {
        const r = await res.json();
        state.posted.stored += 1;
        if (r.duplicate) state.posted.duplicates += 1;
        // Shown from the answer at once, de-duplicated by id when the socket brings it; a shadowed comment
        // (muted author, blocklisted text) never comes on the socket, so its author sees it only this way.
        if (!(r.comment.comment_id in state.comments)) {
          addComment(r.comment);
          renderComments();
        }
        return;
      }
      if (res && res.status >= 400 && res.status < 500 && res.status !== 429) {
        state.posted.refused += 1;
        toast("comment not posted: " + ((await res.json()).detail || res.status));
        return;
      }
      state.posted.retries += 1; // the same client_key: a comment that did arrive is stored once
      const after = res && res.headers.get("Retry-After");
      await sleep(after ? Number(after) * 1000 + Math.random() * 250 : 100 + jitter(fails, 250, 5000));
    }
  }

  // Message types register here; unknown types are ignored.
  const handlers = { frame: applyFrame, comments: applyComments,
    error: (m) => { state.error = m; toast(m.detail || "refused"); } };
  window.reactmesh.handlers = handlers;

  let failures = 0;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const q = token ? "?access_token=" + encodeURIComponent(token) : "";
    const ws = new WebSocket(`${scheme}://${location.host}/v1/streams/${encodeURIComponent(stream)}${q}`, ["reactmesh.v1"]);
    ws.onopen = () => { failures = 0; setStatus("live", true); };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      const h = handlers[m.type];
      if (h) h(m);
    };
    ws.onclose = (ev) => {
      if (ev.code >= 4400 && ev.code < 4500) { setStatus("refused " + (ev.code - 4000), false); return; }
      if (ev.code === 1000) { setStatus("ended", false); return; } // the stream was drained
      setStatus("reconnecting", false);
      failures += 1;
      setTimeout(connect, 100 + jitter(failures, 250, 5000));
    };
  }

  // -- taps: batches like the SDK's --

  const session = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  let pending = {};
  let nextSeq = 1;
  const unacked = [];
  let sending = false;

  function tap(emoji, button) {
    pending[emoji] = (pending[emoji] || 0) + 1;
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 90);
  }

  function closeBatch() {
    if (Object.keys(pending).length === 0) return;
    unacked.push({ session_id: session, viewer_id: viewer, seq: nextSeq++, stream_id: stream, counts: pending,
      client_time_ms: Date.now() });
    pending = {};
    state.sent.batches += 1;
    state.sent.unacked = unacked.length;
    if (!sending) sendLoop();
  }

  async function sendLoop() {
    sending = true;
    let fails = 0;
    while (unacked.length) {
      const batch = unacked[0];
      let res = null;
      try {
        res = await fetch("/v1/reactions", { method: "POST", headers: { "Content-Type": "application/json", ...auth },
          body: JSON.stringify(batch) });
      } catch (e) {
        res = null;
      }
      if (res && res.status === 200) {
        const ack = await res.json();
        unacked.shift();
        fails = 0;
        state.sent.acked += 1;
        if (ack.outcome === "ACCEPTED") {
          state.sent.accepted_taps += ack.accepted_taps;
          state.sent.rate_limited_taps += ack.rate_limited_taps;
        }
      } else if (res && res.status === 400) {
        const ack = await res.json();
        unacked.shift(); // REJECTED: resending it would fail again
        state.sent.rejected += 1;
        toast(`not counted: ${ack.reject_reason || ack.detail}`);
      } else if (res && (res.status === 401 || res.status === 403)) {
        toast("sign in again: " + (await res.json()).detail);
        break;
      } else {
        state.sent.retries += 1;
        fails += 1;
        const after = res && res.headers.get("Retry-After");
        await sleep(after ? Number(after) * 1000 + Math.random() * 250 : 100 + jitter(fails, 250, 5000));
      }
      state.sent.unacked = unacked.length;
      $("mine").textContent = `${state.sent.accepted_taps} taps counted` +
        (state.sent.rate_limited_taps ? `, ${state.sent.rate_limited_taps} over the limit` : "");
    }
    sending = false;
  }

  async function vote(pollId, option, card) {
    const res = await fetch(`/v1/polls/${encodeURIComponent(pollId)}/votes`, {
      method: "POST", headers: { "Content-Type": "application/json", ...auth },
      body: JSON.stringify({ viewer_id: viewer, option }) }).catch(() => null);
    if (res && res.ok) {
      card.dataset.mine = String(option);
      renderPoll((await res.json()).poll);
    } else {
      toast("vote not counted" + (res ? `: ${(await res.json()).detail}` : ""));
    }
  }

  async function start() {
    let reactions = ["like", "heart", "laugh", "wow", "sad", "fire"];
    try {
      reactions = (await (await fetch("/v1/config")).json()).reactions;
    } catch (e) { /* the defaults */ }
    for (const e of reactions) {
      const b = document.createElement("button");
      b.className = "tap";
      b.textContent = glyph(e);
      b.title = e;
      b.dataset.testid = `tap-${e}`;
      b.onclick = () => tap(e, b);
      $("tapbar").appendChild(b);
    }
    $("cform").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = $("ctext").value.trim();
      if (!text) return;
      $("ctext").value = "";
      postComment(text);
    });
    setInterval(closeBatch, BATCH_MS);
    connect();
  }
  start();
})();
