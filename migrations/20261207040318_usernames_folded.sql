-- Usernames are one per tenant whatever their case: `Ana` and `ana` are one user. nextup
-- stores each name as entered (in NFC) and a folded key (NFC, then Unicode lower case),
-- which logins look users up by and which is unique per tenant.
alter table users add column username_key text;

-- Existing users get lower(username) as their key (nextup folds new names in Rust; for
-- ASCII names the two agree, and PostgreSQL's lower() follows the database's locale for
-- others). Names that already collide once folded must not fail the upgrade: the earliest
-- created user of each folded name gets the key, and the later ones keep none. Those can
-- still log in by their exact name (logins try the exact name first), and no new user can
-- take any of those names. Find them with `select … from users where username_key is null`
-- and rename or remove them at leisure.
update users u
   set username_key = lower(u.username)
 where not exists (
       select 1 from users o
        where o.tenant_id = u.tenant_id
          and lower(o.username) = lower(u.username)
          and (o.created_at, o.id) < (u.created_at, u.id));

create unique index users_tenant_username_folded_key on users (tenant_id, username_key);
