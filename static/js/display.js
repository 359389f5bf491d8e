// The public display (/t/{slug}/display): a TV in a waiting room. It shows the current call very
// large, the last calls, the waiting count of each service, and announces every call and recall
// with a chime and a spoken call-out, one at a time, in the order they happened.
//
// Settings live in the URL, so that a TV is set up once: ?services=A,B (service codes) shows and
// announces only those services' calls and queues, for a screen per waiting room (all without
// it); ?sound=on, ?lang=en|pt-BR, ?poll_secs=N and ?open_check_secs=N (see live.js).

import { api, slugFromPath } from './api.js';
import { currentLanguage, onLanguageChange, renderLanguageSwitcher, t, translatePage } from './i18n.js';
import { connectLive, openCheckSecsFromQuery, pollSecsFromQuery, watchOpening } from './live.js';
import { el, formatWait, opensAtText, renderConnection, spokenCode } from './ui.js';

const RECENT_SHOWN = 5; // previous calls listed beside the current one
const HISTORY_MAX = 30; // calls remembered (current + previous)
const CHIME_MS = 950; // length of the two-tone chime
const PAUSE_NO_VOICE_MS = 350; // after the chime when there is no voice to speak
const SILENT_MS = 600; // an announcement while sound is off (still queued and logged)
const GAP_MS = 250; // between two announcements
const FLASH_MS = 3200;

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

const nodes = {
  tenant: byTestId('tenant-name'),
  notes: byTestId('display-notes'),
  filter: byTestId('display-filter'),
  closed: byTestId('closed-state'),
  clockTime: byTestId('clock-time'),
  clockDate: byTestId('clock-date'),
  error: byTestId('error'),
  now: byTestId('now'),
  code: byTestId('current-code'),
  counter: byTestId('current-counter'),
  currentEmpty: byTestId('current-empty'),
  recent: byTestId('recent-calls'),
  recentEmpty: byTestId('recent-empty'),
  waiting: byTestId('waiting-list'),
  connection: byTestId('connection'),
  soundState: byTestId('sound-state'),
  enableSound: byTestId('enable-sound'),
  languages: byTestId('lang-switcher'),
  announcer: byTestId('announcer'),
};

const slug = slugFromPath();
const params = new URLSearchParams(location.search);

/** The service codes of `?services=A,B`, upper-cased, or null for all services. */
const serviceFilter = (() => {
  const codes = (params.get('services') || '').split(',').map((code) => code.trim().toUpperCase()).filter(Boolean);
  return codes.length ? new Set(codes) : null;
})();

/** Whether this screen shows (and announces) the ticket's calls. */
function shows(ticket) {
  return !serviceFilter || Boolean(ticket.service && serviceFilter.has(String(ticket.service.code).toUpperCase()));
}

function shownServices(services) {
  return serviceFilter ? services.filter((service) => serviceFilter.has(String(service.code).toUpperCase())) : services;
}

const state = {
  tenant: null,
  allServices: [], // every service of the tenant (names for the filter note)
  services: [], // the services this screen shows
  // Public tickets, most recent call first: [0] is the current call, the rest the last calls.
  history: [],
  connection: 'connecting',
  loaded: false,
  shownKey: null,
  errorKey: null,
  // Contract §8, from GET …/services.
  open: true,
  opensAt: null,
  timeZone: undefined,
};

// Calls already announced (or already on screen at load), by ticket id and call time: a recall
// refreshes called_at, so every call and recall has its own key.
const announced = new Set();
const callKey = (ticket) => `${ticket.id}@${ticket.called_at}`;

window.nextupAnnouncements = [];

// ---------------------------------------------------------------------------------------------
// Queue state

/** Milliseconds of an RFC 3339 time, keeping the sub-millisecond digits for ordering. */
function callTime(ticket) {
  const text = ticket.called_at;
  if (!text) return 0;
  const fraction = /\.(\d+)/.exec(text);
  const whole = Date.parse(text.replace(/\.\d+/, ''));
  return (Number.isFinite(whole) ? whole : 0) + (fraction ? Number(`0.${fraction[1]}`) * 1000 : 0);
}

function onSnapshot(snapshot) {
  state.tenant = snapshot.tenant || state.tenant;
  state.allServices = snapshot.services || [];
  state.services = shownServices(state.allServices);
  const calledIds = new Set((snapshot.called || []).map((ticket) => ticket.id));
  const called = (snapshot.called || []).filter(shows);
  const waitingIds = new Set((snapshot.waiting || []).map((ticket) => ticket.id));
  // Calls no longer called or serving stay as history (done, missed, cancelled), unless the
  // ticket is waiting again (transferred or reactivated).
  const kept = state.history.filter((ticket) => !calledIds.has(ticket.id) && !waitingIds.has(ticket.id));
  state.history = [...called, ...kept]
    .sort((a, b) => callTime(b) - callTime(a))
    .slice(0, HISTORY_MAX);

  if (state.loaded) {
    // A snapshot after a reconnection or a poll: announce the calls that happened meanwhile,
    // oldest first. Tickets already being served need no call-out.
    called
      .filter((ticket) => ticket.status === 'called' && !announced.has(callKey(ticket)))
      .sort((a, b) => callTime(a) - callTime(b))
      .forEach((ticket) => enqueueAnnouncement(ticket));
  }
  called.forEach((ticket) => announced.add(callKey(ticket)));
  state.loaded = true;
  trimAnnounced();
  render();
}

function onTicketUpdate({ action, ticket }) {
  if (!ticket) return;
  switch (action) {
    case 'called':
    case 'recalled':
      if (!shows(ticket)) {
        // Another room's call (perhaps a ticket transferred away from this one's services).
        state.history = state.history.filter((item) => item.id !== ticket.id);
        break;
      }
      state.history = [ticket, ...state.history.filter((item) => item.id !== ticket.id)].slice(0, HISTORY_MAX);
      if (!announced.has(callKey(ticket))) {
        announced.add(callKey(ticket));
        enqueueAnnouncement(ticket);
      }
      trimAnnounced();
      break;
    case 'transferred':
    case 'reactivated':
    case 'expired':
      // Back to waiting, or the day closed before the person came: no longer a call.
      state.history = state.history.filter((item) => item.id !== ticket.id);
      break;
    default:
      // started, finished, no_show, cancelled: keep the call in the history, with fresh data.
      state.history = state.history.map((item) => (item.id === ticket.id ? ticket : item));
      break;
  }
  renderCalls();
}

function onQueueUpdate({ services }) {
  if (Array.isArray(services)) {
    state.allServices = services;
    state.services = shownServices(services);
  }
  renderWaiting();
  renderNotes();
}

function trimAnnounced() {
  if (announced.size <= 500) return;
  const keep = new Set(state.history.map(callKey));
  for (const key of announced) if (!keep.has(key)) announced.delete(key);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function counterName(ticket) {
  return ticket && ticket.counter ? ticket.counter.name : '';
}

/** 'short', 'medium' or 'long': long counter names get a smaller type instead of being cut. */
function sizeOf(text, medium, long) {
  if (text.length > long) return 'long';
  if (text.length > medium) return 'medium';
  return 'short';
}

function render() {
  renderTenant();
  renderNotes();
  renderCalls();
  renderWaiting();
  renderSound();
  renderConnection(nodes.connection, state.connection);
  renderClock();
  renderError();
}

function renderTenant() {
  const name = state.tenant ? state.tenant.name : '';
  nodes.tenant.textContent = name;
  document.title = name ? `${name} — ${t('display.title')}` : `nextup — ${t('display.title')}`;
}

/** The services this screen serves (when filtered) and, while the site is closed, when it opens. */
function renderNotes() {
  if (serviceFilter) {
    const names = [...serviceFilter].map((code) => {
      const service = state.allServices.find((item) => String(item.code).toUpperCase() === code);
      return service ? `${service.code} · ${service.name}` : code;
    });
    nodes.filter.dataset.services = [...serviceFilter].join(',');
    nodes.filter.textContent = t('display.filter', { services: names.join(', ') });
  }
  nodes.filter.hidden = !serviceFilter;
  document.body.dataset.open = String(state.open);
  nodes.closed.hidden = state.open;
  nodes.closed.textContent = state.open
    ? ''
    : [t('common.closed.title'), opensAtText(state.opensAt, state.timeZone)].filter(Boolean).join(' · ');
  nodes.notes.hidden = nodes.filter.hidden && nodes.closed.hidden;
}

function renderCalls() {
  const [current, ...previous] = state.history;

  if (current) {
    nodes.code.textContent = current.code;
    nodes.counter.textContent = counterName(current);
    nodes.now.dataset.counterSize = sizeOf(counterName(current), 10, 18);
    nodes.code.classList.remove('is-empty');
    nodes.code.dataset.length = String(Math.min(current.code.length, 8));
    nodes.now.dataset.status = current.status;
  } else {
    nodes.code.textContent = '—';
    nodes.counter.textContent = '';
    nodes.code.classList.add('is-empty');
    delete nodes.code.dataset.length;
    delete nodes.now.dataset.status;
  }
  nodes.now.classList.toggle('is-empty', !current);
  nodes.currentEmpty.hidden = Boolean(current);

  if (state.loaded) {
    // Flash when the current call changes, but not for the one already there at load.
    const key = current ? callKey(current) : '';
    if (key && state.shownKey !== null && key !== state.shownKey) flash();
    state.shownKey = key;
  }

  const items = previous.slice(0, RECENT_SHOWN).map((ticket) => {
    const item = el('li', 'recent-item');
    item.dataset.code = ticket.code;
    item.dataset.ticketId = ticket.id;
    item.dataset.status = ticket.status;
    item.setAttribute('aria-label', t('display.recent_item', { code: ticket.code, counter: counterName(ticket) }));
    const code = el('span', 'recent-code', ticket.code);
    code.dataset.length = String(Math.min(ticket.code.length, 8));
    const arrow = el('span', 'recent-arrow', '→');
    arrow.setAttribute('aria-hidden', 'true');
    const counter = el('span', 'recent-counter', counterName(ticket));
    counter.dataset.size = sizeOf(counterName(ticket), 9, 16);
    item.append(code, arrow, counter);
    return item;
  });
  nodes.recent.replaceChildren(...items);
  nodes.recentEmpty.hidden = items.length > 0;
}

function flash() {
  nodes.now.classList.remove('flash');
  void nodes.now.offsetWidth; // restart the animation
  nodes.now.classList.add('flash');
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => nodes.now.classList.remove('flash'), FLASH_MS);
}

function renderWaiting() {
  if (!state.services.length) {
    const empty = el('li', 'waiting-empty', state.loaded ? t('display.no_services') : '');
    nodes.waiting.replaceChildren(empty);
    return;
  }
  const items = state.services.map((service) => {
    const count = Number(service.waiting) || 0;
    const item = el('li', 'waiting-item');
    item.dataset.service = service.code;
    const badge = el('span', 'waiting-code', service.code);
    const text = el('span', 'waiting-text');
    const name = el('span', 'waiting-name', service.name);
    const eta = el('span', 'waiting-eta', count > 0 && service.estimated_wait_secs !== null && service.estimated_wait_secs !== undefined
      ? t('display.estimated', { wait: formatWait(service.estimated_wait_secs) })
      : '');
    text.append(name, eta);
    const number = el('span', 'waiting-count', String(count));
    number.dataset.testid = `waiting-${service.code}`;
    number.dataset.count = String(count);
    const label = el('span', 'waiting-label', t('display.waiting_label'));
    const tally = el('span', 'waiting-tally');
    tally.append(number, label);
    item.append(badge, text, tally);
    return item;
  });
  nodes.waiting.replaceChildren(...items);
}

function renderClock() {
  const now = new Date();
  const lang = currentLanguage();
  try {
    nodes.clockTime.textContent = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' }).format(now);
    nodes.clockDate.textContent = new Intl.DateTimeFormat(lang, { weekday: 'long', day: 'numeric', month: 'long' }).format(now);
  } catch {
    nodes.clockTime.textContent = now.toTimeString().slice(0, 5);
    nodes.clockDate.textContent = '';
  }
  nodes.clockTime.dateTime = now.toISOString();
}

function startClock() {
  renderClock();
  const tick = () => {
    renderClock();
    setTimeout(tick, 1000 - (Date.now() % 1000) + 20);
  };
  setTimeout(tick, 1000 - (Date.now() % 1000) + 20);
}

function renderError() {
  nodes.error.hidden = !state.errorKey;
  nodes.error.textContent = state.errorKey ? t(state.errorKey) : '';
}

// ---------------------------------------------------------------------------------------------
// Sound: a chime and a spoken call-out per call, queued so that none overlaps or is skipped.

const sound = { enabled: false, context: null, utterance: null };
const queue = [];
let playing = false;

// For tests and troubleshooting on site: the sound state as the page sees it.
window.nextupSound = {
  get enabled() { return sound.enabled; },
  get audioState() { return sound.context ? sound.context.state : null; },
  get voices() { return voices().length; },
  get pending() { return queue.length; },
  get playing() { return playing; },
};

function renderSound() {
  nodes.soundState.dataset.enabled = String(sound.enabled);
  nodes.soundState.textContent = t(sound.enabled ? 'display.sound.on' : 'display.sound.off');
  nodes.enableSound.hidden = sound.enabled;
}

function audioContext() {
  if (sound.context) return sound.context;
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  try { sound.context = new Context(); } catch { sound.context = null; }
  return sound.context;
}

/** Must run inside a user gesture (the one-time button): browsers block sound until then. */
function enableSound() {
  const context = audioContext();
  if (context) {
    try {
      if (context.state !== 'running') context.resume().catch(() => {});
      // A silent sample, so that the context is unlocked on every browser.
      const buffer = context.createBuffer(1, 1, context.sampleRate || 22050);
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(context.destination);
      source.start(0);
    } catch { /* still enable speech */ }
  }
  if ('speechSynthesis' in window) {
    try {
      const unlock = new SpeechSynthesisUtterance('');
      unlock.volume = 0;
      window.speechSynthesis.speak(unlock);
    } catch { /* no speech on this browser */ }
  }
  sound.enabled = true;
  renderSound();
}

function enqueueAnnouncement(ticket) {
  queue.push({ code: ticket.code, counter: counterName(ticket) });
  if (!playing) playQueue();
}

async function playQueue() {
  playing = true;
  while (queue.length) {
    const item = queue.shift();
    try {
      await announce(item);
    } catch {
      // An announcement that fails must never stall the ones after it.
    }
    await sleep(GAP_MS);
  }
  playing = false;
}

async function announce({ code, counter }) {
  const vars = { code: spokenCode(code), counter };
  const text = t(counter ? 'display.spoken' : 'display.spoken_no_counter', vars);
  window.nextupAnnouncements.push({ code, counter, text });
  tellScreenReaders(t(counter ? 'display.announcement' : 'display.announcement_no_counter', { code, counter }));

  if (!sound.enabled) {
    await sleep(SILENT_MS);
    return;
  }
  await playChime();
  if (voices().length) await speak(text);
  else await sleep(PAUSE_NO_VOICE_MS);
}

function tellScreenReaders(text) {
  // Emptied first so that the same text (a recall) is announced again.
  nodes.announcer.textContent = '';
  setTimeout(() => { nodes.announcer.textContent = text; }, 60);
}

/** A short two-tone "ding-dong", synthesised: no sound file to fetch. */
function playChime() {
  const context = sound.context;
  if (!context) return sleep(PAUSE_NO_VOICE_MS);
  try {
    if (context.state === 'suspended') context.resume().catch(() => {});
    const master = context.createGain();
    master.gain.value = 0.8;
    master.connect(context.destination);
    const start = context.currentTime + 0.03;
    const notes = [[880, 0], [659.25, 0.36]]; // A5 then E5
    for (const [frequency, offset] of notes) {
      // The fundamental and two soft overtones give a bell-like tone.
      for (const [multiple, level] of [[1, 0.32], [2, 0.07], [3, 0.025]]) {
        const oscillator = context.createOscillator();
        oscillator.type = 'sine';
        oscillator.frequency.value = frequency * multiple;
        const gain = context.createGain();
        const at = start + offset;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(level, at + 0.015);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.55);
        oscillator.connect(gain).connect(master);
        oscillator.start(at);
        oscillator.stop(at + 0.6);
      }
    }
  } catch {
    // No audio: keep the rhythm of the queue anyway.
  }
  return sleep(CHIME_MS);
}

function voices() {
  if (!('speechSynthesis' in window)) return [];
  try { return window.speechSynthesis.getVoices() || []; } catch { return []; }
}

function speechLanguage() {
  return currentLanguage() === 'pt-BR' ? 'pt-BR' : 'en-US';
}

function pickVoice(lang) {
  const all = voices();
  const normal = (code) => (code || '').replace('_', '-').toLowerCase();
  const wanted = lang.toLowerCase();
  const prefix = wanted.split('-')[0];
  const exact = all.filter((voice) => normal(voice.lang) === wanted);
  const close = all.filter((voice) => normal(voice.lang).split('-')[0] === prefix);
  const pool = exact.length ? exact : close;
  return pool.find((voice) => voice.localService) || pool[0] || null;
}

/**
 * Speaks `text` and resolves when done: on `end`, on `error`, or after a timeout, because some
 * browsers (headless ones) never fire `end`. A voice still speaking at the timeout gets more time,
 * up to a hard limit.
 */
function speak(text) {
  return new Promise((resolve) => {
    const synth = window.speechSynthesis;
    let finished = false;
    let started = false;
    let timer = null;
    const deadline = Date.now() + 15000;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (sound.utterance === utterance) sound.utterance = null;
      resolve();
    };
    const utterance = new SpeechSynthesisUtterance(text);
    const lang = speechLanguage();
    utterance.lang = lang;
    const voice = pickVoice(lang);
    if (voice) utterance.voice = voice;
    utterance.rate = 0.95;
    utterance.onstart = () => { started = true; };
    utterance.onend = finish;
    utterance.onerror = finish;
    sound.utterance = utterance; // keeps it referenced until it ends (Chrome may drop it otherwise)
    const check = () => {
      if (finished) return;
      if (started && synth.speaking && Date.now() < deadline) {
        timer = setTimeout(check, 500);
        return;
      }
      try { synth.cancel(); } catch { /* nothing to stop */ }
      finish();
    };
    timer = setTimeout(check, 1500 + 60 * text.length);
    try {
      synth.cancel(); // clears a synthesiser stuck by an earlier utterance
      synth.speak(utterance);
    } catch {
      finish();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Start

let opening = null;
let openingAsked = 0; // answers to an older check are dropped

/** Whether the tenant exists and is open now (GET …/services). */
async function checkOpening() {
  openingAsked += 1;
  const asked = openingAsked;
  let reply;
  try {
    reply = await api(`/tenants/${encodeURIComponent(slug)}/services`);
  } catch {
    return; // the live connection reports the state; the next check will tell
  }
  if (asked !== openingAsked) return;
  if (reply.status === 404) {
    state.errorKey = 'common.tenant_not_found';
    renderError();
    return;
  }
  if (reply.status !== 200 || !reply.body) return;
  state.open = reply.body.open !== false;
  state.opensAt = state.open ? null : reply.body.opens_at || null;
  state.timeZone = reply.body.timezone || undefined;
  opening.seen(state.opensAt);
  renderNotes();
}

function start() {
  translatePage();
  renderLanguageSwitcher(nodes.languages);
  render();
  startClock();

  nodes.enableSound.addEventListener('click', enableSound);
  if ('speechSynthesis' in window && typeof window.speechSynthesis.addEventListener === 'function') {
    // Voices load asynchronously; asking once makes the browser start loading them.
    voices();
    window.speechSynthesis.addEventListener('voiceschanged', () => voices());
  }
  // `?sound=on`: for a kiosk browser that allows autoplay, start with sound without a tap.
  if (params.get('sound') === 'on') {
    const context = audioContext();
    if (context && context.state === 'running') enableSound();
  }

  onLanguageChange(() => {
    renderLanguageSwitcher(nodes.languages);
    render();
  });

  if (!slug) {
    state.errorKey = 'common.tenant_not_found';
    renderError();
    return;
  }
  opening = watchOpening({ check: checkOpening, checkSecs: openCheckSecsFromQuery() });
  checkOpening();

  window.nextupLive = connectLive({
    slug,
    audience: 'totem',
    pollSecs: pollSecsFromQuery(),
    onState: (next) => {
      const was = state.connection;
      state.connection = next;
      renderConnection(nodes.connection, next);
      // Back after an outage: the site may have opened or closed meanwhile.
      if (next === 'live' && (was === 'reconnecting' || was === 'polling')) checkOpening();
    },
    onSnapshot,
    onTicketUpdate,
    onQueueUpdate,
  });
}

start();
