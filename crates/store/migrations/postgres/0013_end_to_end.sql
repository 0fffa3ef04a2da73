-- Sessions sealed end to end (issue 29).
--
-- The fingerprint of the computer's identity, as its agent said it when
-- the request was made: the email and the approval page show its short
-- form, for approvers and the operator to compare.
ALTER TABLE requests ADD COLUMN computer_identity TEXT;
-- The operator asked for the session sealed end to end (1): a session the
-- server cannot read, and so does not record. Kept here so that an
-- operator picking the request up again cannot say otherwise.
ALTER TABLE requests ADD COLUMN sealed BIGINT NOT NULL DEFAULT 0;
-- A recording sealed on the computer with age (1): its chunks are the
-- pieces of one age file, which the server cannot open; size and sha256
-- are what the computer said of the text inside.
ALTER TABLE recordings ADD COLUMN sealed BIGINT NOT NULL DEFAULT 0;
