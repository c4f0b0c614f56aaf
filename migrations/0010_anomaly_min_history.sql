-- token_spike judges only a client with an established pattern: within the rule's
-- baseline window (the baseline_days × 24 whole hours before the previous hour), at
-- least min_history_hours hours with tokens, on at least min_history_days distinct UTC
-- days. A client short of that is never throttled or blocked by the rule
-- (docs/audit.md). 0 and 0 judge every client, as before this migration.
--
-- The window has baseline_days × 24 hours and touches at most baseline_days + 1 UTC
-- days, so a larger requirement could never be met. Every existing rule has
-- baseline_days >= 1, so the defaults (24 hours over 2 days) fit all of them.
ALTER TABLE anomaly_rules
    ADD COLUMN min_history_hours integer NOT NULL DEFAULT 24,
    ADD COLUMN min_history_days  integer NOT NULL DEFAULT 2,
    ADD CONSTRAINT anomaly_rules_min_history_hours_check
        CHECK (min_history_hours BETWEEN 0 AND baseline_days * 24),
    ADD CONSTRAINT anomaly_rules_min_history_days_check
        CHECK (min_history_days BETWEEN 0 AND baseline_days + 1);
