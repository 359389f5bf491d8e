-- Ring a doorbell for every committed event, so that every server process sharing this
-- database can deliver it: NOTIFY is sent at commit, in commit order. The payload is only
-- '<tenant>:<seq>'; listeners read the event itself from the log.
create function events_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('nextup_events', new.tenant_id::text || ':' || new.seq::text);
    return null;
end;
$$;

create trigger events_notify_after_insert
    after insert on events
    for each row execute function events_notify();
