-- Why a call was refused when its result alone does not say: today
-- 'no-caller-number' (the INVITE carried no usable caller's number: an
-- anonymous From and no P-Asserted-Identity). Such a call is stored with
-- an empty caller. Also why ansim ended a call itself, when it was not a
-- plain hang-up: 'session-expired', 'session-refresh-failed',
-- 'dialog-probe-failed', 'no-answer-in-ack', 'no-offer-in-2xx'.
ALTER TABLE calls ADD COLUMN reason TEXT;
