-- One signaling room per appointment (seed 004): roomId and appointmentId are both unique.
CREATE TABLE signaling_rooms (
    id UUID PRIMARY KEY,
    org_id UUID NOT NULL,
    room_id TEXT NOT NULL UNIQUE,
    appointment_id UUID NOT NULL UNIQUE REFERENCES appointments (id),
    status TEXT NOT NULL DEFAULT 'Waiting' CHECK (status IN ('Waiting', 'InProgress', 'Ended')),
    practitioner_joined BOOLEAN NOT NULL DEFAULT false,
    patient_joined BOOLEAN NOT NULL DEFAULT false,
    started_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX signaling_rooms_org_status ON signaling_rooms (org_id, status);
