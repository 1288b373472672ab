-- Why a call was refused when its result alone does not say: today
-- 'no-caller-number' (the INVITE carried no usable caller's number: an
-- anonymous From and no P-Asserted-Identity). Such a call is stored with
-- an empty caller.
ALTER TABLE calls ADD COLUMN reason TEXT;
