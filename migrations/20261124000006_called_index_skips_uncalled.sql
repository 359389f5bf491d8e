-- Recent calls per service (wait estimates) need only tickets that were called. Without
-- the predicate the index held every waiting ticket too, under a NULL `called_at`: a scan
-- for recent calls read through all of them, and the planner could pick this index to
-- count a service's waiting tickets, reading every ticket of the service.
drop index tickets_service_called_idx;
create index tickets_service_called_idx on tickets (service_id, called_at desc)
    where called_at is not null;
