UPDATE video_participant_sessions SET left_source = 'stop' WHERE left_source = 'resume';
ALTER TABLE video_participant_sessions DROP CONSTRAINT video_participant_sessions_left_source_check;
ALTER TABLE video_participant_sessions ADD CONSTRAINT video_participant_sessions_left_source_check
    CHECK (left_source IN ('webhook', 'reconciled', 'stop'));
ALTER TABLE video_calls DROP COLUMN resumed_count;
ALTER TABLE video_calls DROP COLUMN earlier_segments_seconds;
ALTER TABLE video_calls DROP COLUMN segment_started_at;
