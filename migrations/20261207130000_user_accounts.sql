-- Accounts an admin manages without SQL (contract §9): users can be deactivated, and their
-- last login is shown. `token_generation` is written into every token issued to the user;
-- deactivating the user or changing their role or password increments it, which refuses every
-- token issued before (401 token_revoked). `tokens_revoked_at` says when it last did, so that a
-- process that could not hear the notifications below reads what it missed.
alter table users
    add column active            boolean not null default true,
    add column last_login_at     timestamptz,
    add column token_generation  integer not null default 0,
    add column tokens_revoked_at timestamptz;

create index users_tokens_revoked_at on users (tokens_revoked_at)
    where tokens_revoked_at is not null;

-- Every process keeps the generations it has checked in memory and learns of a change through
-- this notification ('<tenant>:<user>:<generation>'), sent at commit.
create function notify_tokens_revoked() returns trigger
language plpgsql as $$
begin
    perform pg_notify('nextup_tokens',
                      new.tenant_id::text || ':' || new.id::text || ':' || new.token_generation::text);
    return null;
end
$$;

create trigger users_tokens_revoked
    after update of token_generation on users
    for each row
    when (new.token_generation <> old.token_generation)
    execute function notify_tokens_revoked();
