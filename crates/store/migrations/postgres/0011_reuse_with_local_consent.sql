-- A reused approval (approval_valid_for) on a computer that requires local
-- consent: the request stays pending until the person at the computer
-- allows, with reused_from naming the earlier request from the start and
-- reused_by its approvers (core's authorization::Reused).
ALTER TABLE requests ADD COLUMN reused_by TEXT;
