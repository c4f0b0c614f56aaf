-- The flag_rate anomaly rule (docs/guardrails.md): a client whose requests over the
-- last hour were flagged by the guardrails more than flag_share of the time (at
-- least min_requests requests) raises an alert, or is also throttled.
ALTER TABLE anomaly_rules DROP CONSTRAINT anomaly_rules_kind_check;
ALTER TABLE anomaly_rules ADD CONSTRAINT anomaly_rules_kind_check
    CHECK (kind IN ('token_spike', 'new_source_ip', 'flag_rate'));
ALTER TABLE anomaly_rules ADD COLUMN flag_share double precision NOT NULL DEFAULT 0.2
    CHECK (flag_share > 0 AND flag_share <= 1);
ALTER TABLE anomaly_rules ADD COLUMN min_requests integer NOT NULL DEFAULT 20 CHECK (min_requests >= 1);

INSERT INTO anomaly_rules (name, kind, factor, baseline_days, min_baseline_tokens, action, throttle_minutes, flag_share, min_requests)
VALUES ('flag_rate', 'flag_rate', 5, 7, 10000, 'alert', 60, 0.2, 20)
ON CONFLICT (name) DO NOTHING;
