-- The service a request asks for, as its wire JSON, so that an operator who
-- reconnects (after a server restart) resumes exactly what was approved.
ALTER TABLE requests ADD COLUMN service_json TEXT;
