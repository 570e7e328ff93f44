-- Supervisor console data: the roster from the CRM's users, and single-use tickets that let a
-- browser's EventSource (which cannot send an Authorization header) open the live stream.

-- A rep known from the CRM (crm.user.*) as well as from their own JWT. crm_version is the
-- highest CRM version applied (NULL: known only from a token so far); an older CRM event never
-- replaces a newer one. left_roster_at is set when the CRM deactivated the user or gave them a
-- role that is not monitored: the row stays (its version guards against late older events, its
-- sessions and audit keep their rep) but the supervisor's roster no longer lists it. Such a row
-- may hold any role.
ALTER TABLE monitoring_reps
    ADD COLUMN crm_version    bigint,
    ADD COLUMN left_roster_at timestamptz,
    DROP CONSTRAINT monitoring_reps_role_check,
    ADD CONSTRAINT monitoring_reps_role_check
        CHECK (role IN ('CLOSER', 'SETTER') OR left_roster_at IS NOT NULL);

-- Stream tickets: short-lived, redeemed once by whichever replica the browser reaches. Only a
-- hash of the ticket is kept; the row carries the scope of the token it was issued for (never
-- the token itself) and when that token expires, which ends the stream.
CREATE TABLE monitoring_stream_tickets (
    ticket_hash      bytea       PRIMARY KEY,
    user_id          uuid        NOT NULL,
    org_id           uuid        NOT NULL,
    role             text        NOT NULL,
    teams            uuid[]      NOT NULL DEFAULT '{}',
    token_expires_at timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_stream_tickets_expires_idx ON monitoring_stream_tickets (expires_at);
