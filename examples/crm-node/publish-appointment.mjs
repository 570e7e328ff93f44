// Publishes one CRM appointment event to Switchboard, as a CRM would:
//
//   node publish-appointment.mjs created|updated|cancelled appointment.json [--event-id UUID] [--reason TEXT]
//
// appointment.json (or `-` for standard input) holds the appointment with the field names of
// proto/switchboard/events/v1/crm.proto, e.g.
//   {"id": "…", "org_id": "…", "host_user_id": "…", "scheduled_at_unix_ms": 1767225600000,
//    "kind": "APPOINTMENT_KIND_REMOTE", "status": "APPOINTMENT_STATUS_SCHEDULED", "version": 1}
//
// Prints one JSON line: the event id, subject, stream, sequence and whether JetStream dropped it
// as a duplicate of an earlier event with the same id.
import { readFileSync } from "node:fs";
import { headers } from "nats";
import { connectNats, contracts, eventType, newTraceparent, streamFor, subject } from "./switchboard.mjs";

const MESSAGES = { created: "AppointmentCreated", updated: "AppointmentUpdated", cancelled: "AppointmentCancelled" };

function usage(problem) {
  console.error(`${problem}\nusage: node publish-appointment.mjs created|updated|cancelled FILE|- [--event-id UUID] [--reason TEXT]`);
  process.exit(2);
}

const [verb, file, ...rest] = process.argv.slice(2);
if (!MESSAGES[verb]) usage(`unknown event ${JSON.stringify(verb)}`);
if (!file) usage("missing the appointment file");
const options = {};
for (let i = 0; i < rest.length; i += 2) {
  if (!["--event-id", "--reason"].includes(rest[i]) || rest[i + 1] === undefined) usage(`bad option ${rest[i]}`);
  options[rest[i].slice(2)] = rest[i + 1];
}

const appointment = JSON.parse(readFileSync(file === "-" ? 0 : file, "utf8"));
const Message = (await contracts()).lookupType(eventType(MESSAGES[verb]));
const body = { appointment };
if (verb === "cancelled") {
  body.appointment = { ...appointment, status: "APPOINTMENT_STATUS_CANCELLED" };
  body.reason = options.reason ?? "";
}
const problem = Message.verify(Message.fromObject(body));
if (problem) usage(`invalid appointment: ${problem}`);
const payload = Message.encode(Message.fromObject(body)).finish();

// The event id: Nats-Msg-Id. JetStream drops a second message with the same id within the
// stream's duplicate window, and Switchboard's consumers remember every id they applied, so a
// retry of the same event must reuse its id (store it with the change in the CRM's own outbox).
const eventId = options["event-id"] ?? crypto.randomUUID();
const h = headers();
h.set("Sb-Event-Type", eventType(MESSAGES[verb])); // required: which message the payload is
h.set("Sb-Org-Id", appointment.org_id); // the tenant, for routing and filtering without decoding
h.set("traceparent", newTraceparent(eventId)); // optional: W3C trace context

const base = `crm.appointment.${verb}`;
const nc = await connectNats();
try {
  const ack = await nc.jetstream().publish(subject(base), payload, {
    msgID: eventId, // sent as the Nats-Msg-Id header
    headers: h,
    expect: { streamName: streamFor(base) },
  });
  console.log(JSON.stringify({ eventId, subject: base, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate }));
} finally {
  await nc.close();
}
