-- Tables of the video service (appointment calls, lobby, recordings, ad-hoc meetings).

-- One call per appointment (seed 000's `Call`): the unique appointment_id is what makes twenty
-- concurrent joins create one call and one LiveKit room.
CREATE TABLE video_calls (
    id                uuid        PRIMARY KEY,
    org_id            uuid        NOT NULL,
    appointment_id    uuid        NOT NULL UNIQUE,
    room_name         text        NOT NULL UNIQUE,
    status            text        NOT NULL DEFAULT 'PENDING'
                      CHECK (status IN ('PENDING', 'ONGOING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    -- False while the LiveKit room could not be created (dev profile, LiveKit down): the
    -- reconciliation job creates it.
    room_created      boolean     NOT NULL DEFAULT false,
    started_at        timestamptz,
    ended_at          timestamptz,
    duration_seconds  integer     CHECK (duration_seconds >= 0),
    end_reason        text,
    -- Whether the call is being (or was) recorded, for the consent notice, and the outcome.
    recording_status  text        NOT NULL DEFAULT 'NONE'
                      CHECK (recording_status IN ('NONE', 'STARTING', 'ACTIVE', 'STOPPING', 'READY', 'FAILED')),
    recording_url     text,
    recording_data    jsonb,
    -- Set when a room_finished webhook was received (a fact used to complete the call).
    room_finished_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_calls_org_created_idx ON video_calls (org_id, created_at DESC, id DESC);
CREATE INDEX video_calls_open_idx ON video_calls (status) WHERE status IN ('PENDING', 'ONGOING');

-- Seed 000's `CallParticipant`: one row per LiveKit identity in a call. `active` and the times
-- come from the join/stop routes and, once LiveKit reports them, from its sessions.
CREATE TABLE video_call_participants (
    id             uuid        PRIMARY KEY,
    call_id        uuid        NOT NULL REFERENCES video_calls (id) ON DELETE CASCADE,
    org_id         uuid        NOT NULL,
    -- The platform user; NULL for an external guest.
    user_id        uuid,
    -- Opaque LiveKit identity: u_<userId> or g_<guestId>.
    identity       text        NOT NULL,
    role           text        NOT NULL,
    display_name   text        NOT NULL,
    is_host        boolean     NOT NULL DEFAULT false,
    is_guest       boolean     NOT NULL DEFAULT false,
    active         boolean     NOT NULL DEFAULT false,
    joined_at      timestamptz,
    left_at        timestamptz,
    total_seconds  integer     NOT NULL DEFAULT 0 CHECK (total_seconds >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (call_id, identity)
);
CREATE INDEX video_call_participants_user_idx ON video_call_participants (user_id) WHERE user_id IS NOT NULL;

-- What LiveKit reported about each connection (participant sid): the facts webhooks bring, in
-- whatever order they arrive. Participant and call fields are recomputed from them.
CREATE TABLE video_participant_sessions (
    call_id      uuid        NOT NULL REFERENCES video_calls (id) ON DELETE CASCADE,
    sid          text        NOT NULL,
    identity     text        NOT NULL,
    joined_at    timestamptz,
    left_at      timestamptz,
    -- 'webhook' when LiveKit said so, 'reconciled' when the job inferred the departure.
    left_source  text        CHECK (left_source IN ('webhook', 'reconciled', 'stop')),
    PRIMARY KEY (call_id, sid)
);
CREATE INDEX video_participant_sessions_identity_idx ON video_participant_sessions (call_id, identity);

-- LiveKit egress (room composite recordings) of a call.
CREATE TABLE video_recordings (
    id                uuid        PRIMARY KEY,
    call_id           uuid        NOT NULL REFERENCES video_calls (id) ON DELETE CASCADE,
    org_id            uuid        NOT NULL,
    egress_id         text        NOT NULL UNIQUE,
    status            text        NOT NULL
                      CHECK (status IN ('STARTING', 'ACTIVE', 'ENDING', 'COMPLETE', 'FAILED')),
    filepath          text        NOT NULL,
    location          text,
    duration_seconds  bigint,
    size_bytes        bigint,
    error             text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_recordings_call_idx ON video_recordings (call_id);
CREATE INDEX video_recordings_open_idx ON video_recordings (status) WHERE status IN ('STARTING', 'ACTIVE', 'ENDING');

-- External guests waiting for, admitted to or denied from a call.
CREATE TABLE video_lobby_guests (
    id            uuid        PRIMARY KEY,
    call_id       uuid        NOT NULL REFERENCES video_calls (id) ON DELETE CASCADE,
    org_id        uuid        NOT NULL,
    -- `sub` of the guest link used: one waiting guest per link.
    link_id       uuid        NOT NULL,
    display_name  text        NOT NULL,
    status        text        NOT NULL DEFAULT 'WAITING' CHECK (status IN ('WAITING', 'ADMITTED', 'DENIED')),
    decided_by    uuid,
    decided_at    timestamptz,
    -- Until when the guest may fetch their status and LiveKit token (the link's expiry).
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_lobby_guests_call_idx ON video_lobby_guests (call_id, created_at);

-- Ad-hoc meetings (seed 003), persisted: the seed kept them in memory and lost them on restart.
CREATE TABLE video_meetings (
    id            uuid        PRIMARY KEY,
    org_id        uuid        NOT NULL,
    -- The name clients use in paths (`/api/livekit/rooms/{room_name}`), unique per org.
    room_name     text        NOT NULL,
    -- The LiveKit room: org_<orgId>_mtg_<id> (no personal data).
    livekit_room  text        NOT NULL UNIQUE,
    created_by    uuid        NOT NULL,
    call_type     text        NOT NULL CHECK (call_type IN ('audio', 'video')),
    mode          text        NOT NULL CHECK (mode IN ('meeting', 'webinar')),
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ended')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    UNIQUE (org_id, room_name)
);

-- Who may join a meeting and as what.
CREATE TABLE video_meeting_members (
    meeting_id  uuid        NOT NULL REFERENCES video_meetings (id) ON DELETE CASCADE,
    user_id     uuid        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('host', 'participant', 'speaker', 'listener')),
    joined_at   timestamptz,
    left_at     timestamptz,
    in_room     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (meeting_id, user_id)
);
CREATE INDEX video_meeting_members_user_idx ON video_meeting_members (user_id);
