ALTER TABLE signaling_rooms DROP COLUMN practitioner_name;
