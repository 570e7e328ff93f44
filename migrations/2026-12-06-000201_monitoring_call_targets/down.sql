DROP INDEX monitoring_audit_session_idx;
-- Refusals have no session; the old table cannot hold them.
ALTER TABLE monitoring_audit DISABLE TRIGGER monitoring_audit_no_change;
DELETE FROM monitoring_audit WHERE action = 'refuse';
ALTER TABLE monitoring_audit ENABLE TRIGGER monitoring_audit_no_change;
ALTER TABLE monitoring_audit
    DROP CONSTRAINT monitoring_audit_session_unless_refused,
    DROP CONSTRAINT monitoring_audit_action_check,
    ADD CONSTRAINT monitoring_audit_action_check
        CHECK (action IN ('start', 'mode_change', 'pause', 'resume', 'renew', 'stop')),
    DROP COLUMN target,
    ALTER COLUMN session_id SET NOT NULL;

DROP INDEX monitoring_sessions_open_room_idx;
DROP INDEX monitoring_sessions_open_call_idx;
-- Phone sessions have no room; the old table cannot hold them.
DELETE FROM monitoring_sessions WHERE target = 'phone_call';
ALTER TABLE monitoring_sessions
    DROP CONSTRAINT monitoring_sessions_target_shape,
    ALTER COLUMN room_name SET NOT NULL,
    DROP COLUMN supervisor_address,
    DROP COLUMN call_id,
    DROP COLUMN target;

ALTER TABLE monitoring_rep_calls DROP COLUMN room_name;
