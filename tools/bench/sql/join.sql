-- The SQL of one first join of an appointment call (`POST /calls/appointments/{id}/join`,
-- services/video/src/actions/calls.rs `join` + `insert_call` + `first_join`),
-- statement for statement as the service runs it (8 statements; written from the code on 2026-12-06,
-- to be re-captured with `sb-bench join --log-sql`), for
-- pgbench: the Postgres limit beside the service. One transaction, one commit. Variables: org,
-- host (uuids), appointments (how many appointments sb-bench seeded). Differences, all in
-- pgbench's favour or neutral: no LiveKit call after the INSERT of the call, no relay marking the
-- outbox rows published, ids from gen_random_uuid() (v4) instead of the service's v7.
-- Outbox rows carry source 'pgbench', which no relay claims: the service running beside pgbench
-- would otherwise publish them, and the limit would carry our relay's cost.
\set n random(0, :appointments - 1)
\set a random(0, 281474976710655)
-- access::appointment
SELECT id, org_id, host_user_id, guest_user_id, setter_user_id, team_id, lead, scheduled_at, ends_at, kind, status, version, created_at, updated_at FROM appointments WHERE id = ('0190a000-0000-7000-8000-' || lpad(to_hex(:n::int), 12, '0'))::uuid LIMIT 1;
-- calls::find_by_appointment (the appointment has no call yet)
SELECT id, org_id, appointment_id, room_name, status, room_created, started_at, ended_at, duration_seconds, end_reason, recording_status, recording_url, recording_data, room_finished_at, created_at, updated_at FROM video_calls WHERE appointment_id = ('0190b000-0000-7000-8000-' || lpad(to_hex(:a::bigint), 12, '0'))::uuid LIMIT 1;
BEGIN;
-- insert_call (first join): the call is inserted ONGOING since the join, as having its room, then (LiveKit CreateRoom)
INSERT INTO video_calls (id, org_id, appointment_id, room_name, room_created, status, started_at) VALUES (gen_random_uuid(), :org, ('0190b000-0000-7000-8000-' || lpad(to_hex(:a::bigint), 12, '0'))::uuid, 'org_' || :org || '_apt_' || lpad(to_hex(:a::bigint), 12, '0'), true, 'ONGOING', now()) ON CONFLICT DO NOTHING RETURNING id AS call_id, org_id, appointment_id, room_name, status, room_created, started_at, ended_at, duration_seconds, end_reason, recording_status, recording_url, recording_data, room_finished_at, created_at, updated_at, segment_started_at, earlier_segments_seconds, resumed_count \gset
-- first_join: the participant inserted present since the join
INSERT INTO video_call_participants (id, call_id, org_id, user_id, identity, role, display_name, is_host, is_guest, active, joined_at) VALUES (gen_random_uuid(), :call_id, :org, :host, 'u_' || :host, 'CLOSER', 'CLOSER bench', true, false, true, now()) RETURNING id AS participant_id, user_id, identity, role, display_name, is_host, is_guest, active, joined_at, left_at, total_seconds \gset
-- its API session
INSERT INTO video_participant_sessions (call_id, sid, identity, joined_at, left_at, left_source) VALUES (:call_id, 'api:' || gen_random_uuid(), 'u_' || :host, now(), NULL, NULL) ON CONFLICT (call_id, sid) DO UPDATE SET joined_at = COALESCE(video_participant_sessions.joined_at, excluded.joined_at), left_at = CASE WHEN excluded.left_source = 'webhook' THEN excluded.left_at ELSE COALESCE(video_participant_sessions.left_at, excluded.left_at) END, left_source = CASE WHEN excluded.left_source = 'webhook' THEN 'webhook' ELSE COALESCE(video_participant_sessions.left_source, excluded.left_source) END;
-- participant_joined and call_started in one insert (Outbox::enqueue_many)
INSERT INTO outbox (id, source, subject, payload, headers) VALUES (gen_random_uuid(), 'pgbench', 'sb.video.participant.joined', decode(repeat('0a24', 95), 'hex'), '{"Sb-Org-Id": "01a1fdac-3e74-762a-8c33-b29364dde9b5", "Nats-Msg-Id": "01a1fdac-410a-75d5-9f5d-64f2950cffa6", "traceparent": "00-01a1fdac410a75d59f5d64f2950cffa6-f3beb3389e424221-01", "Sb-Event-Type": "switchboard.events.v1.VideoParticipantJoined"}'), (gen_random_uuid(), 'pgbench', 'sb.video.call.started', decode(repeat('0a24', 95), 'hex'), '{"Sb-Org-Id": "01a1fdac-3e74-762a-8c33-b29364dde9b5", "Nats-Msg-Id": "01a1fdac-4175-774d-a363-6064f02a62c9", "traceparent": "00-01a1fdac4175774da3636064f02a62c9-a88bcc3622ee4f8d-01", "Sb-Event-Type": "switchboard.events.v1.VideoCallStarted"}');
COMMIT;
