-- Per-deployment connect and total timeouts (timeout_seconds stays the time to the
-- first byte of the answer), and how many probes a half-open circuit breaker lets
-- through. Existing rows get the defaults the data plane used before; 0 means the
-- data plane's default too (the admin API always writes a value).

ALTER TABLE deployments
    ADD COLUMN connect_timeout_seconds        integer NOT NULL DEFAULT 10 CHECK (connect_timeout_seconds >= 0),
    ADD COLUMN total_timeout_seconds          integer NOT NULL DEFAULT 600 CHECK (total_timeout_seconds >= 0),
    ADD COLUMN breaker_half_open_max_requests integer NOT NULL DEFAULT 1 CHECK (breaker_half_open_max_requests >= 0);
