-- Operation names. Until now a tier's "completion" allowed only the legacy
-- /v1/completions endpoint, and "chat" allowed both /v1/chat/completions and
-- Anthropic's /v1/messages. From now on "completion" means all text generation (chat,
-- text_completion and messages, as the seed's tiers mean it), and the finer names are
-- chat, text_completion and messages.
--
-- Every stored tier keeps exactly the operations it allowed: "completion" becomes
-- "text_completion", and "chat" becomes "chat" plus "messages". A tier that ends up
-- with all three text-generation operations lists "completion" instead. When a tier
-- changed, the policy version is bumped, so the control plane publishes the rewritten
-- tiers as soon as it starts.

WITH changed AS (
UPDATE tiers t
SET allowed_operations = rewritten.ops,
    revision = t.revision + 1,
    updated_at = now()
FROM (
    SELECT name,
           CASE WHEN ops @> ARRAY['chat', 'text_completion', 'messages']
                THEN array_prepend('completion', array_remove(array_remove(array_remove(ops,
                         'chat'), 'text_completion'), 'messages'))
                ELSE ops
           END AS ops
    FROM (
        SELECT name,
               ARRAY(
                   SELECT op FROM (
                       SELECT DISTINCT CASE o WHEN 'completion' THEN 'text_completion' ELSE o END AS op
                       FROM unnest(allowed_operations) AS o
                       UNION
                       SELECT 'messages' WHERE 'chat' = ANY (allowed_operations)
                   ) AS expanded
                   ORDER BY op
               ) AS ops
        FROM tiers
        WHERE allowed_operations && ARRAY['completion', 'chat']
    ) AS expanded_tiers
) AS rewritten
WHERE t.name = rewritten.name
RETURNING t.name
)
UPDATE policy_state SET version = version + 1 WHERE EXISTS (SELECT 1 FROM changed);
