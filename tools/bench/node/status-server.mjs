// Reference Twilio status-callback handler in the stack seed 001 describes (Node 20, Express, the
// official `twilio` package, `pg`), doing what services/telephony does with a callback: check the
// signature against the public URL, then in one transaction lock the call, move its status
// forward only (terminal statuses absorb late callbacks), write the times, enqueue the events in
// the outbox and schedule the follow-ups of a completed call. sb-bench starts it with
// PORT, DATABASE_URL, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL and POOL_SIZE (the service's pool size),
// and NODE_ENV=production, as its users run it. Statements are named (`{name, text, values}`), so
// `pg` prepares each once per connection, as diesel-async's cached statements are on our side.
// Its outbox rows carry source 'node-peer', which no relay publishes: the service running beside
// it would otherwise publish them on the Node peer's time (and the CPU would be charged to ours).
import crypto from 'node:crypto';
import express from 'express';
import pg from 'pg';
import twilio from 'twilio';

const { PORT, DATABASE_URL, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL } = process.env;
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: Number(process.env.POOL_SIZE || 10) });

const STATUS = {
  queued: 'QUEUED', initiated: 'INITIATED', ringing: 'RINGING', 'in-progress': 'IN_PROGRESS',
  completed: 'COMPLETED', busy: 'BUSY', 'no-answer': 'NO_ANSWER', canceled: 'CANCELED', failed: 'FAILED',
};
const RANK = { QUEUED: 0, INITIATED: 1, RINGING: 2, IN_PROGRESS: 3, COMPLETED: 4, BUSY: 4, NO_ANSWER: 4, CANCELED: 4, FAILED: 4 };
const FINAL = (s) => RANK[s] === 4;

function advances(current, currentSeq, next, nextSeq) {
  if (FINAL(current)) return FINAL(next) && nextSeq != null && currentSeq != null && nextSeq > currentSeq;
  return RANK[next] > RANK[current];
}

function event(subject, call, extra) {
  const id = crypto.randomUUID();
  const payload = Buffer.from(JSON.stringify({ callId: call.id, orgId: call.org_id, status: call.status, ...extra }));
  const headers = { 'Sb-Org-Id': call.org_id, 'Nats-Msg-Id': id, 'Sb-Event-Type': subject };
  return [id, 'node-peer', subject, payload, headers];
}

const INSERT_OUTBOX = 'INSERT INTO outbox (id, source, subject, payload, headers) VALUES ($1, $2, $3, $4, $5)';

const app = express();
app.use(express.urlencoded({ extended: false }));

app.get('/healthz', (_req, res) => res.send('ok'));

app.post('/webhook/voice/status', async (req, res) => {
  const signature = req.header('X-Twilio-Signature') || '';
  if (!twilio.validateRequest(TWILIO_AUTH_TOKEN, signature, PUBLIC_BASE_URL + req.originalUrl, req.body)) {
    return res.status(403).type('application/problem+json').send({ code: 'invalid_signature' });
  }
  const next = STATUS[req.body.CallStatus];
  if (!next) return res.type('text/xml').send('<Response/>');
  const seq = req.body.SequenceNumber != null ? Number(req.body.SequenceNumber) : null;
  const at = req.body.Timestamp ? new Date(req.body.Timestamp) : new Date();
  const duration = req.body.CallDuration != null ? Number(req.body.CallDuration) : null;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows: [call] } = await client.query({
      name: 'lock-call', text: 'SELECT * FROM telephony_calls WHERE id = $1 FOR UPDATE', values: [req.query.callId],
    });
    if (!call) {
      await client.query('COMMIT');
      return res.type('text/xml').send('<Response/>');
    }
    const moved = advances(call.status, call.status_sequence, next, seq);
    const { rows: [written] } = await client.query({
      name: 'write-status',
      text: `UPDATE telephony_calls SET status = $1, status_sequence = $2,
         ringing_at = COALESCE(ringing_at, CASE WHEN $3 = 'RINGING' THEN $4::timestamptz END),
         answered_at = COALESCE(answered_at, CASE WHEN $3 = 'IN_PROGRESS' THEN $4::timestamptz END),
         ended_at = COALESCE(ended_at, CASE WHEN $5 THEN $4::timestamptz END),
         duration_seconds = COALESCE(duration_seconds, $6), updated_at = now()
       WHERE id = $7 RETURNING *`,
      values: [moved ? next : call.status, moved ? seq : call.status_sequence, next, at, FINAL(next), duration, call.id],
    });
    if (moved) {
      await client.query({ name: 'outbox', text: INSERT_OUTBOX, values: event('sb.telephony.call.status_changed', written, { previous: call.status }) });
      if (FINAL(next) && !FINAL(call.status)) {
        await client.query({ name: 'outbox', text: INSERT_OUTBOX, values: event('sb.telephony.call.completed', written, { duration }) });
        for (const kind of ['COST', 'QUALITY']) {
          await client.query({
            name: 'followup',
            text: "INSERT INTO telephony_followups (call_id, kind, status, next_at) VALUES ($1, $2, 'PENDING', now() + interval '30 seconds') ON CONFLICT DO NOTHING",
            values: [call.id, kind],
          });
        }
      }
    }
    await client.query('COMMIT');
    res.type('text/xml').send('<?xml version="1.0" encoding="UTF-8"?><Response/>');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    console.error(error);
    res.status(500).send({ code: 'internal' });
  } finally {
    client.release();
  }
});

app.listen(Number(PORT), '127.0.0.1');
