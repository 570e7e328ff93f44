DROP INDEX video_lobby_guests_link_idx;
ALTER TABLE video_lobby_guests DROP COLUMN device_secret_sha256;
