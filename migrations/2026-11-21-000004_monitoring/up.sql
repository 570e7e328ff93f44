-- Tables of the monitoring service: reps and their presence, supervisors' sessions, audit,
-- per-org policy. Presence lives here, not in a process's memory, so it survives restarts and
-- is the same for every replica.

-- A sales rep (CLOSER or SETTER) as last seen through their own JWT.
CREATE TABLE monitoring_reps (
    user_id      uuid        PRIMARY KEY,
    org_id       uuid        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('CLOSER', 'SETTER')),
    teams        uuid[]      NOT NULL DEFAULT '{}',
    name         text        NOT NULL,
    -- LiveKit room of the rep: monitor_<orgId>_<userId>.
    room_name    text        NOT NULL UNIQUE,
    -- Derived from the facts below; kept here to list reps fast and to detect changes.
    status       text        NOT NULL DEFAULT 'OFFLINE'
                 CHECK (status IN ('OFFLINE', 'ONLINE', 'LISTENED', 'ON_CALL')),
    publishing   boolean     NOT NULL DEFAULT false,
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_reps_org_idx ON monitoring_reps (org_id);

-- What LiveKit reported about each connection of a rep (participant sid), in any order.
CREATE TABLE monitoring_rep_connections (
    rep_id       uuid        NOT NULL REFERENCES monitoring_reps (user_id) ON DELETE CASCADE,
    sid          text        NOT NULL,
    joined_at    timestamptz,
    left_at      timestamptz,
    -- 'webhook' when LiveKit said so, 'reconciled' when the job saw it gone.
    left_source  text        CHECK (left_source IN ('webhook', 'reconciled')),
    PRIMARY KEY (rep_id, sid)
);
CREATE INDEX monitoring_rep_connections_open_idx ON monitoring_rep_connections (rep_id) WHERE left_at IS NULL;

-- Microphone tracks the rep published, per connection.
CREATE TABLE monitoring_rep_tracks (
    rep_id           uuid        NOT NULL REFERENCES monitoring_reps (user_id) ON DELETE CASCADE,
    track_sid        text        NOT NULL,
    sid              text        NOT NULL,
    published_at     timestamptz,
    unpublished_at   timestamptz,
    PRIMARY KEY (rep_id, track_sid)
);

-- Phone and video calls a rep is on, from sb.telephony.call.* and sb.video.participant.*.
CREATE TABLE monitoring_rep_calls (
    rep_id      uuid        NOT NULL,
    org_id      uuid        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('phone', 'video')),
    call_id     uuid        NOT NULL,
    started_at  timestamptz,
    ended_at    timestamptz,
    PRIMARY KEY (rep_id, kind, call_id)
);
CREATE INDEX monitoring_rep_calls_open_idx ON monitoring_rep_calls (rep_id) WHERE ended_at IS NULL;

-- A supervisor listening to (then maybe coaching or barging in on) a rep.
CREATE TABLE monitoring_sessions (
    id                uuid        PRIMARY KEY,
    org_id            uuid        NOT NULL,
    rep_id            uuid        NOT NULL REFERENCES monitoring_reps (user_id),
    supervisor_id     uuid        NOT NULL,
    supervisor_role   text        NOT NULL,
    room_name         text        NOT NULL,
    -- LiveKit identity of the supervisor in the rep's room.
    identity          text        NOT NULL,
    status            text        NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'PAUSED', 'STOPPED')),
    mode              text        NOT NULL DEFAULT 'listen' CHECK (mode IN ('listen', 'coach', 'barge')),
    started_at        timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz,
    stop_reason       text,
    -- The supervisor's LiveKit token expires then unless renewed; the job stops the session.
    token_expires_at  timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_sessions_org_started_idx ON monitoring_sessions (org_id, started_at DESC);
CREATE INDEX monitoring_sessions_open_idx ON monitoring_sessions (rep_id) WHERE status <> 'STOPPED';
-- One open session per supervisor and rep.
CREATE UNIQUE INDEX monitoring_sessions_one_open_idx ON monitoring_sessions (rep_id, supervisor_id) WHERE status <> 'STOPPED';

-- Append-only audit of every start, mode change, pause, resume and stop.
CREATE TABLE monitoring_audit (
    id             uuid        PRIMARY KEY,
    org_id         uuid        NOT NULL,
    session_id     uuid        NOT NULL,
    actor_id       uuid,
    rep_id         uuid        NOT NULL,
    action         text        NOT NULL CHECK (action IN ('start', 'mode_change', 'pause', 'resume', 'renew', 'stop')),
    mode           text        NOT NULL,
    -- Why a stop happened (supervisor, rep_offline, token_expired) or the previous mode.
    detail         text,
    ip             text,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_audit_org_at_idx ON monitoring_audit (org_id, at DESC);

CREATE FUNCTION monitoring_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'monitoring_audit is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER monitoring_audit_no_change BEFORE UPDATE OR DELETE ON monitoring_audit
    FOR EACH ROW EXECUTE FUNCTION monitoring_audit_append_only();

-- Per-org monitoring policy; an org without a row uses the defaults.
CREATE TABLE monitoring_settings (
    org_id                    uuid        PRIMARY KEY,
    -- Whether a rep is told (sees the supervisor) while listened to. Discreet by default.
    notify_rep                boolean     NOT NULL DEFAULT false,
    allow_coach               boolean     NOT NULL DEFAULT true,
    allow_barge               boolean     NOT NULL DEFAULT true,
    max_supervisors_per_rep   integer     NOT NULL DEFAULT 2 CHECK (max_supervisors_per_rep BETWEEN 1 AND 20),
    updated_by                uuid,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
