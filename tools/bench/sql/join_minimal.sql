-- The join transaction as the performance targets name it — call upsert + participant upsert + outbox insert, one
-- commit — on the real tables: the floor any join could cost on this database, shown beside the
-- service's own SQL (join.sql). It leaves out what the service does besides: the appointment and
-- access check, the session row, the presence and status recomputation, the second event and the
-- re-reads. Variables as in join.sql.
-- Outbox rows carry source 'pgbench', which no relay claims: the service running beside pgbench
-- would otherwise publish them, and the limit would carry our relay's cost.
\set a random(0, 281474976710655)
BEGIN;
INSERT INTO video_calls (id, org_id, appointment_id, room_name, room_created, status, started_at) VALUES (gen_random_uuid(), :org, ('0190c000-0000-7000-8000-' || lpad(to_hex(:a::bigint), 12, '0'))::uuid, 'org_' || :org || '_min_' || lpad(to_hex(:a::bigint), 12, '0'), true, 'ONGOING', now()) ON CONFLICT (appointment_id) DO UPDATE SET updated_at = now() RETURNING id AS call_id \gset
INSERT INTO video_call_participants (id, call_id, org_id, user_id, identity, role, display_name, is_host, is_guest, active, joined_at) VALUES (gen_random_uuid(), :call_id, :org, :host, 'u_' || :host, 'CLOSER', 'CLOSER bench', true, false, true, now()) ON CONFLICT (call_id, identity) DO UPDATE SET active = true, updated_at = now();
INSERT INTO outbox (id, source, subject, payload, headers) VALUES (gen_random_uuid(), 'pgbench', 'sb.video.participant.joined', decode(repeat('0a24', 95), 'hex'), '{"Sb-Org-Id": "01a1fdac-3e74-762a-8c33-b29364dde9b5", "Nats-Msg-Id": "01a1fdac-410a-75d5-9f5d-64f2950cffa6", "Sb-Event-Type": "switchboard.events.v1.VideoParticipantJoined"}');
COMMIT;
