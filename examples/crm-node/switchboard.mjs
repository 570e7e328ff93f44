// What the two examples share: the NATS connection, the namespace, and the event contracts
// (read from the repository's .proto files at run time, so there is no code to generate).
import { fileURLToPath } from "node:url";
import path from "node:path";
import { connect } from "nats";
import protobuf from "protobufjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO_DIR = process.env.SWITCHBOARD_PROTO_DIR ?? path.join(here, "../../proto/switchboard/events/v1");
const PACKAGE = "switchboard.events.v1";

// Subject prefix -> JetStream stream, as the services create them.
const STREAMS = [
  ["crm.", "CRM"],
  ["sb.video.", "SB_VIDEO"],
  ["sb.telephony.", "SB_TELEPHONY"],
  ["sb.signaling.", "SB_SIGNALING"],
  ["sb.monitoring.", "SB_MONITORING"],
];

// EVENTS_NAMESPACE as the services read it: empty in production; when set, subjects are
// `<ns>.<subject>` and streams `<NS>_<STREAM>` (several stacks on one NATS server).
export const namespace = (process.env.EVENTS_NAMESPACE ?? "").trim();

export function subject(base) {
  return namespace ? `${namespace}.${base}` : base;
}

export function baseSubject(full) {
  return namespace && full.startsWith(`${namespace}.`) ? full.slice(namespace.length + 1) : full;
}

export function streamFor(base) {
  const found = STREAMS.find(([prefix]) => base.startsWith(prefix));
  if (!found) throw new Error(`no Switchboard stream captures ${base}`);
  return namespace ? `${namespace.toUpperCase()}_${found[1]}` : found[1];
}

export async function connectNats() {
  return connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "crm-example" });
}

let root;
export async function contracts() {
  // keepCase: field names as in the .proto files (scheduled_at_unix_ms), not camelCase.
  root ??= await new protobuf.Root().load(
    ["crm.proto", "video.proto", "telephony.proto", "signaling.proto", "monitoring.proto"].map((f) =>
      path.join(PROTO_DIR, f),
    ),
    { keepCase: true },
  );
  return root;
}

// The protobuf message type named by an `Sb-Event-Type` header, e.g.
// "switchboard.events.v1.VideoCallStarted"; undefined for a type this copy of the contracts lacks.
export async function messageType(eventType) {
  if (!eventType?.startsWith(`${PACKAGE}.`)) return undefined;
  try {
    return (await contracts()).lookupType(eventType);
  } catch {
    return undefined;
  }
}

export function eventType(message) {
  return `${PACKAGE}.${message}`;
}

// A W3C traceparent whose trace id is the event id (what the services do when no trace is
// propagated): version 00, sampled.
export function newTraceparent(eventId) {
  const trace = eventId.replaceAll("-", "");
  const span = [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `00-${trace}-${span}-01`;
}
