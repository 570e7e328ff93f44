-- The SQL of one first join of an appointment call (`POST /calls/appointments/{id}/join`,
-- services/video/src/actions/calls.rs `join` + `insert_call` + `first_join`),
-- statement for statement as the service runs it (5 statements; checked against
-- `sb-bench join --log-sql` on 2026-12-06), for
-- pgbench: the Postgres limit beside the service. One transaction, one commit. Variables: org,
-- host (uuids), appointments (how many appointments sb-bench seeded). Differences, all in
-- pgbench's favour or neutral: no LiveKit call after the INSERT of the call, no relay marking the
-- outbox rows published, ids from gen_random_uuid() (v4) instead of the service's v7.
-- Outbox rows carry source 'pgbench', which no relay claims: the service running beside pgbench
-- would otherwise publish them, and the limit would carry our relay's cost.
\set n random(0, :appointments - 1)
\set a random(0, 281474976710655)
-- access::appointment_with_call: the appointment and its call (none yet) in one read
SELECT a.id, a.org_id, a.host_user_id, a.guest_user_id, a.setter_user_id, a.team_id, a.lead, a.scheduled_at, a.ends_at, a.kind, a.status, a.version, a.created_at, a.updated_at, c.id, c.org_id, c.appointment_id, c.room_name, c.status, c.room_created, c.started_at, c.ended_at, c.duration_seconds, c.end_reason, c.recording_status, c.recording_url, c.recording_data, c.room_finished_at, c.created_at, c.updated_at FROM appointments a LEFT JOIN video_calls c ON c.appointment_id = a.id WHERE a.id = ('0190a000-0000-7000-8000-' || lpad(to_hex(:n::int), 12, '0'))::uuid LIMIT 1;
BEGIN;
-- insert_call (first join): the call is inserted ONGOING since the join, as having its room, then (LiveKit CreateRoom)
INSERT INTO video_calls (id, org_id, appointment_id, room_name, room_created, status, started_at) VALUES (gen_random_uuid(), :org, ('0190b000-0000-7000-8000-' || lpad(to_hex(:a::bigint), 12, '0'))::uuid, 'org_' || :org || '_apt_' || lpad(to_hex(:a::bigint), 12, '0'), true, 'ONGOING', now()) ON CONFLICT DO NOTHING RETURNING id AS call_id, org_id, appointment_id, room_name, status, room_created, started_at, ended_at, duration_seconds, end_reason, recording_status, recording_url, recording_data, room_finished_at, created_at, updated_at, segment_started_at, earlier_segments_seconds, resumed_count \gset
-- first_join (calls::insert_first_participant): the participant inserted present since the join, its API session,
-- participant_joined and call_started, as one statement
WITH participant AS (INSERT INTO video_call_participants (id, call_id, org_id, user_id, identity, role, display_name, is_host, is_guest, active, joined_at) VALUES (gen_random_uuid(), :call_id, :org, :host, 'u_' || :host, 'CLOSER', 'CLOSER bench', true, false, true, now()) RETURNING id, user_id, identity, role, display_name, is_host, is_guest, active, joined_at, left_at, total_seconds), session AS (INSERT INTO video_participant_sessions (call_id, sid, identity, joined_at) VALUES (:call_id, 'api:' || gen_random_uuid(), 'u_' || :host, now())), events AS (INSERT INTO outbox (id, source, subject, payload, headers) SELECT e.id, 'pgbench', e.subject, e.payload, e.headers FROM (SELECT 1) AS always, unnest(ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY['sb.video.participant.joined', 'sb.video.call.started'], ARRAY[decode(repeat('0a24', 95), 'hex'), decode(repeat('0a24', 95), 'hex')], ARRAY['{"Sb-Org-Id": "01a1fdac-3e74-762a-8c33-b29364dde9b5", "Nats-Msg-Id": "01a1fdac-410a-75d5-9f5d-64f2950cffa6", "traceparent": "00-01a1fdac410a75d59f5d64f2950cffa6-f3beb3389e424221-01", "Sb-Event-Type": "switchboard.events.v1.VideoParticipantJoined"}'::jsonb, '{"Sb-Org-Id": "01a1fdac-3e74-762a-8c33-b29364dde9b5", "Nats-Msg-Id": "01a1fdac-4175-774d-a363-6064f02a62c9", "traceparent": "00-01a1fdac4175774da3636064f02a62c9-a88bcc3622ee4f8d-01", "Sb-Event-Type": "switchboard.events.v1.VideoCallStarted"}'::jsonb]) AS e(id, subject, payload, headers)) SELECT * FROM participant;
COMMIT;
