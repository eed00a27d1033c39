// The workspace's only script: seek the player from events and hits, follow live calls.
"use strict";

const LEAD_S = 2; // play from 2 s before an event, so the listener hears it come

function seekTo(player, time) {
  const target = Math.max(0, time - LEAD_S);
  const go = () => {
    player.currentTime = target;
    player.play().catch(() => {}); // a refused autoplay leaves the player seeked, paused
  };
  if (player.readyState >= 1) {
    go();
  } else {
    // Nothing is fetched before the reviewer asks (preload none: a view is not a play).
    player.addEventListener("loadedmetadata", go, { once: true });
    player.preload = "auto";
    player.load();
  }
}

document.addEventListener("click", (ev) => {
  const button = ev.target.closest("button.seek");
  const player = document.getElementById("player");
  if (!button || !player) return;
  seekTo(player, parseFloat(button.dataset.time));
});

function clock(s) {
  const m = Math.floor(s / 60);
  const r = Math.floor(s % 60);
  return `${m}:${String(r).padStart(2, "0")}`;
}

function item(cls, parts) {
  const li = document.createElement("li");
  li.className = cls;
  for (const [tag, c, text] of parts) {
    const el = document.createElement(tag);
    if (c) el.className = c;
    el.textContent = text;
    li.append(el, " ");
  }
  return li;
}

function eventItem(e) {
  const li = item(`event ${e.severity}`, [
    ["span", "time", clock(e.time)], ["span", "kind", e.kind], ["span", "rule", e.rule],
    ["q", "evidence", e.evidence], ["div", "message", e.prompt || e.message],
  ]);
  li.dataset.id = String(e.id);
  return li;
}

// A call in progress: its transcript and prompts are pushed as they are stored (Server-Sent
// Events). The browser reconnects by itself with the last event id, so nothing is missed.
function followCall(section) {
  const list = section.querySelector("ol.transcript");
  const events = document.querySelector("#events ol.events");
  const stream = new EventSource(section.dataset.stream);
  stream.addEventListener("segment", (msg) => {
    const s = JSON.parse(msg.data);
    // The page was rendered a moment before the stream opened: skip a line it shows.
    const shown = [...list.querySelectorAll("li.seg")].some(
      (li) => li.dataset.start === String(s.start) && li.classList.contains(s.speaker));
    if (shown) return;
    const li = item(`seg ${s.speaker}`, [
      ["span", "time", clock(s.start)], ["span", "speaker", s.speaker], ["span", "text", s.text],
    ]);
    li.dataset.start = String(s.start);
    list.append(li);
  });
  stream.addEventListener("prompt", (msg) => {
    const e = JSON.parse(msg.data);
    if (!events.querySelector(`li[data-id="${e.id}"]`)) events.append(eventItem(e));
  });
  stream.addEventListener("ended", () => {
    stream.close();
    location.reload(); // ended: show the scorecard
  });
}

function floorCard(c) {
  const card = document.createElement("li");
  card.className = "live-call";
  card.dataset.call = c.call;
  const link = document.createElement("a");
  link.href = `/calls/${encodeURIComponent(c.call)}`;
  link.textContent = c.call;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.dataset.agent = c.agent;
  meta.dataset.started = c.started;
  const events = document.createElement("ol");
  events.className = "events";
  card.append(link, meta, events);
  for (const e of c.events || []) addFloorEvent(card, e);
  setHeard(card, c.audio_time || 0);
  return card;
}

function setHeard(card, time) {
  const meta = card.querySelector(".meta");
  meta.dataset.heard = String(Math.max(time, parseFloat(meta.dataset.heard || "0")));
  meta.textContent = ` ${meta.dataset.agent} · since ${meta.dataset.started} · `
    + `${clock(parseFloat(meta.dataset.heard))} heard`;
}

function addFloorEvent(card, e) {
  const list = card.querySelector("ol.events");
  if (list.querySelector(`li[data-id="${e.id}"]`)) return;
  list.append(eventItem(e));
  while (list.children.length > 8) list.firstElementChild.remove();
  setHeard(card, e.time);
}

// The floor: a snapshot when the stream opens (again after a reconnect), then each change.
function followFloor(board) {
  const count = () => {
    document.getElementById("count").textContent = String(board.children.length);
  };
  const card = (id) => board.querySelector(`li[data-call="${CSS.escape(id)}"]`);
  const stream = new EventSource("/api/live/stream");
  stream.addEventListener("floor", (msg) => {
    board.replaceChildren(...JSON.parse(msg.data).calls.map(floorCard));
    count();
  });
  stream.addEventListener("started", (msg) => {
    const c = JSON.parse(msg.data);
    if (!card(c.call)) board.append(floorCard({ ...c, events: [] }));
    count();
  });
  stream.addEventListener("prompt", (msg) => {
    const e = JSON.parse(msg.data);
    const found = card(e.call);
    if (found) addFloorEvent(found, e);
  });
  stream.addEventListener("progress", (msg) => {
    const p = JSON.parse(msg.data);
    const found = card(p.call);
    if (found) setHeard(found, p.audio_time);
  });
  stream.addEventListener("ended", (msg) => {
    const found = card(JSON.parse(msg.data).call);
    if (found) found.remove();
    count();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("[data-stream]");
  if (section) followCall(section);
  const board = document.getElementById("floor");
  if (board) followFloor(board);
});
