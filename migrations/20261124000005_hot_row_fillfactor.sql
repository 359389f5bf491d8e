-- Rows updated on every ticket change (a tenant's seq, a service's daily number and its
-- waiting counts) pile up dead versions in their page, and every read walks that chain
-- until the page is pruned, which by default happens only when it is nearly full. With
-- pages kept 90% empty they are pruned after a few versions, so the chains stay short.
alter table event_sequences set (fillfactor = 10);
alter table daily_numbers set (fillfactor = 10);
alter table services set (fillfactor = 10);
