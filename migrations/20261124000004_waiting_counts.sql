-- Waiting tickets per service and priority class, kept by every ticket change right after
-- it takes the tenant's seq (so under that lock, in seq order). A queue summary then costs
-- one row per service instead of a count over every waiting ticket, inside the section
-- that serialises a tenant's writers.
alter table services
    add column waiting_normal integer not null default 0,
    add column waiting_priority integer not null default 0;

update services s
   set waiting_normal = (select count(*) from tickets t
                          where t.service_id = s.id and t.status = 'waiting'
                            and t.priority = 'normal'),
       waiting_priority = (select count(*) from tickets t
                            where t.service_id = s.id and t.status = 'waiting'
                              and t.priority = 'priority');

alter table services
    add constraint services_waiting_counts_check
    check (waiting_normal >= 0 and waiting_priority >= 0);
