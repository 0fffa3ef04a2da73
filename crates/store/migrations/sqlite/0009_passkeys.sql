-- Passkey approvals (a computer's require_passkey): what the computer said
-- approvals must be made with (JSON of proto's PasskeyRequirement: its
-- nonce, deadline and pinned keys), and each approval's assertion (JSON of
-- core's passkey::Assertion), handed to the computer with the outcome.
ALTER TABLE requests ADD COLUMN passkey TEXT;
ALTER TABLE approvals ADD COLUMN assertion TEXT;
