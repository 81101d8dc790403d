// flashstream dashboard: polls /api/v1, follows /api/v1/events (SSE), and plays
// live streams in the page with mpegts.js over HTTP-FLV.  Same-origin only.
"use strict";

(function () {
  const POLL_MS = 2000;
  const HISTORY = 60; // samples per chart (2 minutes at POLL_MS)
  const bitrateHistory = new Map(); // "app/name" -> [bits per second...]
  let player = null;
  let playing = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : String(child ?? ""));
    }
    return node;
  }

  function kbps(bits) {
    if (bits === null || bits === undefined) return "-";
    if (bits >= 1e6) return (bits / 1e6).toFixed(2) + " Mb/s";
    return Math.round(bits / 1000) + " kb/s";
  }

  function bytes(count) {
    if (count === null || count === undefined) return "-";
    if (count >= 1 << 30) return (count / (1 << 30)).toFixed(2) + " GiB";
    if (count >= 1 << 20) return (count / (1 << 20)).toFixed(1) + " MiB";
    if (count >= 1 << 10) return (count / (1 << 10)).toFixed(1) + " KiB";
    return count + " B";
  }

  function seconds(value) {
    if (value === null || value === undefined) return "-";
    const s = Math.floor(value);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h" : "") + (h || m ? m + "m" : "") + (s % 60) + "s";
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function drawChart(canvas, values) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#eef2f6";
    ctx.fillRect(0, 0, w, h);
    if (values.length < 2) return;
    const top = Math.max(...values, 1) * 1.15;
    ctx.strokeStyle = "#1769aa";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((value, i) => {
      const x = (i / (HISTORY - 1)) * w;
      const y = h - (value / top) * h;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  function renderServer(server) {
    const transports = Object.entries(server.connections_by_transport)
      .map(([t, n]) => t + " " + n).join(", ");
    const box = document.getElementById("server");
    box.replaceChildren(
      el("span", {}, "up " + seconds(server.uptime)),
      el("span", {}, server.connections + " connections" + (transports ? " (" + transports + ")" : "")),
      el("span", {}, server.streams + " streams, " + server.viewers + " viewers"),
      el("span", {}, "in " + kbps(server.bitrate_in) + ", out " + kbps(server.bitrate_out)),
      el("span", {}, "CPU " + server.cpu_percent + "%"),
      el("span", {}, "memory " + bytes(server.memory_bytes)),
    );
  }

  function renderStreams(streams) {
    const body = document.querySelector("#streams tbody");
    const seen = new Set();
    for (const stream of streams) {
      const key = stream.app + "/" + stream.name;
      seen.add(key);
      const history = bitrateHistory.get(key) || [];
      history.push(stream.bitrate);
      while (history.length > HISTORY) history.shift();
      bitrateHistory.set(key, history);
      const video = stream.video, audio = stream.audio;
      const videoText = video.codec
        ? video.codec + " " + (video.width ? video.width + "x" + video.height : "") +
          (video.frame_rate ? " " + video.frame_rate + " fps" : "") + " " + kbps(video.bitrate)
        : "-";
      const audioText = audio.codec
        ? audio.codec + (audio.sample_rate ? " " + audio.sample_rate + " Hz" : "") + " " + kbps(audio.bitrate)
        : "-";
      const viewers = Object.entries(stream.viewers_by_transport).map(([t, n]) => t + " " + n).join(", ");
      let row = body.querySelector('tr[data-stream="' + CSS.escape(key) + '"]');
      if (!row) {
        const canvas = el("canvas", { class: "chart", width: 240, height: 40 });
        const button = el("button", { class: "play", "data-stream": key }, "Play");
        button.addEventListener("click", () => play(stream.app, stream.name));
        row = el("tr", { "data-stream": key });
        for (let i = 0; i < 7; i++) row.append(el("td"));
        row.append(el("td", {}, canvas), el("td", {}, button));
        body.append(row);
      }
      const cells = row.children;
      cells[0].textContent = key;
      cells[1].textContent = (stream.publisher.transport || "") + " " + (stream.publisher.address || "");
      cells[2].textContent = videoText;
      cells[3].textContent = audioText;
      cells[4].textContent = kbps(stream.bitrate);
      cells[5].textContent = video.keyframe_interval_ms ? (video.keyframe_interval_ms / 1000).toFixed(2) + " s" : "-";
      cells[6].textContent = viewers || "0";
      drawChart(cells[7].firstChild, history);
    }
    for (const row of [...body.querySelectorAll("tr")]) {
      if (!seen.has(row.dataset.stream)) {
        bitrateHistory.delete(row.dataset.stream);
        row.remove();
      }
    }
    document.getElementById("no-streams").hidden = streams.length > 0;
  }

  function renderClients(clients) {
    const body = document.querySelector("#clients tbody");
    body.replaceChildren(...clients.map((c) => el("tr", { "data-client": c.id },
      el("td", { class: "num" }, c.id),
      el("td", {}, c.transport),
      el("td", {}, c.address),
      el("td", {}, c.client_version || "-"),
      el("td", {}, (c.app || "-") + " " + c.streams.map((s) => s.name + (s.mode ? " (" + s.mode + ")" : "")).join(", ")),
      el("td", { class: "num" }, kbps(c.bitrate_in)),
      el("td", { class: "num" }, kbps(c.bitrate_out)),
      el("td", { class: "num" }, c.rtt_ms === null ? "-" : c.rtt_ms + " ms"),
      el("td", { class: "num" }, c.bandwidth ? kbps(c.bandwidth.kbit_down * 1000) : "-"),
      el("td", { class: "num" }, bytes(c.unacknowledged_bytes)),
      el("td", { class: "num" }, bytes(c.send_backlog)),
      el("td", { class: "num" }, c.frames_dropped),
      el("td", { class: "num" }, seconds(c.uptime)),
    )));
  }

  async function refresh() {
    try {
      const [server, streams, clients] = await Promise.all([
        getJSON("/api/v1/server"), getJSON("/api/v1/streams"), getJSON("/api/v1/clients"),
      ]);
      renderServer(server);
      renderStreams(streams);
      renderClients(clients);
    } catch (error) {
      document.getElementById("server").textContent = "cannot reach the API: " + error.message;
    } finally {
      setTimeout(refresh, POLL_MS);
    }
  }

  function followEvents() {
    const list = document.getElementById("events");
    const source = new EventSource("/api/v1/events");
    const kinds = ["connect", "publish", "play", "pause", "unpause", "seek", "stop", "disconnect"];
    for (const kind of kinds) {
      source.addEventListener(kind, (message) => {
        const e = JSON.parse(message.data);
        const when = new Date(e.time * 1000).toLocaleTimeString();
        const what = [when, e.kind, e.transport, e.address, e.app + (e.stream ? "/" + e.stream : "")];
        if (e.duration !== null) what.push(seconds(e.duration));
        const moved = e.stream_bytes_out ?? e.stream_bytes_in;
        if (moved !== null && moved !== undefined) what.push(bytes(moved));
        list.prepend(el("li", { class: e.kind, "data-event-id": e.id }, what.join("  ")));
        while (list.children.length > 200) list.lastChild.remove();
      });
    }
  }

  function play(app, name) {
    const video = document.getElementById("player");
    const status = document.getElementById("player-status");
    if (player) {
      player.destroy();
      player = null;
    }
    if (!window.mpegts || !mpegts.getFeatureList().mseLivePlayback) {
      status.textContent = "This browser cannot play live HTTP-FLV (no Media Source Extensions).";
      return;
    }
    playing = app + "/" + name;
    document.getElementById("player-title").textContent = playing;
    status.textContent = "Playing /" + playing + ".flv";
    player = mpegts.createPlayer(
      { type: "flv", isLive: true, url: "/" + encodeURI(app) + "/" + encodeURI(name) + ".flv" },
      { enableStashBuffer: false, liveBufferLatencyChasing: true },
    );
    player.on(mpegts.Events.ERROR, (type, detail) => {
      status.textContent = "Player stopped: " + type + " " + detail;
    });
    player.attachMediaElement(video);
    player.load();
    const started = player.play();
    if (started && started.catch) started.catch((error) => { status.textContent = error.message; });
  }

  window.flashstreamDashboard = { play, playing: () => playing };
  if (window.mpegts) mpegts.LoggingControl.enableVerbose = false;
  refresh();
  followEvents();
})();
