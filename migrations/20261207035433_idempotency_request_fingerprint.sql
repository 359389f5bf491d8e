-- An idempotency key keeps a SHA-256 fingerprint of its request (method, path, projection
-- and body) instead of the request itself: anonymous clients could make every key store a
-- 64 KiB body for 24 hours. The saved answer (status and body) stays: it is what a replay
-- sends, and it is at most a ticket or a short error body.
alter table idempotency_keys add column request_sha256 bytea;

-- Keys saved before this migration get a hash of their old text, which no request's
-- fingerprint equals: a retry of such a key within its 24 hours is refused (422
-- idempotency_key_reused) and never applied a second time.
update idempotency_keys set request_sha256 = sha256(convert_to('legacy:' || request::text, 'UTF8'));

alter table idempotency_keys
    alter column request_sha256 set not null,
    add constraint idempotency_keys_request_sha256_length check (octet_length(request_sha256) = 32),
    drop column request;
