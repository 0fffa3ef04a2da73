-- The limits checked at every connect (issue 32), each read from an index
-- of what it counts rather than from all of an operator's requests ever
-- (which `requests_operator_id` made them walk: a cost that grew with the
-- operator's history).
--
-- Requests still pending, per operator.
CREATE INDEX requests_operator_pending ON requests (operator_id, expires_at) WHERE state = 'pending';
-- Requests of the last hour, per operator and computer.
CREATE INDEX requests_operator_computer ON requests (operator_id, computer_id, created_at);
