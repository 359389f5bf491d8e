-- Foreign keys that cost the write path less, for the same integrity.
--
-- Every inserted ticket and event checks its foreign keys, and each check takes a
-- `FOR KEY SHARE` lock on the row it finds. A batch of the writer (`changes::writer`)
-- that carries the changes of many tenants paid one such lock, a write to the locked
-- row, for each tenant's `tenants` row and each service, on top of the checks
-- themselves: measured with pgbench replaying a writer batch of 16 issues, these locks
-- were the largest part of what a batch of 15 tenants costs more than a batch of one
-- (docs/benchmarks.md).
--
-- - An event now references its tenant's log head, `event_sequences`, whose row the
--   same transaction has just updated to take the event's seq: the check finds a row
--   its own transaction already holds, and takes no new lock.
-- - A ticket references its service by (tenant_id, service_id): one check instead of
--   two, and it also makes sure the service is the ticket's tenant's.
-- - A request's stored answer (`idempotency_keys`) references its tenant's log head
--   too: it is written after the batch's events, so the row is already held unless none
--   of the tenant's requests in the batch changed anything.
--
-- Deleting a tenant still deletes everything of it (tenants → services → tickets, and
-- tenants → event_sequences → events; the legs below). Deleting a service row now deletes
-- its tickets too; the API never deletes services (they are deactivated).
--
-- Adding the constraints reads `tickets` and `events` once, under a lock that holds their
-- writers back until this migration commits.

-- Every tenant has had its log head since it was created; a database edited by hand may
-- lack one, which the new references need.
insert into event_sequences (tenant_id, last_seq)
select t.id, coalesce((select max(e.seq) from events e where e.tenant_id = t.id), 0)
  from tenants t
 where not exists (select 1 from event_sequences s where s.tenant_id = t.id);

alter table events
    drop constraint events_tenant_id_fkey,
    add constraint events_tenant_id_fkey foreign key (tenant_id)
        references event_sequences (tenant_id) on delete cascade;

alter table idempotency_keys
    drop constraint idempotency_keys_tenant_id_fkey,
    add constraint idempotency_keys_tenant_id_fkey foreign key (tenant_id)
        references event_sequences (tenant_id) on delete cascade;

alter table services
    add constraint services_tenant_id_id_key unique (tenant_id, id);

alter table tickets
    drop constraint tickets_tenant_id_fkey,
    drop constraint tickets_service_id_fkey,
    add constraint tickets_service_fkey foreign key (tenant_id, service_id)
        references services (tenant_id, id) on delete cascade;

-- Deleting a tenant failed once one of its tickets had been transferred: the check that
-- no leg still names a deleted service ran before the legs' own deletion, which came
-- through their tickets. The legs now go with their tenant directly.
alter table ticket_legs
    add constraint ticket_legs_tenant_id_fkey foreign key (tenant_id)
        references tenants (id) on delete cascade;
