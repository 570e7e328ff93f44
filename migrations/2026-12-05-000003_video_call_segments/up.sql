-- A completed call joined again within its appointment's window resumes: each resumption opens
-- a segment. The duration is the earlier segments' seconds plus the current segment's.
ALTER TABLE video_calls ADD COLUMN segment_started_at timestamptz;
ALTER TABLE video_calls ADD COLUMN earlier_segments_seconds integer NOT NULL DEFAULT 0;
ALTER TABLE video_calls ADD COLUMN resumed_count integer NOT NULL DEFAULT 0;
-- Sessions a finished segment left open are closed when the call resumes.
ALTER TABLE video_participant_sessions DROP CONSTRAINT video_participant_sessions_left_source_check;
ALTER TABLE video_participant_sessions ADD CONSTRAINT video_participant_sessions_left_source_check
    CHECK (left_source IN ('webhook', 'reconciled', 'stop', 'resume'));
