-- Phone calls bridged through a per-call Twilio <Conference> so a supervisor can join them
-- (issue 19): the conference of each call, who is in it, and the supervision sessions
-- telephony applied for the monitoring service.

-- One conference per call, named `call_<call id>` (no personal data in Twilio's names).
CREATE TABLE telephony_conferences (
    call_id        uuid        PRIMARY KEY REFERENCES telephony_calls (id) ON DELETE CASCADE,
    org_id         uuid        NOT NULL,
    -- Twilio's ConferenceSid ("CF…"), known from the first conference status callback.
    conference_sid text        UNIQUE CHECK (char_length(conference_sid) = 34),
    -- pending: the call is being bridged; live: Twilio started it; ended: it is over (absorbs).
    status         text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'live', 'ended')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_conferences_org_idx ON telephony_conferences (org_id);

-- Each call leg in a conference: the rep, the customer, a supervisor.
CREATE TABLE telephony_conference_participants (
    call_sid    text        PRIMARY KEY CHECK (char_length(call_sid) = 34),
    call_id     uuid        NOT NULL REFERENCES telephony_calls (id) ON DELETE CASCADE,
    org_id      uuid        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('rep', 'customer', 'supervisor')),
    -- The monitoring session of a supervisor.
    session_id  uuid,
    -- ringing: asked to join; joined: in the conference; left: gone (absorbs); failed: never
    -- answered (no-answer, busy, failed, canceled; absorbs).
    status      text        NOT NULL CHECK (status IN ('ringing', 'joined', 'left', 'failed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_conference_participants_call_idx ON telephony_conference_participants (call_id);

-- Supervision sessions (sb.monitoring.session.* with a PHONE_CALL target) as telephony applied
-- them: one row per session, so a redelivered or late event changes nothing twice.
CREATE TABLE telephony_supervisions (
    session_id            uuid        PRIMARY KEY,
    org_id                uuid        NOT NULL,
    call_id               uuid,
    supervisor_user_id    uuid,
    mode                  text        NOT NULL CHECK (mode IN ('listen', 'coach', 'barge')),
    -- active: the supervisor's leg was asked to join; stopped: removed (absorbs); refused: the
    -- call was not live in a conference; failed: Twilio refused.
    status                text        NOT NULL CHECK (status IN ('active', 'stopped', 'refused', 'failed')),
    participant_call_sid  text        CHECK (char_length(participant_call_sid) = 34),
    reason                text        CHECK (char_length(reason) <= 500),
    -- When monitoring changed the mode last (orders mode changes of one session).
    mode_at               timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telephony_supervisions_call_idx ON telephony_supervisions (call_id);
