DROP TABLE webhook_receipts;
DROP TABLE inbox;
DROP TABLE outbox;
DROP TABLE appointments;
