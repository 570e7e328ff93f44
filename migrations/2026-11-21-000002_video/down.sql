DROP TABLE video_meeting_members;
DROP TABLE video_meetings;
DROP TABLE video_lobby_guests;
DROP TABLE video_recordings;
DROP TABLE video_participant_sessions;
DROP TABLE video_call_participants;
DROP TABLE video_calls;
