-- nextup's initial schema: tenants and their services, counters, users, tickets,
-- the per-day ticket numbering, the append-only event log and idempotency keys.
-- Every constraint is named so that db code can map the ones clients can hit to 409s.

create table tenants (
    id          uuid primary key,
    slug        text not null,
    name        text not null,
    timezone    text not null,
    created_at  timestamptz not null default now(),
    constraint tenants_slug_key unique (slug),
    constraint tenants_slug_format check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$')
);

-- One row per tenant: the seq of its last ticket change. Incrementing it takes the row
-- lock that serialises a tenant's event writers, so seqs commit in order with no gaps.
create table event_sequences (
    tenant_id   uuid primary key references tenants (id) on delete cascade,
    last_seq    bigint not null default 0,
    constraint event_sequences_last_seq_positive check (last_seq >= 0)
);

create table services (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    code        text not null,
    name        text not null,
    active      boolean not null default true,
    created_at  timestamptz not null default now(),
    constraint services_tenant_code_key unique (tenant_id, code),
    constraint services_code_format check (code ~ '^[A-Z]{1,4}$')
);

create table counters (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    name        text not null,
    created_at  timestamptz not null default now(),
    constraint counters_tenant_name_key unique (tenant_id, name)
);

create table users (
    id            uuid primary key,
    tenant_id     uuid not null references tenants (id) on delete cascade,
    username      text not null,
    password_hash text not null,
    role          text not null,
    created_at    timestamptz not null default now(),
    constraint users_tenant_username_key unique (tenant_id, username),
    constraint users_role_known check (role in ('operator', 'admin'))
);

-- The last number handed out per service and tenant-local day. An upsert on this row
-- is what makes concurrent issues get distinct numbers.
create table daily_numbers (
    service_id   uuid not null references services (id) on delete cascade,
    service_day  date not null,
    last_number  integer not null,
    constraint daily_numbers_pkey primary key (service_id, service_day)
);

create table tickets (
    id             uuid primary key,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    service_id     uuid not null references services (id),
    code           text not null,
    service_day    date not null,
    status         text not null,
    priority       text not null,
    customer_name  text,
    call_count     integer not null default 0,
    counter_id     uuid references counters (id),
    operator_id    uuid references users (id),
    created_at     timestamptz not null,
    called_at      timestamptz,
    started_at     timestamptz,
    finished_at    timestamptz,
    constraint tickets_status_known check
        (status in ('waiting', 'called', 'serving', 'done', 'no_show', 'cancelled')),
    constraint tickets_priority_known check (priority in ('normal', 'priority')),
    constraint tickets_tenant_day_code_key unique (tenant_id, service_day, code)
);

-- A counter holds at most one ticket that is called or serving (contract: counter_busy).
create unique index tickets_counter_active_key
    on tickets (counter_id) where status in ('called', 'serving');

-- Call-next order: priority first, then oldest issue time, then id as a tie-break.
create index tickets_waiting_call_order_idx
    on tickets (tenant_id, (priority = 'normal'), created_at, id) where status = 'waiting';

create index tickets_service_waiting_idx
    on tickets (service_id, (priority = 'normal'), created_at, id) where status = 'waiting';

-- Recent history per service, for wait estimates.
create index tickets_service_finished_idx
    on tickets (service_id, finished_at desc) where status = 'done';

create index tickets_service_called_idx on tickets (service_id, called_at desc);

create index tickets_tenant_status_idx on tickets (tenant_id, status, created_at);

-- Append-only log of ticket changes. `ticket` is the operator view of the ticket right
-- after the change and `queue` the per-service summary at that seq, so that replay sends
-- exactly what live sessions received.
create table events (
    tenant_id        uuid not null references tenants (id) on delete cascade,
    seq              bigint not null,
    action           text not null,
    previous_status  text,
    ticket_id        uuid not null,
    ticket           jsonb not null,
    queue            jsonb not null,
    created_at       timestamptz not null,
    constraint events_pkey primary key (tenant_id, seq)
);

-- Responses of POSTs made with an Idempotency-Key, replayed for 24 hours.
create table idempotency_keys (
    tenant_id      uuid not null references tenants (id) on delete cascade,
    key            text not null,
    request        jsonb not null,
    status_code    smallint not null,
    response_body  jsonb,
    created_at     timestamptz not null default now(),
    constraint idempotency_keys_pkey primary key (tenant_id, key)
);
