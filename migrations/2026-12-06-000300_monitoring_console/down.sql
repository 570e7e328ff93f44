DROP TABLE monitoring_stream_tickets;
DELETE FROM monitoring_reps WHERE role NOT IN ('CLOSER', 'SETTER');
ALTER TABLE monitoring_reps
    DROP CONSTRAINT monitoring_reps_role_check,
    ADD CONSTRAINT monitoring_reps_role_check CHECK (role IN ('CLOSER', 'SETTER')),
    DROP COLUMN left_roster_at,
    DROP COLUMN crm_version;
