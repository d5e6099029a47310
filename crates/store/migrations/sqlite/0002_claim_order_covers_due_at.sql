-- claim_due walks legs_claim_order in deadline order and skips legs that are not due; with due_at in the index it
-- decides that from the index entry instead of fetching each skipped row.
DROP INDEX legs_claim_order;
CREATE INDEX legs_claim_order ON legs (coalesce(deadline, 9223372036854775807), not_before, due_at)
    WHERE due_at IS NOT NULL;
