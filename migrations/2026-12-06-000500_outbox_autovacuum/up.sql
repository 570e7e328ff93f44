-- The outbox is a queue: every row is inserted, updated once (published_at) and deleted a day
-- later, so dead tuples and dead entries of the relay's index (outbox_pending_idx keeps one per
-- published row until vacuum) pile up at the rate of events. With the default thresholds (20 %
-- of the table) autovacuum waits for hundreds of thousands of them on a busy day's table, and
-- every full rescan of the relay walks them. Vacuum it after a fixed number of changes instead,
-- without cost-based pauses (the table is narrow and mostly in memory).
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
