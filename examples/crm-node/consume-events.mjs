// Reads Switchboard events with a durable JetStream consumer, as a CRM timeline, a notifier or a
// billing job would:
//
//   node consume-events.mjs [SUBJECT_FILTER] [--durable NAME] [--count N] [--timeout-ms MS]
//
// SUBJECT_FILTER defaults to sb.video.> (any sb.<domain>.> or a single subject works). The
// durable consumer (default crm-example) remembers what was acknowledged, so a restart resumes
// where it stopped. Prints one JSON line per event: subject, headers and the decoded payload
// (field names as in the .proto files; 64-bit integers as strings). Exits after N events (default:
// runs until interrupted), or with status 1 when --timeout-ms passes first.
import { AckPolicy, DeliverPolicy } from "nats";
import { baseSubject, connectNats, messageType, streamFor, subject } from "./switchboard.mjs";

const args = process.argv.slice(2);
let filter = "sb.video.>";
const options = { durable: "crm-example", count: Infinity, "timeout-ms": Infinity };
for (let i = 0; i < args.length; i++) {
  if (args[i].startsWith("--")) {
    const name = args[i].slice(2);
    if (!(name in options) || args[i + 1] === undefined) {
      console.error(`unknown option ${args[i]}`);
      process.exit(2);
    }
    options[name] = name === "durable" ? args[++i] : Number(args[++i]);
  } else {
    filter = args[i];
  }
}

const nc = await connectNats();
const stream = streamFor(filter);
const jsm = await nc.jetstreamManager();
// Creates the durable consumer, or updates it (same name, same filter) when it exists.
await jsm.consumers.add(stream, {
  durable_name: options.durable,
  filter_subject: subject(filter),
  ack_policy: AckPolicy.Explicit,
  deliver_policy: DeliverPolicy.All,
  max_deliver: 10,
});
const consumer = await nc.jetstream().consumers.get(stream, options.durable);

let seen = 0;
let timer;
if (Number.isFinite(options["timeout-ms"])) {
  timer = setTimeout(async () => {
    console.error(`timed out after ${options["timeout-ms"]} ms with ${seen} event(s)`);
    await nc.close();
    process.exit(1);
  }, options["timeout-ms"]);
}

const messages = await consumer.consume();
for await (const m of messages) {
  const type = m.headers?.get("Sb-Event-Type");
  const Message = await messageType(type);
  if (!Message) {
    // A type this copy of the contracts does not know (a newer Switchboard): skip it, do not fail.
    console.error(`skipping ${m.subject}: unknown event type ${type}`);
    await m.ackAck();
    continue;
  }
  const event = Message.toObject(Message.decode(m.data), { longs: String, enums: String, defaults: true });
  console.log(
    JSON.stringify({
      subject: baseSubject(m.subject),
      id: m.headers.get("Nats-Msg-Id"),
      type,
      orgId: m.headers.get("Sb-Org-Id"),
      traceparent: m.headers.get("traceparent") || undefined,
      event,
    }),
  );
  // Acknowledge once the event is handled (stored in the CRM, pushed…): an unacknowledged event
  // is delivered again after the consumer's ack wait. ackAck waits for the server's confirmation.
  await m.ackAck();
  if (++seen >= options.count) break;
}
clearTimeout(timer);
await nc.close();
