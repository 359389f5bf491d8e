-- Two rules of contract §2, each written once here and used by every query and index that
-- needs it (the Rust side states them once too: `domain::call_order`, `Status::holds_counter`).

-- Call order: among waiting tickets, `priority` ones first, then the oldest issue time, then
-- the id as a stable tie-break. `call_place` is a ticket's place in that order; queries order
-- and compare by it, and the waiting indexes below are built on it. It is an IMMUTABLE SQL
-- function that the planner inlines into the row it builds, both in queries and in index
-- expressions, so an `order by call_place(…) limit n` is read off the index, no sort.
create type call_place as (
    normal      boolean,     -- false for `priority` tickets, so they come first
    created_at  timestamptz,
    id          uuid
);

create function call_place(priority text, created_at timestamptz, id uuid)
    returns call_place
    language sql immutable parallel safe
    as $$ select row(priority = 'normal', created_at, id)::call_place $$;

-- The last place a ticket of this priority can have: the tickets behind ticket n in its
-- priority class are those with `call_place(n) < call_place(t) <= call_class_end(n.priority)`,
-- one range of the index (no ticket is issued at 'infinity').
create function call_class_end(priority text)
    returns call_place
    language sql immutable parallel safe
    as $$ select call_place(priority, 'infinity', 'ffffffff-ffff-ffff-ffff-ffffffffffff') $$;

drop index tickets_waiting_call_order_idx;
create index tickets_waiting_call_order_idx
    on tickets (tenant_id, call_place(priority, created_at, id)) where status = 'waiting';

drop index tickets_service_waiting_idx;
create index tickets_service_waiting_idx
    on tickets (service_id, call_place(priority, created_at, id)) where status = 'waiting';

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
