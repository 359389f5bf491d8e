-- Administration (contract §9): the audit log, who did what to what, per tenant.
-- The user and the target are snapshots: `username` and `target_name` keep the names of
-- the moment, and an entry outlives a renamed service. `user_id` is null for what no user
-- did (an automatic close of the day) and for a failed login of an unknown username.
create table audit_log (
    id          bigint generated always as identity primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    at          timestamptz not null,
    user_id     uuid,
    username    text,
    action      text not null,
    target_type text,
    target_id   uuid,
    target_name text,
    constraint audit_log_user_whole check ((user_id is null) = (username is null)),
    constraint audit_log_target_whole check (
        (target_type is null) = (target_id is null) and (target_type is null) = (target_name is null))
);

-- `GET …/audit`: a tenant's newest entries first.
create index audit_log_tenant_newest on audit_log (tenant_id, at desc, id desc);
-- Retention: the oldest entries of all tenants.
create index audit_log_at on audit_log (at);
