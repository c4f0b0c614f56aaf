-- A load-balancing weight per model deployment: among the healthy deployments of a
-- model in the same preference group (the worker's own region, then the rest), each
-- gets a share of the traffic proportional to its weight, scaled down by its recent
-- latency. Weight 0 is a standby: it is used only when no weighted deployment of its
-- group is healthy. Existing rows share traffic equally, as before.

ALTER TABLE models
    ADD COLUMN weight integer NOT NULL DEFAULT 1 CHECK (weight >= 0 AND weight <= 1000);
