-- Administration (contract §9): an admin can deactivate a counter. An inactive counter is
-- not listed to operators and nothing can be called to it (409 counter_inactive); its
-- tickets and history stay. A constant default adds the column without rewriting the table.
alter table counters add column active boolean not null default true;
