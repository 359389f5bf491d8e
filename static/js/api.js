// REST calls to /api/v1. Every call resolves to {status, body, headers}; it rejects only
// when the network fails, so callers can show the contract's error codes to people.

export async function api(path, { method = 'GET', body, token, headers = {}, idempotencyKey } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (idempotencyKey) init.headers['Idempotency-Key'] = idempotencyKey;
  const response = await fetch(`/api/v1${path}`, init);
  const text = await response.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = null; }
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** The error code of a failed call (`counter_busy`, …), or null. */
export function errorCode(reply) {
  return reply && reply.body && reply.body.error ? reply.body.error.code : null;
}

/** A fresh key, so that a retried click never acts twice. */
export function newIdempotencyKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

/** The tenant slug of a page under /t/{slug}/… */
export function slugFromPath() {
  const parts = location.pathname.split('/');
  return decodeURIComponent(parts[2] || '');
}
