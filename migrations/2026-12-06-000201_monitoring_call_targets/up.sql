-- Supervision inside the rep's real conversation (issue 19): a session targets the rep's side
-- room (seed 002), the LiveKit room of the video call the rep is on, or telephony's conference
-- of their phone call; refused attempts are audited too.

-- The LiveKit room of a video call the rep is on (from sb.video.participant.joined), so a
-- session can join it; null for phone calls and for facts recorded before this column.
ALTER TABLE monitoring_rep_calls ADD COLUMN room_name text;

ALTER TABLE monitoring_sessions
    ADD COLUMN target text NOT NULL DEFAULT 'side_room'
        CHECK (target IN ('side_room', 'video_call', 'phone_call')),
    -- The video call's or telephony's phone call's id; null for the side room.
    ADD COLUMN call_id uuid,
    -- PHONE_CALL: where Twilio rings the supervisor (client:u_<hex> or an E.164 number).
    ADD COLUMN supervisor_address text CHECK (char_length(supervisor_address) <= 64),
    -- A phone call's conference is not a LiveKit room.
    ALTER COLUMN room_name DROP NOT NULL,
    ADD CONSTRAINT monitoring_sessions_target_shape CHECK (
        (target = 'side_room' AND call_id IS NULL AND room_name IS NOT NULL AND supervisor_address IS NULL)
        OR (target = 'video_call' AND call_id IS NOT NULL AND room_name IS NOT NULL AND supervisor_address IS NULL)
        OR (target = 'phone_call' AND call_id IS NOT NULL AND room_name IS NULL AND supervisor_address IS NOT NULL)
    );
-- Open sessions inside one call (stopped when it ends) and in one LiveKit room (webhooks).
CREATE INDEX monitoring_sessions_open_call_idx ON monitoring_sessions (call_id) WHERE status <> 'STOPPED' AND call_id IS NOT NULL;
CREATE INDEX monitoring_sessions_open_room_idx ON monitoring_sessions (room_name) WHERE status <> 'STOPPED' AND target = 'video_call';

-- A refused attempt has no session: its row names the rep asked for and what was asked.
ALTER TABLE monitoring_audit
    ALTER COLUMN session_id DROP NOT NULL,
    ADD COLUMN target text CHECK (target IN ('side_room', 'video_call', 'phone_call', 'auto', 'call')),
    DROP CONSTRAINT monitoring_audit_action_check,
    ADD CONSTRAINT monitoring_audit_action_check
        CHECK (action IN ('start', 'mode_change', 'pause', 'resume', 'renew', 'stop', 'refuse')),
    ADD CONSTRAINT monitoring_audit_session_unless_refused CHECK (session_id IS NOT NULL OR action = 'refuse');
CREATE INDEX monitoring_audit_session_idx ON monitoring_audit (session_id) WHERE session_id IS NOT NULL;
