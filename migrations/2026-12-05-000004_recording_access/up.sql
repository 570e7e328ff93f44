-- Recordings people play, keep and delete.

-- One row per play or deletion of a recording (video or telephony): who, which, when, which
-- byte range. Evidence, so append-only like monitoring_audit.
CREATE TABLE recording_access_audit (
    id            uuid        PRIMARY KEY,
    org_id        uuid        NOT NULL,
    service       text        NOT NULL CHECK (service IN ('video', 'telephony')),
    recording_id  uuid        NOT NULL,
    call_id       uuid        NOT NULL,
    -- The user who asked; NULL for the retention job.
    user_id       uuid,
    action        text        NOT NULL CHECK (action IN ('play', 'delete')),
    -- The Range header of a play, as asked (bounded).
    byte_range    text        CHECK (char_length(byte_range) <= 200),
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_access_audit_org_idx ON recording_access_audit (org_id, at);
CREATE INDEX recording_access_audit_recording_idx ON recording_access_audit (recording_id, at);

CREATE FUNCTION recording_access_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'recording_access_audit is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER recording_access_audit_no_change BEFORE UPDATE OR DELETE ON recording_access_audit
    FOR EACH ROW EXECUTE FUNCTION recording_access_audit_append_only();

-- A deleted recording keeps its row (a tombstone: the deletion is idempotent and the history
-- says it existed); the media is gone at the provider.
ALTER TABLE telephony_recordings ADD COLUMN deleted_at timestamptz;
-- Twilio's transcription of a voicemail, from its transcription callback.
ALTER TABLE telephony_recordings ADD COLUMN transcription text CHECK (char_length(transcription) <= 20000);
ALTER TABLE telephony_recordings ADD COLUMN transcription_status text
    CHECK (transcription_status IN ('completed', 'failed'));
ALTER TABLE video_recordings ADD COLUMN deleted_at timestamptz;
