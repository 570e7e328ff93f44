DROP TABLE monitoring_settings;
DROP TRIGGER monitoring_audit_no_change ON monitoring_audit;
DROP TABLE monitoring_audit;
DROP FUNCTION monitoring_audit_append_only();
DROP TABLE monitoring_sessions;
DROP TABLE monitoring_rep_calls;
DROP TABLE monitoring_rep_tracks;
DROP TABLE monitoring_rep_connections;
DROP TABLE monitoring_reps;
