DROP INDEX outbox_published_idx;
DROP TABLE dead_letters;
