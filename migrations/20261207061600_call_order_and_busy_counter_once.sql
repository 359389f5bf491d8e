-- Two rules of contract §2, each written once here and used by every query and index that
-- needs it (the Rust side states them once too: `domain::call_order`, `Status::holds_counter`).

-- Call order: among waiting tickets, `priority` ones first, then the oldest issue time, then
-- the id as a stable tie-break. `call_key` is a ticket's place in that order but for the
-- tie-break: a bigint, the issue time in microseconds, with 2^62 added for `normal` tickets
-- so that every priority ticket comes first (no issue time is 2^62 µs, 146,000 years, from
-- 1970). Queries order and compare by `(call_key(priority, created_at), id)`, and the
-- waiting indexes are built on it. It is an IMMUTABLE SQL function that the planner inlines,
-- in queries and in index expressions alike, so an `order by … limit n` is read off the
-- index, no sort; and the index keys are plain bigints and uuids (a composite key, tried
-- first, cost about a tenth of the issue rate: docs/benchmarks.md).
create function call_key(priority text, created_at timestamptz)
    returns bigint
    language sql immutable parallel safe
    as $$ select case when priority = 'normal' then 4611686018427387904 else 0 end
                 + (extract(epoch from created_at - timestamptz '1970-01-01 00:00:00+00')
                    * 1000000)::int8 $$;

-- The first key past a priority class: the tickets behind ticket n in its class are those
-- with `(call_key(n), n.id) < (call_key(t), t.id)` and `call_key(t) < call_class_end(n)`,
-- one range of the index.
create function call_class_end(priority text)
    returns bigint
    language sql immutable parallel safe
    as $$ select case when priority = 'normal' then 9223372036854775807
                      else 4611686018427387904 end $$;

drop index tickets_waiting_call_order_idx;
create index tickets_waiting_call_order_idx
    on tickets (tenant_id, call_key(priority, created_at), id) where status = 'waiting';

drop index tickets_service_waiting_idx;
create index tickets_service_waiting_idx
    on tickets (service_id, call_key(priority, created_at), id) where status = 'waiting';

-- Busy counter: a ticket that is called or serving holds its counter, and a counter is busy
-- while it has such a ticket. Queries check `busy_counters`; the unique index, which keeps
-- a counter to one such ticket, has the same function as its predicate.
create function holds_counter(status text)
    returns boolean
    language sql immutable parallel safe
    as $$ select status in ('called', 'serving') $$;

create view busy_counters as
    select counter_id, id as ticket_id from tickets where holds_counter(status);

drop index tickets_counter_active_key;
create unique index tickets_counter_active_key
    on tickets (counter_id) where holds_counter(status);
