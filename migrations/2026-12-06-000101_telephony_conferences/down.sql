DROP TABLE telephony_supervisions;
DROP TABLE telephony_conference_participants;
DROP TABLE telephony_conferences;
