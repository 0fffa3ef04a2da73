-- Repeated refusals and failed logins are kept as one row per minute with
-- a count (AuditKind::collapses); the trail is pruned by age, by the server
-- past its retention and by `doorman admin audit prune`.
ALTER TABLE audit_events ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_request ON audit_events (request_id, event);
CREATE INDEX audit_events_event ON audit_events (event, id);
