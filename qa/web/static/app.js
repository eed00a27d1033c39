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

async function followCall(section) {
  const reply = await fetch(section.dataset.live, { credentials: "same-origin" });
  if (!reply.ok) return;
  const data = await reply.json();
  const list = section.querySelector("ol.transcript");
  list.replaceChildren(...data.segments.map((s) => item(`seg ${s.speaker}`, [
    ["span", "time", clock(s.start)], ["span", "speaker", s.speaker], ["span", "text", s.text],
  ])));
  const events = document.querySelector("#events ol.events");
  events.replaceChildren(...data.events.map((e) => item(`event ${e.severity}`, [
    ["span", "time", clock(e.time)], ["span", "kind", e.kind], ["span", "rule", e.rule],
    ["q", "evidence", e.evidence], ["div", "message", e.message],
  ])));
  if (data.running) setTimeout(() => followCall(section), 2000);
  else location.reload(); // ended: show the scorecard
}

async function refreshFloor(board) {
  const reply = await fetch("/api/live", { credentials: "same-origin" });
  if (reply.ok) {
    const data = await reply.json();
    board.replaceChildren(...data.calls.map((c) => {
      const card = document.createElement("li");
      card.className = "live-call";
      card.dataset.call = c.call_id;
      const link = document.createElement("a");
      link.href = `/calls/${encodeURIComponent(c.call_id)}`;
      link.textContent = c.call_id;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = ` ${c.agent} · since ${c.started} · ${clock(c.audio_time)} heard`;
      const events = document.createElement("ol");
      events.className = "events";
      events.append(...c.events.map((e) => item(`event ${e.severity}`, [
        ["span", "time", clock(e.time)], ["span", "kind", e.kind], ["span", "rule", e.rule],
        ["div", "message", e.message],
      ])));
      card.append(link, meta, events);
      return card;
    }));
    document.getElementById("count").textContent = String(data.calls.length);
  }
  setTimeout(() => refreshFloor(board), 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("[data-live]");
  if (section) setTimeout(() => followCall(section), 2000);
  const board = document.getElementById("floor");
  if (board) refreshFloor(board);
});
