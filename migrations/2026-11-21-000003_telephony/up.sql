-- Tables of the telephony service (Twilio Voice, seed 001): the org's numbers, calls with their
-- monotonic status, recordings and voicemails, and call quality.

-- A Twilio number of an org and where its calls ring. A number belongs to one org (unique E.164).
CREATE TABLE telephony_phone_numbers (
    id                    uuid        PRIMARY KEY,
    org_id                uuid        NOT NULL,
    e164                  text        NOT NULL UNIQUE CHECK (e164 ~ '^\+[1-9][0-9]{6,14}$'),
    -- The rep the number belongs to: `from` of their outbound calls, rings on inbound calls.
    owner_user_id         uuid,
    -- The owner's team, so managers see the calls of their teams.
    team_id               uuid,
    -- Inbound calls ring the owner's app (`<Client>`, turned into CallKit/Telecom pushes by the
    -- Voice SDK) and/or this number.
    ring_app              boolean     NOT NULL DEFAULT true,
    forward_to            text        CHECK (forward_to ~ '^\+[1-9][0-9]{6,14}$'),
    -- Spoken before ringing and before the voicemail beep; NULL = the language's default text.
    greeting              text        CHECK (char_length(greeting) BETWEEN 1 AND 500),
    voicemail_greeting    text        CHECK (char_length(voicemail_greeting) BETWEEN 1 AND 500),
    -- BCP 47 tag of `<Say language>` (fr-FR, en-US…).
    language              text        NOT NULL DEFAULT 'en-US' CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    voice                 text        NOT NULL DEFAULT 'alice' CHECK (voice ~ '^[A-Za-z0-9._-]{1,64}$'),
    ring_timeout_seconds  integer     NOT NULL DEFAULT 30 CHECK (ring_timeout_seconds BETWEEN 5 AND 600),
    -- Outbound calls from this number are recorded (dual channel).
    record_calls          boolean     NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_phone_numbers_org_idx ON telephony_phone_numbers (org_id, e164);
CREATE INDEX telephony_phone_numbers_owner_idx ON telephony_phone_numbers (owner_user_id) WHERE owner_user_id IS NOT NULL;

-- One row per Twilio call we track (the parent leg: the caller's device for click-to-call, the
-- incoming call for inbound). `status` only moves forward (queued < initiated < ringing <
-- in-progress < a terminal status); the times of each status are the first reported.
CREATE TABLE telephony_calls (
    id                    uuid        PRIMARY KEY,
    org_id                uuid        NOT NULL,
    -- The rep on the call (caller of an outbound call, owner of the called number), if any.
    user_id               uuid,
    team_id               uuid,
    phone_number_id       uuid        REFERENCES telephony_phone_numbers (id) ON DELETE SET NULL,
    appointment_id        uuid,
    direction             text        NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    -- NULL between the insert and Twilio's answer to the create request.
    call_sid              text        UNIQUE CHECK (call_sid ~ '^CA[0-9a-fA-F]{32}$'),
    from_number           text        NOT NULL CHECK (char_length(from_number) BETWEEN 1 AND 160),
    to_number             text        NOT NULL CHECK (char_length(to_number) BETWEEN 1 AND 160),
    status                text        NOT NULL
                          CHECK (status IN ('QUEUED', 'INITIATED', 'RINGING', 'IN_PROGRESS', 'COMPLETED', 'BUSY', 'NO_ANSWER', 'FAILED', 'CANCELED')),
    -- Twilio's SequenceNumber of the callback that set `status` (orders two terminal reports).
    status_sequence       integer     CHECK (status_sequence >= 0),
    initiated_at          timestamptz,
    ringing_at            timestamptz,
    answered_at           timestamptz,
    ended_at              timestamptz,
    -- Twilio's CallDuration of the leg, seconds.
    duration_seconds      integer     CHECK (duration_seconds >= 0),
    -- Outcome of the <Dial> (DialCallStatus) and how long the two parties were connected.
    dial_status           text        CHECK (dial_status IN ('completed', 'answered', 'busy', 'no-answer', 'failed', 'canceled')),
    talk_seconds          integer     CHECK (talk_seconds >= 0),
    -- The caller was sent to voicemail.
    voicemail             boolean     NOT NULL DEFAULT false,
    -- The <Dial> records both parties (dual channel).
    record                boolean     NOT NULL DEFAULT false,
    -- Twilio's price as it gives it (negative = charged), filled by the follow-up job.
    price                 text        CHECK (price ~ '^-?[0-9]+(\.[0-9]+)?$'),
    price_unit            text        CHECK (price_unit ~ '^[A-Z]{3}$'),
    -- Set once, when the call's quality first crossed a threshold (one degraded event per call).
    quality_degraded_at   timestamptz,
    -- Last time the job fetched the call from Twilio (lost status callbacks).
    synced_at             timestamptz,
    -- Why Twilio refused or failed the call.
    error_code            integer,
    error_message         text        CHECK (char_length(error_message) <= 1000),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_calls_org_created_idx ON telephony_calls (org_id, created_at DESC, id DESC);
CREATE INDEX telephony_calls_user_created_idx ON telephony_calls (user_id, created_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX telephony_calls_team_created_idx ON telephony_calls (team_id, created_at DESC) WHERE team_id IS NOT NULL;
CREATE INDEX telephony_calls_open_idx ON telephony_calls (updated_at)
    WHERE status IN ('QUEUED', 'INITIATED', 'RINGING', 'IN_PROGRESS');

-- What the follow-up job still has to learn about an ended call, with its backoff: the price
-- (COST: Twilio fills it minutes after the call) and the Voice Insights summary (QUALITY:
-- partial within minutes, complete within half an hour).
CREATE TABLE telephony_followups (
    call_id     uuid        NOT NULL REFERENCES telephony_calls (id) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('COST', 'QUALITY')),
    status      text        NOT NULL CHECK (status IN ('PENDING', 'PARTIAL', 'DONE', 'GAVE_UP')),
    attempts    integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When to ask next; NULL once DONE or GAVE_UP.
    next_at     timestamptz CHECK ((next_at IS NULL) = (status IN ('DONE', 'GAVE_UP'))),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, kind)
);
CREATE INDEX telephony_followups_due_idx ON telephony_followups (kind, next_at) WHERE status IN ('PENDING', 'PARTIAL');

-- Twilio recordings: voicemails (<Record>) and dual-channel call recordings (<Dial record>).
CREATE TABLE telephony_recordings (
    id                uuid        PRIMARY KEY,
    org_id            uuid        NOT NULL,
    call_id           uuid        NOT NULL REFERENCES telephony_calls (id) ON DELETE CASCADE,
    recording_sid     text        NOT NULL UNIQUE CHECK (recording_sid ~ '^RE[0-9a-fA-F]{32}$'),
    kind              text        NOT NULL CHECK (kind IN ('VOICEMAIL', 'CALL')),
    status            text        NOT NULL CHECK (status IN ('in-progress', 'completed', 'absent', 'failed')),
    url               text        CHECK (char_length(url) <= 2000),
    duration_seconds  integer     CHECK (duration_seconds >= 0),
    channels          integer     CHECK (channels IN (1, 2)),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_recordings_call_idx ON telephony_recordings (call_id, created_at);

-- Quality of a call: Voice Insights' call summary (one row per call, refreshed until complete)
-- and samples the mobile Voice SDK reports.
CREATE TABLE telephony_call_quality (
    id                    uuid             PRIMARY KEY,
    org_id                uuid             NOT NULL,
    call_id               uuid             NOT NULL REFERENCES telephony_calls (id) ON DELETE CASCADE,
    source                text             NOT NULL CHECK (source IN ('INSIGHTS', 'SDK')),
    jitter_ms             double precision CHECK (jitter_ms >= 0),
    latency_ms            double precision CHECK (latency_ms >= 0),
    packet_loss_percent   double precision CHECK (packet_loss_percent BETWEEN 0 AND 100),
    mos                   double precision CHECK (mos BETWEEN 1 AND 5),
    -- The MOS was estimated from latency, jitter and loss (Insights gives none for PSTN legs).
    mos_estimated         boolean          NOT NULL DEFAULT false,
    codec                 text             CHECK (char_length(codec) <= 32),
    measured_at           timestamptz      NOT NULL,
    created_at            timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX telephony_call_quality_call_idx ON telephony_call_quality (call_id, measured_at);
CREATE UNIQUE INDEX telephony_call_quality_insights_idx ON telephony_call_quality (call_id) WHERE source = 'INSIGHTS';
