-- Why ansim ended a call itself, when it was not a plain hang-up or refusal
-- ('session-expired', 'session-refresh-failed', 'dialog-probe-failed',
-- 'no-answer-in-ack', 'no-offer-in-2xx'); NULL otherwise.
ALTER TABLE calls ADD COLUMN end_reason TEXT;
