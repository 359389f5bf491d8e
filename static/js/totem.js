// The kiosk ("totem"): a person picks a service (and, if entitled by law, priority), takes a
// ticket and sees its code, the people ahead and the estimated wait, with a QR code to follow
// it on a phone. The shown ticket is followed live. After a while without interaction the
// kiosk returns to the start screen for the next person. Outside the site's opening hours it
// says when the site opens instead of offering services, and comes back by itself.
//
// URL parameters: ?idle_secs=N (seconds without interaction before returning to the start
// screen, default 20), ?show=<ticket id> (re-shows a ticket, e.g. to print it again),
// ?poll_secs=N and ?open_check_secs=N (see live.js), ?lang=en|pt-BR. The fragment #kiosk_key=KEY (from
// `nextup tenant kiosk-key`) provisions this kiosk: see takeKioskKey.

import { api, errorCode, newIdempotencyKey, slugFromPath } from './api.js';
import { onLanguageChange, renderLanguageSwitcher, t, translatePage, currentLanguage } from './i18n.js';
import { connectLive, openCheckSecsFromQuery, pollSecsFromQuery, watchOpening } from './live.js';
import { fillWithCounter, formatWait, opensAtText, renderConnection, renderWait, statusText } from './ui.js';

const params = new URLSearchParams(location.search);
const slug = slugFromPath();
const base = `/tenants/${encodeURIComponent(slug)}`;

// The tenant's kiosk key, sent with every ticket so that this kiosk does not share the
// anonymous quotas (a flood from elsewhere cannot lock it out). It comes once in the URL
// fragment, which browsers never send to a server (so it is in no access log), is kept in
// localStorage and removed from the address bar. An empty `#kiosk_key=` forgets it.
const KIOSK_KEY_STORAGE = `nextup.totem.kiosk_key.${slug}`;
const kioskKey = takeKioskKey();

function takeKioskKey() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('kiosk_key');
  if (fromUrl === null) {
    try { return localStorage.getItem(KIOSK_KEY_STORAGE); } catch { return null; }
  }
  fragment.delete('kiosk_key');
  const rest = fragment.toString();
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  try {
    if (fromUrl) localStorage.setItem(KIOSK_KEY_STORAGE, fromUrl);
    else localStorage.removeItem(KIOSK_KEY_STORAGE);
  } catch { /* private mode: the key serves this visit only */ }
  return fromUrl || null;
}

const IDLE_SECS = (() => {
  const value = Number(params.get('idle_secs'));
  return Number.isFinite(value) && value > 0 ? value : 20;
})();
const REFRESH_DEBOUNCE_MS = 300;
const PENDING_KEY_TTL_MS = 120000;
const ERROR_SHOW_MS = 10000;

const $ = (id) => document.getElementById(id);
const ui = {
  tenant: document.querySelector('[data-testid="tenant-name"]'),
  connection: document.querySelector('[data-testid="connection"]'),
  lang: $('lang'),
  error: $('error'),
  start: $('start'),
  openView: $('open-view'),
  closed: $('closed'),
  closedOpens: $('closed-opens'),
  priority: $('priority'),
  priorityState: $('priority-state'),
  services: $('services'),
  servicesMessage: $('services-message'),
  servicesRetryBox: $('services-retry-box'),
  servicesRetry: $('services-retry'),
  busy: $('busy'),
  ticket: $('ticket'),
  code: $('ticket-code'),
  service: $('ticket-service'),
  ticketPriority: $('ticket-priority'),
  state: $('ticket-state'),
  status: $('ticket-status'),
  called: $('ticket-called'),
  calledTitle: document.querySelector('#ticket-called .ticket-called-title'),
  go: $('ticket-go'),
  waiting: $('ticket-waiting'),
  ahead: $('ticket-ahead'),
  estimate: $('ticket-estimate'),
  finished: $('ticket-finished'),
  qr: $('ticket-qr'),
  link: $('ticket-link'),
  issued: $('ticket-issued'),
  print: $('print'),
  newTicket: $('new-ticket'),
  idleNote: $('idle-note'),
  slipTenant: $('slip-tenant'),
  slipCode: $('slip-code'),
  slipService: $('slip-service'),
  slipPriority: $('slip-priority'),
  slipQr: $('slip-qr'),
  slipTime: $('slip-time'),
};

// The counter name, kept as its own element inside "Go to {counter}".
const counterEl = document.createElement('span');
counterEl.className = 'ticket-counter';
counterEl.dataset.testid = 'ticket-counter';

const state = {
  view: 'start',
  services: [], // [{id, code, name}] from GET …/services
  servicesLoaded: false,
  // Contract §8, from GET …/services: closed outside the opening hours, until `opensAt`.
  open: true,
  opensAt: null,
  timeZone: undefined, // the tenant's, if the server says it; else the browser's
  summaries: new Map(), // service id → {waiting, estimated_wait_secs}
  priority: false,
  busy: false,
  pending: null, // {serviceId, priority, key, at}: reused when a failed issue is retried
  ticket: null, // the shown public ticket
  ticketVersion: 0, // bumped on every live change of the shown ticket
  recent: new Map(), // ticket id → latest ticket from ticket_update (the POST reply may lose the race)
  lastInteraction: Date.now(),
  connection: 'connecting',
  tenantName: '',
};

let refreshTimer = null;
let servicesAsked = 0; // answers to an older GET …/services are dropped
let servicesRetryTimer = null;
let errorTimer = null;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/* ---------- errors ---------- */

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(hideError, ERROR_SHOW_MS);
}

function hideError() {
  clearTimeout(errorTimer);
  ui.error.hidden = true;
  ui.error.textContent = '';
}

/* ---------- start screen ---------- */

function waitingText(summary) {
  if (!summary) return '';
  const count = summary.waiting;
  if (!count) return t('totem.service.waiting_none');
  const people = count === 1 ? t('totem.service.waiting_one') : t('totem.service.waiting_other', { count });
  const wait = formatWait(summary.estimated_wait_secs);
  return wait ? `${people} · ${wait}` : people;
}

function renderServices() {
  ui.services.replaceChildren();
  ui.services.classList.toggle('many', state.services.length > 5);
  for (const service of state.services) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'service-button';
    button.dataset.testid = `service-${service.code}`;
    button.dataset.serviceId = service.id;
    button.disabled = state.busy;
    const code = document.createElement('span');
    code.className = 'service-code';
    code.textContent = service.code;
    code.setAttribute('aria-hidden', 'true');
    const text = document.createElement('span');
    text.className = 'service-text';
    const name = document.createElement('span');
    name.className = 'service-name';
    name.textContent = service.name;
    const wait = document.createElement('span');
    wait.className = 'service-wait';
    wait.textContent = waitingText(state.summaries.get(service.id));
    text.append(name, wait);
    const tag = document.createElement('span');
    tag.className = 'service-priority-tag';
    tag.textContent = t('totem.priority.selected');
    text.append(tag);
    button.append(code, text);
    button.addEventListener('click', () => issue(service));
    ui.services.append(button);
  }
  if (state.servicesLoaded && state.services.length === 0) {
    ui.servicesMessage.textContent = t('totem.no_services');
  }
}

function updateWaitingCounts() {
  ui.services.querySelectorAll('.service-button').forEach((button) => {
    const wait = button.querySelector('.service-wait');
    if (wait) wait.textContent = waitingText(state.summaries.get(button.dataset.serviceId));
  });
}

function renderPriority() {
  ui.priority.setAttribute('aria-pressed', String(state.priority));
  ui.priorityState.textContent = state.priority ? t('totem.priority.on') : t('totem.priority.off');
  document.body.classList.toggle('priority-on', state.priority);
}

function setPriority(on) {
  state.priority = on;
  renderPriority();
}

/** Open: the services to choose from. Closed: when the site opens again, instead. */
function renderOpening() {
  document.body.dataset.open = String(state.open);
  ui.openView.hidden = !state.open;
  ui.closed.hidden = state.open;
  ui.closedOpens.textContent = state.open ? '' : opensAtText(state.opensAt, state.timeZone);
}

async function loadServices() {
  clearTimeout(servicesRetryTimer);
  if (!state.servicesLoaded) ui.servicesMessage.textContent = t('totem.loading');
  servicesAsked += 1;
  const asked = servicesAsked;
  let reply;
  try {
    reply = await api(`${base}/services`);
  } catch {
    if (asked === servicesAsked) servicesFailed(t('common.network_error'));
    return;
  }
  if (asked !== servicesAsked) return;
  if (reply.status === 200 && reply.body && Array.isArray(reply.body.services)) {
    // The buttons are rebuilt only when the services changed, so that the checks of the
    // opening hours never pull a button from under a finger.
    const same = state.servicesLoaded && JSON.stringify(reply.body.services) === JSON.stringify(state.services);
    state.services = reply.body.services;
    state.servicesLoaded = true;
    state.open = reply.body.open !== false;
    state.opensAt = state.open ? null : reply.body.opens_at || null;
    state.timeZone = reply.body.timezone || undefined;
    opening.seen(state.opensAt);
    ui.servicesMessage.textContent = state.services.length ? '' : t('totem.no_services');
    ui.servicesRetryBox.hidden = true;
    if (!same) renderServices();
    renderOpening();
    return;
  }
  if (errorCode(reply) === 'tenant_not_found') {
    state.services = [];
    renderServices();
    ui.servicesMessage.textContent = t('common.tenant_not_found');
    return;
  }
  servicesFailed(t('totem.error.generic'));
}

function servicesFailed(text) {
  if (state.servicesLoaded) return; // keep the list we have; the next return to start retries
  ui.servicesMessage.textContent = text;
  ui.servicesRetryBox.hidden = false;
  servicesRetryTimer = setTimeout(loadServices, 10000);
}

/* ---------- issuing ---------- */

function setBusy(busy) {
  state.busy = busy;
  ui.busy.hidden = !busy;
  ui.services.querySelectorAll('button').forEach((button) => { button.disabled = busy; });
  ui.priority.disabled = busy;
}

async function issue(service) {
  if (state.busy) return;
  hideError();
  const priority = state.priority ? 'priority' : 'normal';
  const now = Date.now();
  const pending = state.pending;
  // A retry of the same choice after a failure reuses the key, so that a request that did
  // reach the server is not issued twice.
  if (!pending || pending.serviceId !== service.id || pending.priority !== priority
      || now - pending.at > PENDING_KEY_TTL_MS) {
    state.pending = { serviceId: service.id, priority, key: newIdempotencyKey(), at: now };
  }
  const { key } = state.pending;
  setBusy(true);
  let reply;
  try {
    for (let attempt = 0; ; attempt += 1) {
      reply = await api(`${base}/tickets`, {
        method: 'POST',
        body: { service_id: service.id, priority },
        idempotencyKey: key,
        headers: kioskKey ? { 'X-Kiosk-Key': kioskKey } : {},
      });
      if (reply.status === 409 && errorCode(reply) === 'request_in_progress' && attempt < 6) {
        await sleep(500);
        continue;
      }
      break;
    }
  } catch {
    setBusy(false);
    showError(t('common.network_error'));
    return;
  }
  setBusy(false);
  if (reply.status === 201 || reply.status === 200) {
    state.pending = null;
    showTicket(reply.body);
    if (reply.headers.get('Idempotent-Replayed')) scheduleRefresh(0);
    return;
  }
  const code = errorCode(reply);
  switch (code) {
    case 'rate_limited':
      showError(t('totem.error.rate_limited'));
      break;
    case 'service_inactive':
    case 'service_not_found':
      state.pending = null;
      showError(t('totem.error.service_unavailable'));
      loadServices();
      break;
    case 'tenant_not_found':
      state.pending = null;
      showError(t('common.tenant_not_found'));
      break;
    case 'closed':
      // The site closed since the services were read: say when it opens (read again).
      state.pending = null;
      state.open = false;
      renderOpening();
      loadServices();
      break;
    case 'invalid_kiosk_key':
      // Rotated: staff must open the kiosk page with the new key. Never issue without it.
      state.pending = null;
      showError(t('totem.error.kiosk_key'));
      break;
    case 'request_in_progress':
    case 'database_unavailable':
      showError(t('totem.error.busy'));
      break;
    default:
      if (reply.status >= 500) {
        showError(t('totem.error.busy'));
      } else {
        state.pending = null;
        showError(t('totem.error.generic'));
      }
  }
}

/* ---------- the ticket ---------- */

function followPath(ticket) {
  return `/t/${encodeURIComponent(slug)}/ticket/${encodeURIComponent(ticket.id)}`;
}



function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  try {
    return date.toLocaleString(currentLanguage(), { dateStyle: 'short', timeStyle: 'short' });
  } catch {
    return date.toLocaleString();
  }
}

function renderTicket() {
  const ticket = state.ticket;
  if (!ticket) return;
  const status = ticket.status;
  ui.code.textContent = ticket.code;
  ui.service.textContent = ticket.service ? ticket.service.name : '';
  ui.ticketPriority.hidden = ticket.priority !== 'priority';

  ui.status.dataset.status = status;
  ui.status.textContent = statusText(status);
  ui.state.dataset.status = status;

  const counterName = ticket.counter ? ticket.counter.name : '';
  counterEl.textContent = counterName;
  const atCounter = (status === 'called' || status === 'serving') && counterName;
  ui.called.hidden = !atCounter;
  if (atCounter) {
    ui.calledTitle.hidden = status !== 'called';
    fillWithCounter(ui.go, status === 'called' ? 'common.ticket.go_to' : 'common.ticket.serving', counterEl);
  } else if (!ui.go.contains(counterEl)) {
    ui.go.replaceChildren(counterEl);
  }

  const waiting = status === 'waiting';
  ui.waiting.hidden = !waiting;
  renderWait(ui.ahead, ui.estimate, ticket);

  const finished = ['done', 'no_show', 'cancelled', 'expired'].includes(status);
  ui.finished.hidden = !finished;
  ui.finished.textContent = finished ? t(`totem.finished.${status}`) : '';

  const follow = followPath(ticket);
  const qr = `${follow}/qr.svg`;
  if (ui.qr.getAttribute('src') !== qr) ui.qr.src = qr;
  if (ui.slipQr.getAttribute('src') !== qr) ui.slipQr.src = qr;
  ui.qr.alt = t('totem.qr_hint');
  ui.link.href = follow;
  ui.link.textContent = `${location.host}${follow}`;
  const issued = t('totem.issued_at', { time: formatTime(ticket.created_at) });
  ui.issued.textContent = issued;

  ui.slipTenant.textContent = state.tenantName;
  ui.slipCode.textContent = ticket.code;
  ui.slipService.textContent = ticket.service ? ticket.service.name : '';
  ui.slipPriority.hidden = ticket.priority !== 'priority';
  ui.slipTime.textContent = issued;
}

function applyTicket(ticket) {
  if (!state.ticket || ticket.id !== state.ticket.id) return;
  state.ticket = ticket;
  state.ticketVersion += 1;
  renderTicket();
}

function showTicket(ticket) {
  const latest = state.recent.get(ticket.id);
  state.ticket = latest || ticket;
  state.ticketVersion += 1;
  state.view = 'ticket';
  setPriority(false);
  hideError();
  ui.start.hidden = true;
  ui.ticket.hidden = false;
  state.lastInteraction = Date.now();
  renderTicket();
  renderIdle();
  ui.newTicket.focus({ preventScroll: true });
}

function backToStart() {
  clearTimeout(refreshTimer);
  state.ticket = null;
  state.view = 'start';
  setPriority(false);
  hideError();
  ui.ticket.hidden = true;
  ui.start.hidden = false;
  ui.idleNote.textContent = '';
  state.lastInteraction = Date.now();
  window.scrollTo(0, 0);
  loadServices();
}

/** Re-reads the shown ticket (its place in line moves with every change of the queue). */
function scheduleRefresh(delay = REFRESH_DEBOUNCE_MS) {
  if (!state.ticket) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshTicket, delay);
}

async function refreshTicket() {
  const ticket = state.ticket;
  if (!ticket) return;
  const version = state.ticketVersion;
  let reply;
  try {
    reply = await api(`${base}/tickets/${encodeURIComponent(ticket.id)}`);
  } catch {
    return; // offline: live.js keeps trying, and its snapshots update us
  }
  // A live change that arrived meanwhile is newer than this answer.
  if (!state.ticket || state.ticket.id !== ticket.id || state.ticketVersion !== version) return;
  if (reply.status === 200 && reply.body) applyTicket(reply.body);
}

async function showById(id) {
  let reply;
  try {
    reply = await api(`${base}/tickets/${encodeURIComponent(id)}`);
  } catch {
    showError(t('common.network_error'));
    return;
  }
  if (reply.status === 200 && reply.body) showTicket(reply.body);
  else if (errorCode(reply) === 'tenant_not_found') showError(t('common.tenant_not_found'));
  else showError(t('totem.error.ticket_not_found'));
}

/* ---------- idle ---------- */

function idleRemaining() {
  return Math.max(0, IDLE_SECS - (Date.now() - state.lastInteraction) / 1000);
}

function renderIdle() {
  if (state.view !== 'ticket') return;
  ui.idleNote.textContent = t('totem.idle', { secs: Math.ceil(idleRemaining()) });
}

function idleTick() {
  const remaining = idleRemaining();
  if (state.view === 'ticket') {
    if (remaining <= 0) backToStart();
    else renderIdle();
  } else if (remaining <= 0 && (state.priority || !ui.error.hidden)) {
    // The next person should not inherit a choice or a message.
    setPriority(false);
    hideError();
  }
}

function interacted() {
  state.lastInteraction = Date.now();
  renderIdle();
}

/* ---------- live ---------- */

function setSummaries(services) {
  state.summaries = new Map(services.map((s) => [s.id, s]));
  updateWaitingCounts();
}

function setTenantName(name) {
  if (!name || name === state.tenantName) return;
  state.tenantName = name;
  ui.tenant.textContent = name;
  ui.slipTenant.textContent = name;
}

function rememberUpdate(ticket) {
  state.recent.delete(ticket.id);
  state.recent.set(ticket.id, ticket);
  if (state.recent.size > 50) state.recent.delete(state.recent.keys().next().value);
}

const live = connectLive({
  slug,
  audience: 'totem',
  pollSecs: pollSecsFromQuery(),
  onState(next) {
    const was = state.connection;
    state.connection = next;
    renderConnection(ui.connection, next);
    // Back after an outage: the site may have opened or closed meanwhile.
    if (next === 'live' && (was === 'reconnecting' || was === 'polling')) loadServices();
  },
  onSnapshot(snapshot) {
    if (snapshot.tenant) setTenantName(snapshot.tenant.name);
    setSummaries(snapshot.services || []);
    if (state.ticket) {
      const id = state.ticket.id;
      const found = [...(snapshot.waiting || []), ...(snapshot.called || [])].find((x) => x.id === id);
      if (found) applyTicket(found);
      else scheduleRefresh(0); // finished (done, missed, cancelled): ask for it
    }
  },
  onTicketUpdate({ ticket }) {
    if (!ticket) return;
    rememberUpdate(ticket);
    if (state.ticket && ticket.id === state.ticket.id) applyTicket(ticket);
  },
  onQueueUpdate({ services }) {
    if (services) setSummaries(services);
    if (state.ticket && state.ticket.status === 'waiting') scheduleRefresh();
  },
});
window.nextupLive = live;

const opening = watchOpening({ check: loadServices, checkSecs: openCheckSecsFromQuery() });

/* ---------- start ---------- */

translatePage();
renderLanguageSwitcher(ui.lang);
renderPriority();
renderConnection(ui.connection, live.state || 'connecting');

ui.priority.addEventListener('click', () => setPriority(!state.priority));
ui.servicesRetry.addEventListener('click', loadServices);
ui.newTicket.addEventListener('click', backToStart);
ui.print.addEventListener('click', () => window.print());
for (const type of ['pointerdown', 'keydown', 'touchstart', 'wheel']) {
  document.addEventListener(type, interacted, { passive: true, capture: true });
}
setInterval(idleTick, 1000);

onLanguageChange(() => {
  renderPriority();
  renderServices();
  renderTicket();
  renderIdle();
  renderOpening();
  renderConnection(ui.connection, state.connection);
  if (!state.servicesLoaded) ui.servicesMessage.textContent = t('totem.loading');
});

loadServices();
const showId = params.get('show');
if (showId) showById(showId);
