// Publishes one CRM user event to Switchboard, as a CRM would (monitoring's roster lists every
// active CLOSER and SETTER from these, offline ones too):
//
//   node publish-user.mjs created|updated|deactivated user.json [--event-id UUID]
//
// user.json (or `-` for standard input) holds the user with the field names of
// proto/switchboard/events/v1/crm.proto, e.g.
//   {"id": "…", "org_id": "…", "role": "USER_ROLE_CLOSER", "team_ids": ["…"],
//    "display_name": "Ada Closer", "active": true, "version": 1}
//
// Prints one JSON line: the event id, subject, stream, sequence and whether it was a duplicate.
import { readFileSync } from "node:fs";
import { headers } from "nats";
import { connectNats, contracts, eventType, newTraceparent, streamFor, subject } from "./switchboard.mjs";

const MESSAGES = { created: "UserCreated", updated: "UserUpdated", deactivated: "UserDeactivated" };

function usage(problem) {
  console.error(`${problem}\nusage: node publish-user.mjs created|updated|deactivated FILE|- [--event-id UUID]`);
  process.exit(2);
}

const [verb, file, ...rest] = process.argv.slice(2);
if (!MESSAGES[verb]) usage(`unknown event ${JSON.stringify(verb)}`);
if (!file) usage("missing the user file");
const options = {};
for (let i = 0; i < rest.length; i += 2) {
  if (rest[i] !== "--event-id" || rest[i + 1] === undefined) usage(`bad option ${rest[i]}`);
  options[rest[i].slice(2)] = rest[i + 1];
}

const user = JSON.parse(readFileSync(file === "-" ? 0 : file, "utf8"));
const Message = (await contracts()).lookupType(eventType(MESSAGES[verb]));
const body = { user: verb === "deactivated" ? { ...user, active: false } : user };
const problem = Message.verify(Message.fromObject(body));
if (problem) usage(`invalid user: ${problem}`);
const payload = Message.encode(Message.fromObject(body)).finish();

// Reuse the event id on a retry (see publish-appointment.mjs); the version decides between
// different events about the same user.
const eventId = options["event-id"] ?? crypto.randomUUID();
const h = headers();
h.set("Sb-Event-Type", eventType(MESSAGES[verb]));
h.set("Sb-Org-Id", user.org_id);
h.set("traceparent", newTraceparent(eventId));

const base = `crm.user.${verb}`;
const nc = await connectNats();
try {
  const ack = await nc.jetstream().publish(subject(base), payload, {
    msgID: eventId,
    headers: h,
    expect: { streamName: streamFor(base) },
  });
  console.log(JSON.stringify({ eventId, subject: base, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate }));
} finally {
  await nc.close();
}
