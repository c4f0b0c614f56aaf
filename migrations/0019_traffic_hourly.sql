-- Traffic rollup for the console's overview: per region and UTC hour, how many
-- requests the archive holds, how many failed (status >= 500) or were refused
-- (400–499), their tokens and cost, and a histogram of their gateway latency. The
-- archive adds to it in the transaction that stores the events, as it does to
-- usage_hourly, so the overview reads 24 rows per region instead of the events.
--
-- latency_buckets[i] counts the events whose latency_ms is at most the i-th bound
-- of 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000 ms
-- and above the one before; the 16th counts the rest (store.LatencyBoundsMS).
CREATE TABLE traffic_hourly (
    hour            timestamptz NOT NULL CHECK (date_trunc('hour', hour AT TIME ZONE 'UTC') = hour AT TIME ZONE 'UTC'),
    region          text        NOT NULL,
    requests        bigint      NOT NULL CHECK (requests >= 0),
    errors          bigint      NOT NULL CHECK (errors >= 0),
    refused         bigint      NOT NULL CHECK (refused >= 0),
    tokens_in       bigint      NOT NULL CHECK (tokens_in >= 0),
    tokens_out      bigint      NOT NULL CHECK (tokens_out >= 0),
    cost_usd_micros bigint      NOT NULL CHECK (cost_usd_micros >= 0),
    latency_buckets bigint[]    NOT NULL CHECK (cardinality(latency_buckets) = 16),
    PRIMARY KEY (hour, region)
);

-- The events archived before this rollup existed, for the overview's first day: each
-- region's last two days, read through its (region, ts, seq) index. During a rolling
-- upgrade, events that replicas still on the old version archive after this runs are
-- not in the rollup; the overview's figures for those hours run low until they age
-- out of its 24 hours.
INSERT INTO traffic_hourly
SELECT date_trunc('hour', e.ts, 'UTC'), e.region, count(*),
    count(*) FILTER (WHERE status >= 500),
    count(*) FILTER (WHERE status BETWEEN 400 AND 499),
    coalesce(sum(greatest(tokens_in, 0)), 0), coalesce(sum(greatest(tokens_out, 0)), 0),
    coalesce(sum(greatest(cost_usd_micros, 0)), 0),
    ARRAY[
        count(*) FILTER (WHERE latency_ms <= 1),
        count(*) FILTER (WHERE latency_ms > 1 AND latency_ms <= 2),
        count(*) FILTER (WHERE latency_ms > 2 AND latency_ms <= 5),
        count(*) FILTER (WHERE latency_ms > 5 AND latency_ms <= 10),
        count(*) FILTER (WHERE latency_ms > 10 AND latency_ms <= 25),
        count(*) FILTER (WHERE latency_ms > 25 AND latency_ms <= 50),
        count(*) FILTER (WHERE latency_ms > 50 AND latency_ms <= 100),
        count(*) FILTER (WHERE latency_ms > 100 AND latency_ms <= 250),
        count(*) FILTER (WHERE latency_ms > 250 AND latency_ms <= 500),
        count(*) FILTER (WHERE latency_ms > 500 AND latency_ms <= 1000),
        count(*) FILTER (WHERE latency_ms > 1000 AND latency_ms <= 2500),
        count(*) FILTER (WHERE latency_ms > 2500 AND latency_ms <= 5000),
        count(*) FILTER (WHERE latency_ms > 5000 AND latency_ms <= 10000),
        count(*) FILTER (WHERE latency_ms > 10000 AND latency_ms <= 30000),
        count(*) FILTER (WHERE latency_ms > 30000 AND latency_ms <= 60000),
        count(*) FILTER (WHERE latency_ms > 60000)
    ]::bigint[]
FROM audit_chain ch CROSS JOIN LATERAL (
    SELECT ts, region, status, tokens_in, tokens_out, cost_usd_micros, latency_ms
    FROM audit_events e WHERE e.region = ch.region AND e.ts >= now() - interval '2 days'
) e
GROUP BY 1, 2;
