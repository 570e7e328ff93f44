-- Messages a consumer gave up on (after max_deliver attempts, or undecodable), kept for
-- inspection and replay: never silently dropped.
CREATE TABLE dead_letters (
    id               uuid        PRIMARY KEY,
    -- Durable consumer name, <service>-<purpose>.
    consumer         text        NOT NULL,
    -- Nats-Msg-Id of the event, when it had a valid one.
    event_id         uuid,
    subject          text        NOT NULL,
    event_type       text,
    payload          bytea       NOT NULL,
    headers          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The last handler error.
    error            text        NOT NULL,
    deliveries       bigint      NOT NULL,
    stream_sequence  bigint      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_consumer_created_idx ON dead_letters (consumer, created_at);
