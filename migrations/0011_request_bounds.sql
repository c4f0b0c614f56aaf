-- Request bounds per tier, regional endpoints per residency rule, and the reserved
-- residency name "global".
--
-- max_choices is the most completions one request may ask for (n, or best_of for
-- legacy completions); 0 keeps only the gateway's own bound of 1 to 128.
-- max_output_tokens is the largest max_tokens (or max_completion_tokens) a request may
-- ask for; 0 means no cap. A tier with both set keeps default_max_tokens within
-- max_output_tokens. Existing tiers get 0 and 0, which is how they behaved before
-- this migration (docs/limits.md).
ALTER TABLE tiers
    ADD COLUMN max_choices       integer NOT NULL DEFAULT 0 CHECK (max_choices BETWEEN 0 AND 128),
    ADD COLUMN max_output_tokens bigint  NOT NULL DEFAULT 0 CHECK (max_output_tokens >= 0),
    ADD CONSTRAINT tiers_default_max_tokens_within_max_output_tokens_check
        CHECK (max_output_tokens = 0 OR default_max_tokens <= max_output_tokens);

-- endpoint_url is the data-plane URL that clients of the residency should call (the
-- 421 wrong_region answer names it, docs/design.md §4 step 2 and §9); '' means none.
-- The admin API checks its form.
ALTER TABLE residency_rules
    ADD COLUMN endpoint_url text NOT NULL DEFAULT '';

-- A client's residency "global" means no restriction (stored as NULL in
-- clients.residency, docs/design.md §9), so no residency rule may have that name. No
-- release seeded or required one; an installation that created one must move its
-- clients to another rule and delete it before upgrading.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM residency_rules WHERE residency = 'global') THEN
        RAISE EXCEPTION 'residency rule "global" exists, but the name now means no residency restriction: '
            'create a rule with another name, move its clients there, delete "global", then upgrade';
    END IF;
END
$$;
ALTER TABLE residency_rules
    ADD CONSTRAINT residency_rules_residency_not_global_check CHECK (residency <> 'global');
