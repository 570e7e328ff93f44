ALTER TABLE video_recordings DROP COLUMN deleted_at;
ALTER TABLE telephony_recordings DROP COLUMN transcription_status;
ALTER TABLE telephony_recordings DROP COLUMN transcription;
ALTER TABLE telephony_recordings DROP COLUMN deleted_at;
DROP TRIGGER recording_access_audit_no_change ON recording_access_audit;
DROP FUNCTION recording_access_audit_append_only();
DROP TABLE recording_access_audit;
