-- A lobby guest is bound to the device that first joined with the link: the join answers a
-- secret once, and only its SHA-256 is kept. Whoever presents the link without it is a new
-- guest, so a link forwarded after admission never hands over the admitted guest's place.
-- Rows from before this migration have none: their link alone still reads them, but no join
-- returns them again (that guest joins as a new one).
ALTER TABLE video_lobby_guests ADD COLUMN device_secret_sha256 bytea;
CREATE INDEX video_lobby_guests_link_idx ON video_lobby_guests (call_id, link_id);
