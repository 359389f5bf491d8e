// The live connection every page shares (docs/websocket.md):
// - a WebSocket to /ws/{slug}/{totem|operator}, resumed with `since` after a drop, so that
//   no change is missed and none is applied twice;
// - a gap in `seq` (a lost message) makes it reconnect with `since`;
// - reconnection with exponential backoff and full jitter (1 s base, 30 s cap);
// - while the socket is down, polling GET …/queue every `pollSecs` (30 s) with If-None-Match;
// - an application-level ping, because browsers hide protocol pings from page code.
//
// States reported through onState: 'connecting', 'live', 'reconnecting', 'polling'.
// onAuthError(reason) when the token is refused: the 4001 close reason, or the 401's error
// code (`token_revoked` when an admin changed the account).

import { api } from './api.js';

const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 30000;
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000;
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout's longest delay

export function connectLive({
  slug,
  audience = 'totem',
  token = null,
  pollSecs = 30,
  onState = () => {},
  onSnapshot = () => {},
  onTicketUpdate = () => {},
  onQueueUpdate = () => {},
  onAuthError = () => {},
}) {
  let socket = null;
  let lastSeq = null;
  let attempts = 0;
  let closedByUs = false;
  let reconnectTimer = null;
  let pollTimer = null;
  let pingTimer = null;
  let lastHeard = 0;
  let etag = null;
  let state = null;

  const setState = (next) => {
    if (next !== state) {
      state = next;
      document.body.dataset.connection = next;
      onState(next);
    }
  };

  const applySnapshot = (snapshot) => {
    lastSeq = snapshot.seq;
    onSnapshot(snapshot);
  };

  const url = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const params = new URLSearchParams();
    if (lastSeq !== null) params.set('since', String(lastSeq));
    if (audience === 'operator' && token) params.set('token', token);
    const query = params.toString();
    return `${scheme}://${location.host}/ws/${encodeURIComponent(slug)}/${audience}${query ? `?${query}` : ''}`;
  };

  const open = () => {
    clearTimeout(reconnectTimer);
    if (closedByUs) return;
    setState(state === null ? 'connecting' : state);
    const ws = new WebSocket(url());
    socket = ws;
    ws.onopen = () => {
      lastHeard = Date.now();
    };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      lastHeard = Date.now();
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      handle(message, ws);
    };
    ws.onclose = (event) => {
      if (ws !== socket) return;
      socket = null;
      clearInterval(pingTimer);
      if (closedByUs) return;
      if (event.code === 4001) {
        onAuthError(event.reason);
        return;
      }
      dropped();
    };
  };

  const handle = (message, ws) => {
    switch (message.type) {
      case 'hello':
        attempts = 0;
        stopPolling();
        setState('live');
        clearInterval(pingTimer);
        pingTimer = setInterval(() => {
          if (Date.now() - lastHeard > SILENCE_LIMIT_MS) {
            ws.close();
            return;
          }
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'ping' }));
        }, PING_EVERY_MS);
        break;
      case 'snapshot':
        applySnapshot(message.data);
        break;
      case 'ticket_update':
      case 'queue_update':
        if (lastSeq !== null && message.seq <= lastSeq && message.type === 'ticket_update') return;
        if (lastSeq !== null && message.type === 'ticket_update' && message.seq > lastSeq + 1) {
          // A change went missing: resume from the last one applied.
          ws.close();
          return;
        }
        if (message.type === 'ticket_update') {
          onTicketUpdate(message.data, message.seq);
        } else {
          // The pair is complete: only now is this seq fully applied.
          if (lastSeq === null || message.seq > lastSeq) {
            onQueueUpdate(message.data, message.seq);
            lastSeq = message.seq;
          }
        }
        break;
      default:
        break; // pong, error
    }
  };

  const dropped = () => {
    // Once polling works, failed reconnection attempts do not change what people see.
    if (state !== 'polling') setState('reconnecting');
    startPolling();
    // Full jitter: a random delay up to the exponential bound, so that a building full of
    // screens does not reconnect in lockstep after a restart.
    const bound = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempts);
    attempts += 1;
    reconnectTimer = setTimeout(open, Math.random() * bound);
  };

  const poll = async () => {
    try {
      const headers = etag ? { 'If-None-Match': etag } : {};
      const reply = await api(`/tenants/${encodeURIComponent(slug)}/queue`, { token, headers });
      // Closed meanwhile (signed out, or a new token after a change of password): not ours.
      if (closedByUs || state === 'live') return;
      if (reply.status === 401) {
        onAuthError(reply.body && reply.body.error ? reply.body.error.code : '');
        return;
      }
      if (reply.status === 200) {
        etag = reply.headers.get('ETag');
        applySnapshot(reply.body);
      }
      if (reply.status === 200 || reply.status === 304) setState('polling');
    } catch {
      // Still offline; the next poll or reconnection will tell.
    }
  };

  const startPolling = () => {
    if (pollTimer) return;
    poll();
    pollTimer = setInterval(poll, pollSecs * 1000);
  };

  const stopPolling = () => {
    clearInterval(pollTimer);
    pollTimer = null;
  };

  // The browser noticed the network is back: do not wait out the backoff.
  window.addEventListener('online', () => {
    if (!socket && !closedByUs) open();
  });

  open();

  return {
    get seq() { return lastSeq; },
    get state() { return state; },
    get socket() { return socket; },
    /** Reconnects at once (e.g. after the network came back). */
    reconnectNow() {
      if (socket) socket.close();
      else open();
    },
    close() {
      closedByUs = true;
      stopPolling();
      clearTimeout(reconnectTimer);
      clearInterval(pingTimer);
      if (socket) socket.close();
    },
  };
}

/** The poll interval of a page: `?poll_secs=N` (for tests and tuning), else 30 s. */
export function pollSecsFromQuery() {
  const value = Number(new URLSearchParams(location.search).get('poll_secs'));
  return Number.isFinite(value) && value >= 1 ? value : 30;
}

/**
 * Keeps a kiosk or a display told whether the site is open (contract §8). `check` re-reads
 * GET …/services (which says `open` and `opens_at`) and hands its answer to `seen`; the watch
 * calls it every `checkSecs` (60 s) and again just after the `opens_at` it was last shown, so
 * a closed kiosk comes back by itself when the site opens, and an open one notices it closed.
 * Pages also call `check` after a reconnection.
 */
export function watchOpening({ check, checkSecs = 60 }) {
  let openingTimer = null;
  setInterval(check, checkSecs * 1000);
  return {
    /** The services answer's `opens_at` while closed, else null. */
    seen(opensAt) {
      clearTimeout(openingTimer);
      const ms = opensAt ? Date.parse(opensAt) - Date.now() : NaN;
      if (!Number.isFinite(ms)) return;
      // Just after the opening, spread over a few seconds so that a building's screens do not
      // all ask at once; a browser clock ahead of the server's asks again shortly.
      const delay = ms > 0 ? ms + 1000 + Math.random() * 3000 : 5000;
      if (delay < MAX_TIMER_MS) openingTimer = setTimeout(check, delay);
    },
  };
}

/** How often a page asks whether the site is open: `?open_check_secs=N` (for tests), else 60 s. */
export function openCheckSecsFromQuery() {
  const value = Number(new URLSearchParams(location.search).get('open_check_secs'));
  return Number.isFinite(value) && value >= 1 ? value : 60;
}
