-- Shared infrastructure tables (ARCHITECTURE.md, "Data").

-- Read model of the CRM's appointments. Written only by the appointment projector from
-- crm.appointment.* events; `version` guards against late, older events.
CREATE TABLE appointments (
    id              uuid        PRIMARY KEY,
    org_id          uuid        NOT NULL,
    host_user_id    uuid        NOT NULL,
    guest_user_id   uuid,
    setter_user_id  uuid,
    team_id         uuid,
    -- {name, phone, email} of the lead; phone in E.164.
    lead            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    scheduled_at    timestamptz NOT NULL,
    ends_at         timestamptz,
    kind            text        NOT NULL CHECK (kind IN ('remote', 'onsite')),
    status          text        NOT NULL CHECK (status IN ('scheduled', 'confirmed', 'cancelled', 'completed', 'no_show')),
    version         bigint      NOT NULL CHECK (version >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointments_org_scheduled_idx ON appointments (org_id, scheduled_at);
CREATE INDEX appointments_host_idx ON appointments (host_user_id);
CREATE INDEX appointments_guest_idx ON appointments (guest_user_id) WHERE guest_user_id IS NOT NULL;

-- Transactional outbox: events written in the same transaction as the state change, published
-- to JetStream by a relay.
CREATE TABLE outbox (
    id            uuid        PRIMARY KEY,
    -- Service that wrote the row; each service's relay publishes its own rows.
    source        text        NOT NULL,
    subject       text        NOT NULL,
    payload       bytea       NOT NULL,
    -- NATS headers as a JSON object of string values.
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
-- The relay's work queue: unpublished rows of one source in creation order.
CREATE INDEX outbox_pending_idx ON outbox (source, id) WHERE published_at IS NULL;

-- Events a consumer has already applied; the effect and this row commit together.
CREATE TABLE inbox (
    consumer      text        NOT NULL,
    event_id      uuid        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Provider webhooks already applied (LiveKit event id, Twilio CallSid + status), for idempotency.
CREATE TABLE webhook_receipts (
    provider     text        NOT NULL,
    key          text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, key)
);
CREATE INDEX webhook_receipts_received_idx ON webhook_receipts (received_at);
