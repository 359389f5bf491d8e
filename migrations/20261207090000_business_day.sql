-- The business day of contract §8.

-- A ticket still waiting or called when its day closes is `expired` (final).
alter table tickets drop constraint tickets_status_known;
alter table tickets add constraint tickets_status_known check
    (status in ('waiting', 'called', 'serving', 'done', 'no_show', 'cancelled', 'expired'));

-- A tenant's settings (GET/PATCH …/settings). `opening_hours` is null for always open, or
-- an object of weekday → list of ["HH:MM", "HH:MM"] ranges, validated by the server
-- (`domain::business_day::OpeningHours`) before it is stored.
alter table tenants
    add column opening_hours jsonb,
    add column max_calls integer,
    add column priority_ratio integer,
    add constraint tenants_max_calls_positive check (max_calls >= 1),
    add constraint tenants_priority_ratio_positive check (priority_ratio >= 1);

-- Priority tickets called in a row to a counter, for the fair call order (`priority_ratio`):
-- a call of a priority ticket adds one, a call of a normal ticket sets it back to zero.
alter table counters add column priority_streak integer not null default 0;

-- The automatic closes done: one row per tenant and close instant (the end of the opening
-- hours, or local midnight). A process closes a day only if it inserts the row, in the
-- transaction that closes it, so several processes on one database close a day once.
create table day_closes (
    tenant_id  uuid not null references tenants (id) on delete cascade,
    due_at     timestamptz not null,
    closed_at  timestamptz not null,
    constraint day_closes_pkey primary key (tenant_id, due_at)
);
