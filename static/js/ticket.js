// The follow page a person opens on their phone (from the kiosk's QR code):
// /t/{slug}/ticket/{id}. It shows the ticket live: people ahead and the estimated wait while
// waiting, and "Go to {counter}" when called, with a chime (once the page has been touched,
// as browsers require) and a vibration where the phone supports it.

import { api, errorCode, slugFromPath } from './api.js';
import { onLanguageChange, renderLanguageSwitcher, t, translatePage } from './i18n.js';
import { connectLive, pollSecsFromQuery } from './live.js';
import { fillWithCounter, renderConnection, renderWait, statusText } from './ui.js';

const slug = slugFromPath();
const ticketId = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() || '');
const base = `/tenants/${encodeURIComponent(slug)}`;
const REFRESH_DEBOUNCE_MS = 300;
const RETRY_MS = 5000;
// Final statuses; `expired`: the day closed before the ticket was called (contract §8).
const FINISHED = new Set(['done', 'no_show', 'cancelled', 'expired']);

const $ = (id) => document.getElementById(id);
const ui = {
  tenant: $('tenant-name'),
  connection: document.querySelector('[data-testid="connection"]'),
  error: $('error'),
  card: $('card'),
  code: $('code'),
  service: $('service'),
  priority: $('priority'),
  status: $('status'),
  state: $('state'),
  called: $('called'),
  calledTitle: $('called-title'),
  go: $('go'),
  waiting: $('waiting'),
  ahead: $('ahead'),
  estimate: $('estimate'),
  finished: $('finished'),
  loading: $('loading'),
  sound: $('sound'),
  lang: $('lang'),
};

const counterEl = document.createElement('span');
counterEl.className = 'counter';
counterEl.dataset.testid = 'ticket-counter';
ui.go.append(counterEl);

let ticket = null;
let version = 0; // bumped on every change applied, so that a slower GET does not undo it
let connection = 'connecting';
let refreshTimer = null;
let retryTimer = null;
let notFound = false;

/* ---------- sound and vibration ---------- */

let audio = null;

/** Browsers let a page play sound only after a touch or key press: prepare it then. */
function unlockAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  if (!audio) {
    try { audio = new Context(); } catch { audio = null; }
  }
  if (audio && audio.state === 'suspended') audio.resume().catch(() => {});
  return audio;
}

function chime() {
  if (!audio) return;
  try {
    const now = audio.currentTime;
    [[880, 0], [660, 0.28], [880, 0.56]].forEach(([freq, at]) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.4, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.26);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.3);
    });
  } catch {
    // No sound: the screen still shows the call.
  }
}

function alertPerson() {
  chime();
  if (typeof navigator.vibrate === 'function') {
    try { navigator.vibrate([300, 150, 300, 150, 300]); } catch { /* not allowed */ }
  }
}

function renderSound() {
  const on = !!audio && audio.state !== 'closed';
  ui.sound.setAttribute('aria-pressed', String(on));
  ui.sound.textContent = on ? t('ticket.sound.enabled') : t('ticket.sound.enable');
}

/* ---------- rendering ---------- */



function render() {
  if (!ticket) return;
  const status = ticket.status;
  ui.card.setAttribute('aria-busy', 'false');
  ui.loading.hidden = true;
  ui.code.textContent = ticket.code;
  ui.service.textContent = ticket.service ? ticket.service.name : '';
  ui.priority.hidden = ticket.priority !== 'priority';
  ui.status.dataset.status = status;
  ui.status.textContent = statusText(status);
  ui.state.dataset.status = status;
  document.body.dataset.status = status;

  const counterName = ticket.counter ? ticket.counter.name : '';
  counterEl.textContent = counterName;
  const atCounter = (status === 'called' || status === 'serving') && counterName;
  ui.called.hidden = !atCounter;
  if (atCounter) {
    ui.calledTitle.hidden = status !== 'called';
    fillWithCounter(ui.go, status === 'called' ? 'common.ticket.go_to' : 'common.ticket.serving', counterEl);
  }

  const waiting = status === 'waiting';
  ui.waiting.hidden = !waiting;
  renderWait(ui.ahead, ui.estimate, ticket);

  const finished = FINISHED.has(status);
  ui.finished.hidden = !finished;
  ui.finished.textContent = finished ? t(`ticket.finished.${status}`) : '';

  document.title = status === 'called' && counterName
    ? t('ticket.title_called', { code: ticket.code, counter: counterName })
    : `${ticket.code} – ${statusText(status)}`;
}

function apply(next) {
  if (!next || next.id !== ticketId) return;
  const previous = ticket;
  ticket = next;
  version += 1;
  hideError();
  render();
  const calledNow = next.status === 'called'
    && (!previous || previous.status !== 'called' || next.call_count > previous.call_count);
  if (previous && calledNow) alertPerson();
}

/* ---------- loading ---------- */

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function hideError() {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

function scheduleRefresh(delay = REFRESH_DEBOUNCE_MS) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(load, delay);
}

async function load() {
  clearTimeout(retryTimer);
  if (notFound) return;
  const before = version;
  let reply;
  try {
    reply = await api(`${base}/tickets/${encodeURIComponent(ticketId)}`);
  } catch {
    if (!ticket) showError(t('common.network_error'));
    retryTimer = setTimeout(load, RETRY_MS);
    return;
  }
  if (reply.status === 200 && reply.body) {
    if (version === before) apply(reply.body); // else a live change arrived meanwhile: newer
    return;
  }
  const code = errorCode(reply);
  if (code === 'ticket_not_found' || code === 'invalid_path' || code === 'tenant_not_found') {
    notFound = true;
    ui.loading.hidden = true;
    showError(code === 'tenant_not_found' ? t('common.tenant_not_found') : t('ticket.error.ticket_not_found'));
    return;
  }
  if (!ticket) showError(t('ticket.error.generic'));
  retryTimer = setTimeout(load, RETRY_MS);
}

/* ---------- live ---------- */

const live = connectLive({
  slug,
  audience: 'totem',
  pollSecs: pollSecsFromQuery(),
  onState(next) {
    connection = next;
    renderConnection(ui.connection, next);
  },
  onSnapshot(snapshot) {
    if (snapshot.tenant && snapshot.tenant.name) ui.tenant.textContent = snapshot.tenant.name;
    const found = [...(snapshot.waiting || []), ...(snapshot.called || [])].find((x) => x.id === ticketId);
    if (found) apply(found);
    else scheduleRefresh(0); // finished, or not seen yet: ask
  },
  onTicketUpdate({ ticket: changed }) {
    if (changed && changed.id === ticketId) apply(changed);
  },
  onQueueUpdate() {
    if (!ticket || ticket.status === 'waiting') scheduleRefresh();
  },
});
window.nextupLive = live;

/* ---------- start ---------- */

translatePage();
renderLanguageSwitcher(ui.lang);
renderConnection(ui.connection, live.state || connection);
renderSound();

for (const type of ['pointerdown', 'keydown', 'touchend']) {
  document.addEventListener(type, () => { unlockAudio(); renderSound(); }, { passive: true, capture: true });
}
ui.sound.addEventListener('click', () => {
  unlockAudio();
  renderSound();
  chime(); // a sample, so that the person knows what to listen for
});

// Phones suspend background pages and their sockets: catch up when the page is seen again.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible') return;
  scheduleRefresh(0);
  if (live.state !== 'live') live.reconnectNow();
});

onLanguageChange(() => {
  render();
  renderSound();
  renderConnection(ui.connection, connection);
});

load();
