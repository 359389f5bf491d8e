-- Retention: old events and idempotency keys are pruned by age. Both tables are appended
-- to in time order, so a BRIN index finds the old rows for almost no cost on insert.
create index events_created_at_brin on events using brin (created_at);
create index idempotency_keys_created_at_brin on idempotency_keys using brin (created_at);
