-- The SQL of one status callback that moves a call forward without ending it (initiated,
-- ringing, in-progress: 3 of the 4 callbacks of each call), as services/telephony runs it
-- (`actions::voice::status_callback` + `actions::status::apply_unless_changed`: two statements, no
-- transaction; captured with `sb-bench telephony --log-sql`), for pgbench: the Postgres limit
-- beside the service. The call is found through `bench_calls (n, id)`, which sb-bench fills with
-- the run's calls (the service reads the id from the callback URL). Weighted 3:1 with
-- telephony_completed.sql.
-- Outbox rows carry source 'pgbench', which no relay claims: the service running beside pgbench
-- would otherwise publish them, and the limit would carry our relay's cost.
\set n random(0, :calls - 1)
-- voice::find_versioned: the call and its row version, read without a lock (the callId of the callback URL)
SELECT id, org_id, user_id, team_id, phone_number_id, appointment_id, direction, call_sid, from_number, to_number, status, status_sequence, initiated_at, ringing_at, answered_at, ended_at, duration_seconds, dial_status, talk_seconds, voicemail, record, price, price_unit, quality_degraded_at, error_code, error_message, created_at, updated_at, xmin::text AS xmin FROM telephony_calls WHERE id = (SELECT id FROM bench_calls WHERE n = :n) LIMIT 1 \gset c_
-- calls::write_status_unless_changed: the status, the event, as one statement
WITH written AS (UPDATE telephony_calls SET price = NULL, price_unit = NULL, status = 'IN_PROGRESS', status_sequence = 2, initiated_at = COALESCE(initiated_at, now()), ringing_at = COALESCE(ringing_at, now()), answered_at = COALESCE(answered_at, now()), ended_at = NULL, duration_seconds = NULL, updated_at = now() WHERE id = :c_id AND xmin = :c_xmin::xid RETURNING id), events AS (INSERT INTO outbox (id, source, subject, payload, headers) SELECT e.id, 'pgbench', e.subject, e.payload, e.headers FROM written, unnest(ARRAY[gen_random_uuid()], ARRAY['sb.telephony.call.status_changed'], ARRAY[decode(repeat('0a24', 55), 'hex')], ARRAY['{"Sb-Org-Id": "01a1fdad-367e-70a6-9c1e-3d9078e916f9", "Nats-Msg-Id": "01a1fdad-3ef9-7700-98fa-957fc3f5ed40", "traceparent": "00-01a1fdad3ef9770098fa957fc3f5ed40-e7a5096078f64d35-01", "Sb-Event-Type": "switchboard.events.v1.PhoneCallStatusChanged"}'::jsonb]) AS e(id, subject, payload, headers)), followups AS (INSERT INTO telephony_followups (call_id, kind, status, next_at) SELECT written.id, k.kind, 'PENDING', now() + interval '30 seconds' FROM written, unnest(ARRAY[]::text[]) AS k(kind) ON CONFLICT DO NOTHING) SELECT count(*) AS written FROM written;
