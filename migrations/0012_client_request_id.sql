-- Server-owned request ids (docs/design.md §7): an event's request_id is the
-- gateway's own id, its only dedupe key. The client's X-Request-Id, when it sent a
-- sane one, is kept beside it for correlation only: it is never a key, so a client
-- that repeats one id still has every request archived. The chain hash covers it
-- through the event's canonical JSON, like every other field.
ALTER TABLE audit_events ADD COLUMN client_request_id text NOT NULL DEFAULT '';
