DROP TABLE telephony_call_quality;
DROP TABLE telephony_recordings;
DROP TABLE telephony_followups;
DROP TABLE telephony_calls;
DROP TABLE telephony_phone_numbers;
