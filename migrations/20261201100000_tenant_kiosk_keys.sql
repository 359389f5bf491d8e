-- Kiosk keys: a secret per tenant that its kiosk pages send when they issue a ticket, so
-- that real kiosks do not share the anonymous issuing quotas, which a flood from elsewhere
-- can spend. 64 hex digits from two random UUIDs: 244 random bits, drawn by
-- gen_random_uuid() from the server's strong random source (PostgreSQL 13 or newer).
create function new_kiosk_key() returns text
    language sql volatile
    as $$ select replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '') $$;

-- Existing tenants get a key each (a volatile default is evaluated per row).
alter table tenants add column kiosk_key text not null default new_kiosk_key();
