-- The practitioner's name as their platform token gives it when they join the room: the CRM
-- shares user ids, not names, so room views show the name once the practitioner has joined.
ALTER TABLE signaling_rooms ADD COLUMN practitioner_name text CHECK (char_length(practitioner_name) <= 200);
