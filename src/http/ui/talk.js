// The talk page: a browser satellite. Speaks satellite protocol v1 to `api/v1/satellite` on the
// ingress instance: microphone at 16 kHz from an AudioWorklet, replies at 24 kHz played through a
// second AudioContext, push-to-talk with client-side turns.
import { api, el, toast } from "./common.js";
import { lineCosts } from "./cost.js";

const IN_RATE = 16000;
const OUT_RATE = 24000;
const FRAME_MS = 20;

const $ = (id) => document.getElementById(id);
const ui = {
  connect: $("connect"),
  ptt: $("ptt"),
  level: $("level"),
  conn: $("conn"),
  state: $("state"),
  sent: $("sent"),
  played: $("played"),
  transcript: $("transcript"),
  micHelp: $("mic-help"),
  micHelpWhy: $("mic-help-why"),
};

/** @type {{ws: WebSocket, mic: MediaStream, micCtx: AudioContext, playCtx: AudioContext} | null} */
let link = null;
let ready = false;
let talking = false;
let sentMs = 0;

// ── microphone availability ─────────────────────────────────────────────────────────────────
/**
 * Why this page can have no microphone, or null when it can. Browsers give `getUserMedia` only to
 * secure contexts (HTTPS, or `localhost`): on `http://homeassistant.local:8123` there is no
 * `navigator.mediaDevices` at all.
 */
function micUnavailable() {
  if (!window.isSecureContext)
    return `Your browser gives the microphone only to pages opened over HTTPS or on this computer, and this page came from ${location.origin}.`;
  if (!navigator.mediaDevices?.getUserMedia) return "This browser offers no microphone to web pages.";
  return null;
}

/** Shows why there is no microphone and keeps Connect off; true when the page can talk. */
function checkMic() {
  const why = micUnavailable();
  ui.micHelp.hidden = why === null;
  if (why === null) return true;
  ui.micHelpWhy.textContent = why;
  ui.connect.disabled = true;
  ui.connect.title = "No microphone on this connection";
  return false;
}

// ── playback ────────────────────────────────────────────────────────────────────────────────
/** Scheduled reply chunks, in order: {source, start, end} on playCtx's clock. */
let chunks = [];
let nextStart = 0;
let playedTotalMs = 0;
/** Played ms of the current response (what playback.done reports). */
let responsePlayedMs = 0;
let responseEnded = true;

function setConn(value) {
  ui.conn.textContent = value;
  ui.conn.className = `badge ${value}`;
}

function showPlayed() {
  ui.played.dataset.ms = String(Math.round(playedTotalMs));
  ui.played.textContent = `${Math.round(playedTotalMs)} ms of reply audio`;
}

function playChunk(buf) {
  const ctx = link?.playCtx;
  if (!ctx || buf.byteLength < 2) return;
  const pcm = new Int16Array(buf, 0, buf.byteLength >> 1);
  const audio = ctx.createBuffer(1, pcm.length, OUT_RATE);
  const data = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 0x8000;
  const source = ctx.createBufferSource();
  source.buffer = audio;
  source.connect(ctx.destination);
  const start = Math.max(nextStart, ctx.currentTime + 0.05);
  source.start(start);
  nextStart = start + audio.duration;
  chunks.push({ source, start, end: nextStart });
}

/** Moves finished chunks into the played counters; reports playback.done when a response drained. */
function tickPlayback() {
  const ctx = link?.playCtx;
  if (!ctx) return;
  const now = ctx.currentTime;
  while (chunks.length > 0 && chunks[0].end <= now) {
    const c = chunks.shift();
    const ms = (c.end - c.start) * 1000;
    playedTotalMs += ms;
    responsePlayedMs += ms;
  }
  showPlayed();
  if (responseEnded && chunks.length === 0 && responsePlayedMs > 0) {
    send({ type: "playback.done", played_ms: Math.round(responsePlayedMs) });
    responsePlayedMs = 0;
  }
}

/** Stops and drops every queued chunk (barge-in, cancel); counts what was really heard. */
function clearPlayback() {
  const now = link?.playCtx.currentTime ?? 0;
  for (const c of chunks) {
    c.source.stop();
    const heard = Math.max(0, Math.min(now, c.end) - c.start) * 1000;
    playedTotalMs += heard;
    responsePlayedMs += heard;
  }
  chunks = [];
  nextStart = 0;
  showPlayed();
  if (responsePlayedMs > 0) send({ type: "playback.done", played_ms: Math.round(responsePlayedMs) });
  responsePlayedMs = 0;
  responseEnded = true;
}

// ── transcript ──────────────────────────────────────────────────────────────────────────────
const partial = { user: null, assistant: null };
/** The newest finished line of each role, where its cost goes. */
const lastLine = { user: null, assistant: null };
const annotateCosts = lineCosts("talk", "talk");
/**
 * Lines stay in spoken order. The user's words are transcribed on the side and often arrive after
 * the reply has begun (its text, a tool, an approval): from the end of a turn until the user's
 * transcript comes, the first line of the reply is remembered and the transcript goes in before it.
 */
let awaitingUser = false;
let replyStart = null;

function place(node, role) {
  if (role === "user" && awaitingUser) {
    awaitingUser = false;
    const before = replyStart;
    replyStart = null;
    if (before?.isConnected) {
      ui.transcript.insertBefore(node, before);
      return;
    }
  } else if (awaitingUser && replyStart === null) replyStart = node;
  ui.transcript.append(node);
}

function say(role, text, final) {
  let bubble = partial[role];
  if (!bubble) {
    bubble = el("div", { class: `bubble ${role}` });
    place(bubble, role);
  }
  if (final) {
    bubble.textContent = text;
    bubble.classList.remove("partial");
    partial[role] = null;
    lastLine[role] = bubble;
    if (role === "user") void annotateCosts(lastLine);
  } else {
    bubble.textContent = role === "assistant" ? bubble.textContent + text : text;
    bubble.classList.add("partial");
    partial[role] = bubble;
  }
}

function note(...children) {
  const n = el("div", { class: "bubble system" }, ...children);
  place(n, "system");
  return n;
}

// ── approvals asked on this page ────────────────────────────────────────────────────────────
/** Open prompts by approval id: {server, tool, node, timer}. */
const prompts = new Map();

function settleApproval(match, verdict, outcome = "") {
  for (const [id, p] of prompts)
    if (match(p)) {
      clearInterval(p.timer);
      p.node.textContent = `${verdict} ${p.tool}`;
      p.node.dataset.outcome = outcome;
      prompts.delete(id);
    }
}

/** What the page says when `approval.done` settles a prompt (possibly answered elsewhere). */
const OUTCOME_TEXT = {
  approved: "Approved",
  denied: "Denied",
  timeout: "No answer, not run:",
  cancelled: "Withdrawn:",
};

function askApproval(msg) {
  const yes = el("button", { type: "button", class: "raised" }, "Approve");
  const no = el("button", { type: "button", class: "danger" }, "Deny");
  const left = el("span", { class: "countdown" });
  const node = note(`Allow ${msg.server} → ${msg.tool}? `, left, " ", no, yes);
  const deadline = Date.now() + msg.timeout_s * 1000;
  const tick = () => {
    const s = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    left.textContent = `${s} s`;
    if (s === 0) settleApproval((p) => p.id === msg.id, "No answer, not run:");
  };
  const prompt = { id: msg.id, server: msg.server, tool: msg.tool, node, timer: setInterval(tick, 250) };
  prompts.set(msg.id, prompt);
  tick();
  const reply = (approve) => {
    send({ type: "approval.reply", id: msg.id, approve });
    settleApproval((p) => p.id === msg.id, approve ? "Approved" : "Denied", approve ? "approved" : "denied");
  };
  yes.addEventListener("click", () => reply(true));
  no.addEventListener("click", () => reply(false));
}

// ── protocol ────────────────────────────────────────────────────────────────────────────────
function send(msg) {
  if (link?.ws.readyState === WebSocket.OPEN) link.ws.send(JSON.stringify(msg));
}

function onMessage(msg) {
  switch (msg.type) {
    case "session_ready":
      ready = true;
      setConn("ready");
      ui.ptt.disabled = false;
      break;
    case "state":
      ui.state.textContent = msg.value;
      break;
    case "response.start":
      responseEnded = false;
      responsePlayedMs = 0;
      break;
    case "response.end":
      responseEnded = true;
      void annotateCosts(lastLine);
      break;
    case "playback.clear":
      clearPlayback();
      break;
    case "transcript":
      say(msg.role, msg.text, msg.final);
      break;
    case "tool":
      note(
        `${msg.status === "started" ? "Using" : msg.status === "completed" ? "Used" : "Failed"} ${msg.name} (${msg.server})`,
      );
      break;
    case "approval.request":
      askApproval(msg);
      break;
    case "approval.done":
      // Answered here, on a device or in the admin page, timed out or withdrawn: the prompt goes.
      settleApproval((p) => p.id === msg.id, OUTCOME_TEXT[msg.outcome] ?? "Settled:", msg.outcome);
      break;
    case "error":
      note(`Error: ${msg.message} (${msg.code})`);
      if (msg.fatal) toast(msg.message);
      break;
    case "session.end":
      note(`Session ended: ${msg.reason}`);
      break;
    default:
      break;
  }
}

// ── push-to-talk ────────────────────────────────────────────────────────────────────────────
function startTalking() {
  if (!ready || talking) return;
  if (chunks.length > 0) {
    send({ type: "cancel", reason: "push-to-talk" });
    clearPlayback();
  }
  talking = true;
  ui.ptt.classList.add("active");
  ui.ptt.setAttribute("aria-pressed", "true");
  ui.ptt.textContent = "Listening…";
  send({ type: "turn.start" });
}

function stopTalking() {
  if (!talking) return;
  talking = false;
  ui.ptt.classList.remove("active");
  ui.ptt.setAttribute("aria-pressed", "false");
  ui.ptt.textContent = "Hold to talk";
  send({ type: "turn.end" });
  awaitingUser = true;
  replyStart = null;
}

function teardown(reason) {
  const l = link;
  link = null;
  ready = false;
  talking = false;
  chunks = [];
  nextStart = 0;
  ui.ptt.disabled = true;
  ui.connect.disabled = micUnavailable() !== null;
  ui.connect.textContent = "Connect";
  setConn("disconnected");
  if (reason) note(reason);
  if (!l) return;
  for (const t of l.mic.getTracks()) t.stop();
  void l.micCtx.close();
  void l.playCtx.close();
  if (l.ws.readyState <= WebSocket.OPEN) l.ws.close(1000, "page closed the session");
}

async function connect() {
  if (link) {
    teardown("Disconnected.");
    return;
  }
  if (!checkMic()) return;
  ui.connect.disabled = true;
  setConn("connecting");
  try {
    const info = await api("./api/satellite");
    const url = new URL(info.path, document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const micCtx = new AudioContext({ sampleRate: IN_RATE });
    await micCtx.audioWorklet.addModule(new URL("./mic-worklet.js", document.baseURI));
    const node = new AudioWorkletNode(micCtx, "mic-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
    });
    const mute = micCtx.createGain();
    mute.gain.value = 0;
    micCtx.createMediaStreamSource(mic).connect(node).connect(mute).connect(micCtx.destination);
    const playCtx = new AudioContext({ sampleRate: OUT_RATE });
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    link = { ws, mic, micCtx, playCtx };

    node.port.onmessage = (e) => {
      ui.level.style.width = `${Math.min(100, Math.round(e.data.rms * 400))}%`;
      if (!talking || ws.readyState !== WebSocket.OPEN) return;
      ws.send(e.data.pcm);
      sentMs += FRAME_MS;
      ui.sent.dataset.ms = String(sentMs);
      ui.sent.textContent = `${sentMs} ms of audio`;
    };
    ws.addEventListener("open", () => {
      const clientId = `talk-page-${Math.random().toString(16).slice(2, 10)}`;
      send({
        type: "hello",
        protocol: 1,
        client_id: clientId,
        name: "Talk page",
        token: info.talkToken,
        audio: { in: { rate: IN_RATE }, out: { rate: OUT_RATE } },
        turn: "client",
      });
    });
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string") {
        playChunk(e.data);
        return;
      }
      try {
        onMessage(JSON.parse(e.data));
      } catch {
        // a malformed frame from the server is ignored
      }
    });
    ws.addEventListener("close", (e) => {
      if (link?.ws === ws) teardown(`Connection closed${e.reason ? `: ${e.reason}` : ""} (${e.code}).`);
    });
    ui.connect.textContent = "Disconnect";
    ui.connect.disabled = false;
  } catch (err) {
    teardown(`Could not connect: ${err.message}`);
  }
}

checkMic();
ui.connect.addEventListener("click", () => void connect());
ui.ptt.addEventListener("pointerdown", (e) => {
  ui.ptt.setPointerCapture(e.pointerId);
  startTalking();
});
ui.ptt.addEventListener("pointerup", stopTalking);
ui.ptt.addEventListener("pointercancel", stopTalking);
window.addEventListener("keydown", (e) => {
  if (e.code === "Space" && !e.repeat && e.target === document.body) {
    e.preventDefault();
    startTalking();
  }
});
window.addEventListener("keyup", (e) => {
  if (e.code === "Space") stopTalking();
});
setInterval(tickPlayback, 50);
