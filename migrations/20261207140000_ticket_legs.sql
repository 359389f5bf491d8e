-- Statistics (GET …/stats, contract §4 and §9) count a ticket's legs, its stays in one
-- service: a leg starts when the ticket is issued, transferred in or reactivated, and ends
-- when it is transferred out or reaches a final status. The event log is pruned; tickets
-- and their legs are kept, so stats reach back to a tenant's first day.
--
-- `tickets` keeps the current (or last) leg, with three columns that cost no extra write:
-- `first_called_at` is the leg's first call (a recall moves `called_at`, not this), set by
-- every call and cleared by a requeue; `queued_at` is when the leg started if not at issue
-- (transfer, reactivate); `transfers` counts the legs moved to `ticket_legs` (0: the
-- current leg is the one the ticket was issued in). Constant defaults add the columns
-- without rewriting the table, and no index is added on tickets: the stats read a day range
-- through the unique index (tenant_id, service_day, code).
--
-- Tickets from before this migration: `first_called_at` is null, and stats fall back to
-- `called_at` (the last call: only a recalled ticket's wait reads longer); `queued_at` is
-- null, so a leg started by a transfer or reactivation is measured from the issue time; and
-- legs transferred out before it were never kept: such a ticket counts once, in the service
-- and by the operator of its last leg.
alter table tickets
    add column first_called_at timestamptz,
    add column queued_at timestamptz,
    add column transfers integer not null default 0,
    add constraint tickets_transfers_not_negative check (transfers >= 0);

-- The legs that ended in a transfer out, written only by a transfer (the hot path of issue,
-- call and finish writes nothing here). `leg` numbers a ticket's legs from 1, the leg it
-- was issued in. `tenant_id` is its ticket's, kept here for the index (deleting a tenant
-- reaches the legs through their tickets).
create table ticket_legs (
    ticket_id        uuid not null references tickets (id) on delete cascade,
    leg              integer not null,
    tenant_id        uuid not null,
    service_id       uuid not null references services (id),
    service_day      date not null,
    counter_id       uuid references counters (id),
    operator_id      uuid references users (id),
    queued_at        timestamptz not null,
    first_called_at  timestamptz,
    started_at       timestamptz,
    ended_at         timestamptz not null,
    constraint ticket_legs_pkey primary key (ticket_id, leg),
    constraint ticket_legs_leg_positive check (leg >= 1)
);

-- Stats over a range of a tenant's days.
create index ticket_legs_tenant_day_idx on ticket_legs (tenant_id, service_day);
