// Drives the signaling service with the official socket.io-client 4.x: one JSON request on stdin
// (`op`: "call"), one JSON answer on stdout. Every wait is bounded.
import { io } from "socket.io-client";

const WAIT_MS = 8000;

function once(emitter, event, what = event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args.length > 1 ? args : args[0]);
    });
  });
}

function connect(url, token, transports) {
  const options = { auth: { token }, reconnection: false, forceNew: true, timeout: WAIT_MS };
  if (transports) options.transports = transports;
  const socket = io(`${url}/video-call`, options);
  // the transport the session opened on (the upgrade may finish before `connect`)
  socket.io.once("open", () => {
    socket.firstTransport = socket.io.engine.transport.name;
  });
  return socket;
}

async function connected(socket, upgrade) {
  await once(socket, "connect");
  if (upgrade && socket.io.engine.transport.name !== "websocket") {
    await once(socket.io.engine, "upgrade", "the websocket upgrade");
  }
  return socket;
}

async function call({ url, room, practitioner, patient, transports }) {
  const upgrade = !transports;
  const out = { events: {} };
  const p = await connected(connect(url, practitioner, transports), upgrade);
  const firstTransport = p.firstTransport;
  const joinedP = once(p, "joined-room");
  p.emit("join-room", { roomId: room, userId: "ignored" });
  out.events.practitionerJoined = await joinedP;

  const g = await connected(connect(url, patient, transports), upgrade);
  const joinedG = once(g, "joined-room");
  const userJoined = once(p, "user-joined");
  g.emit("join-room", { roomId: room, userId: "ignored" });
  out.events.patientJoined = await joinedG;
  out.events.userJoined = await userJoined;

  const offer = once(g, "webrtc-signal", "the offer");
  p.emit("webrtc-signal", { roomId: room, signal: { type: "offer", sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" } });
  out.events.offer = await offer;
  const answer = once(p, "webrtc-signal", "the answer");
  g.emit("webrtc-signal", { roomId: room, signal: { type: "answer", sdp: "v=0\r\n" }, to: out.events.practitionerJoined.userId });
  out.events.answer = await answer;
  const candidate = once(g, "webrtc-signal", "the candidate");
  p.emit("webrtc-signal", { roomId: room, signal: { candidate: "candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 } });
  out.events.candidate = await candidate;

  const started = once(g, "screen-share-started");
  p.emit("screen-share-start", { roomId: room });
  out.events.screenShareStarted = await started;
  const stopped = once(g, "screen-share-stopped");
  p.emit("screen-share-stop", { roomId: room });
  out.events.screenShareStopped = await stopped;
  const video = once(p, "video-toggled");
  g.emit("toggle-video", { roomId: room, isEnabled: false });
  out.events.videoToggled = await video;
  const audio = once(p, "audio-toggled");
  out.ack = await g.timeout(WAIT_MS).emitWithAck("toggle-audio", { roomId: room, isEnabled: true });
  out.events.audioToggled = await audio;

  const error = once(g, "error", "the error event");
  g.emit("toggle-video", { roomId: room, isEnabled: "yes" });
  out.events.error = await error;

  const left = once(p, "user-left");
  g.emit("leave-room", { roomId: room });
  out.events.userLeft = await left;
  const back = once(p, "user-joined", "the patient back");
  const rejoined = once(g, "joined-room", "the rejoin");
  g.emit("join-room", { roomId: room });
  await rejoined;
  out.events.userJoinedAgain = await back;

  const endedP = once(p, "call-ended");
  const endedG = once(g, "call-ended");
  p.emit("end-call", { roomId: room });
  out.events.callEndedPractitioner = await endedP;
  out.events.callEndedPatient = await endedG;
  out.transports = { first: firstTransport, practitioner: p.io.engine.transport.name, patient: g.io.engine.transport.name };

  const refused = connect(url, "not-a-token", transports);
  // The official client exposes the CONNECT_ERROR packet's data as `err.data`: apps branch on
  // its stable `code`, so it is reported as the client reads it.
  const refusal = await once(refused, "connect_error");
  out.connectError = refusal.message;
  out.connectErrorCode = refusal.data?.code ?? null;
  refused.close();
  p.close();
  g.close();
  return out;
}

// Two clients on two instances of the service: a signal crosses through the NATS adapter.
async function cluster({ urls, room, practitioner, patient }) {
  const p = await connected(connect(urls[0], practitioner, ["websocket"]), false);
  const g = await connected(connect(urls[1], patient, ["websocket"]), false);
  const jp = once(p, "joined-room");
  p.emit("join-room", { roomId: room });
  await jp;
  const jg = once(g, "joined-room");
  const userJoined = once(p, "user-joined");
  g.emit("join-room", { roomId: room });
  await jg;
  const out = { userJoined: await userJoined };
  const offer = once(g, "webrtc-signal", "the offer across instances");
  p.emit("webrtc-signal", { roomId: room, signal: { type: "offer", sdp: "v=0\r\n" } });
  out.offer = await offer;
  const answer = once(p, "webrtc-signal", "the answer across instances");
  g.emit("webrtc-signal", { roomId: room, signal: { type: "answer", sdp: "v=0\r\n" } });
  out.answer = await answer;
  p.close();
  g.close();
  return out;
}

const ops = { call, cluster };

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
try {
  const answer = await ops[request.op](request);
  process.stdout.write(JSON.stringify(answer));
  process.exit(0);
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String(error && error.stack || error) }));
  process.exit(1);
}
