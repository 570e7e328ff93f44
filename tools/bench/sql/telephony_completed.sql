-- The SQL of the callback that ends a call (completed: 1 of the 4 callbacks of each call): the
-- status change as in telephony_status.sql, plus call_completed and the price and quality
-- follow-ups scheduled (`actions::status::schedule_followup`). Weighted 1:3 with it.
-- Outbox rows carry source 'pgbench', which no relay claims: the service running beside pgbench
-- would otherwise publish them, and the limit would carry our relay's cost.
\set n random(0, :calls - 1)
BEGIN;
-- voice::lock_call: found and locked in one read (the callId of the callback URL)
SELECT id, org_id, user_id, team_id, phone_number_id, appointment_id, direction, call_sid, from_number, to_number, status, status_sequence, initiated_at, ringing_at, answered_at, ended_at, duration_seconds, dial_status, talk_seconds, voicemail, record, price, price_unit, quality_degraded_at, error_code, error_message, created_at, updated_at FROM telephony_calls WHERE id = (SELECT id FROM bench_calls WHERE n = :n) LIMIT 1 FOR UPDATE \gset c_
-- calls::write_status (status moves forward)
UPDATE telephony_calls SET price = NULL, price_unit = NULL, status = 'COMPLETED', status_sequence = 3, initiated_at = COALESCE(initiated_at, now()), ringing_at = COALESCE(ringing_at, now()), answered_at = COALESCE(answered_at, now()), ended_at = now(), duration_seconds = 42, updated_at = CURRENT_TIMESTAMP WHERE id = :c_id RETURNING id, org_id, user_id, team_id, phone_number_id, appointment_id, direction, call_sid, from_number, to_number, status, status_sequence, initiated_at, ringing_at, answered_at, ended_at, duration_seconds, dial_status, talk_seconds, voicemail, record, price, price_unit, quality_degraded_at, error_code, error_message, created_at, updated_at;
-- status_changed and completed in one insert (Outbox::enqueue_many)
INSERT INTO outbox (id, source, subject, payload, headers) VALUES (gen_random_uuid(), 'pgbench', 'sb.telephony.call.status_changed', decode(repeat('0a24', 55), 'hex'), '{"Sb-Org-Id": "01a1fdad-367e-70a6-9c1e-3d9078e916f9", "Nats-Msg-Id": "01a1fdad-3ef9-7700-98fa-957fc3f5ed40", "traceparent": "00-01a1fdad3ef9770098fa957fc3f5ed40-e7a5096078f64d35-01", "Sb-Event-Type": "switchboard.events.v1.PhoneCallStatusChanged"}'), (gen_random_uuid(), 'pgbench', 'sb.telephony.call.completed', decode(repeat('0a24', 80), 'hex'), '{"Sb-Org-Id": "01a1fdad-367e-70a6-9c1e-3d9078e916f9", "Nats-Msg-Id": "01a1fdad-3ef9-7700-98fa-957fc3f5ed40", "traceparent": "00-01a1fdad3ef9770098fa957fc3f5ed40-e7a5096078f64d35-01", "Sb-Event-Type": "switchboard.events.v1.PhoneCallStatusChanged"}');
-- schedule_followup: price and Voice Insights summary in one insert
INSERT INTO telephony_followups (call_id, kind, status, next_at) VALUES (:c_id, 'COST', 'PENDING', now() + interval '30 seconds'), (:c_id, 'QUALITY', 'PENDING', now() + interval '30 seconds') ON CONFLICT DO NOTHING;
COMMIT;
