// The operator console (/t/{slug}/operator): sign in, choose a desk and the services to serve,
// call and handle tickets, and watch the waiting queue live.
//
// State kept by the browser:
// - sessionStorage `nextup.operator.token.<slug>`: the login token (a JWT), for this tab only;
// - localStorage `nextup.operator.setup.<slug>`: `{counterId, serviceIds}`, for the next visit.
//
// The queue is a map of the active tickets by id, filled from each snapshot and updated by each
// ticket_update (and by the answers to our own actions, so that the console reacts at once even
// while the live connection is down). The waiting list and the current ticket are derived from it;
// the waiting list is ordered by the key the server puts in each waiting ticket. Beside it, the
// day's missed and cancelled tickets (read with GET …/tickets?status= at each snapshot, then kept
// up to date the same way) can be reactivated; and the console asks the server which ticket
// call-next would take and why (GET …/counters/{id}/next) whenever the queue or the desk changes.

import { api, errorCode, newIdempotencyKey, slugFromPath } from './api.js';
import { t, translatePage, onLanguageChange, renderLanguageSwitcher, currentLanguage } from './i18n.js';
import { connectLive, pollSecsFromQuery } from './live.js';
import { renderConnection, formatWait, statusText, el, messageLine } from './ui.js';
import {
  changePassword, claimsOf, liveEndReason, logIn, loginForm, sessionEndReason, tokenStore,
} from './session.js';

const slug = slugFromPath();
const tokens = tokenStore('operator', slug);
const SETUP_KEY = `nextup.operator.setup.${slug}`;
const ACTIVE = new Set(['waiting', 'called', 'serving']);
const MISSED = ['no_show', 'cancelled']; // listed for the day, to be reactivated
const PREVIEW_DEBOUNCE_MS = 200;
const AT_DESK = new Set(['called', 'serving']);
const SHORTCUTS = { n: 'call-next', r: 'recall', s: 'start', f: 'finish', x: 'no-show' };
const MAX_TIMER_MS = 2 ** 31 - 1;

const $ = (id) => document.getElementById(id);
const dom = {
  tenantName: $('tenant-name'),
  connection: $('connection'),
  userInfo: $('user-info'),
  logout: $('logout'),
  langSwitcher: $('lang-switcher'),
  login: $('login'),
  loginForm: $('login-form'),
  loginUsername: $('login-username'),
  loginPassword: $('login-password'),
  loginError: $('login-error'),
  loginButton: $('login-button'),
  console: $('console'),
  counterSelect: $('counter-select'),
  serviceOptions: $('service-options'),
  setupError: $('setup-error'),
  setupErrorText: $('setup-error-text'),
  setupRetry: $('setup-retry'),
  current: $('current-ticket'),
  currentEmpty: $('current-empty'),
  currentBody: $('current-body'),
  currentCode: $('current-code'),
  currentStatus: $('current-status'),
  currentPriority: $('current-priority'),
  currentService: $('current-service'),
  currentCustomerRow: $('current-customer-row'),
  currentCustomer: $('current-customer'),
  currentMeta: $('current-meta'),
  nextPreview: $('next-preview'),
  recallLabel: $('recall-label'),
  transferService: $('transfer-service'),
  message: $('message'),
  waitingTotal: $('waiting-total'),
  serviceCounts: $('service-counts'),
  waitingList: $('waiting-list'),
  waitingEmpty: $('waiting-empty'),
  missedList: $('missed-list'),
  missedEmpty: $('missed-empty'),
  missedTotal: $('missed-total'),
  announce: $('announce'),
  changePassword: $('change-password'),
  passwordPanel: $('password-panel'),
  passwordForm: $('password-form'),
  passwordCurrent: $('password-current'),
  passwordNew: $('password-new'),
  passwordRepeat: $('password-repeat'),
  passwordSubmit: $('password-submit'),
  passwordCancel: $('password-cancel'),
  passwordError: $('password-error'),
};

// The message line of the console: what happened, or why an action was refused.
const messages = messageLine(dom.message, 'operator');
const buttons = {
  'call-next': $('call-next'),
  recall: $('recall'),
  start: $('start'),
  finish: $('finish'),
  'no-show': $('no-show'),
  cancel: $('cancel'),
  transfer: $('transfer'),
  'transfer-confirm': $('transfer-confirm'),
};

// ---------------------------------------------------------------------------------------------
// State

let token = null;
let user = null; // {username, role} from the token's claims
let live = null;
let expiryTimer = null;
let counters = []; // [{id, name}]
let services = []; // [{id, code, name}] (active services, for the checkboxes and transfer)
let summaries = []; // [{id, code, name, waiting, estimated_wait_secs}] from the live queue
let tickets = new Map(); // id → operator ticket (active ones only)
let missed = new Map(); // id → operator ticket: today's no_show and cancelled ones
let missedLoad = null; // while GET …/tickets?status= runs: {live: Map id → ticket changed meanwhile}
// What call-next would take (GET …/counters/{id}/next): {ticket, reason, priority_streak,
// priority_ratio, max_calls}; previewState is 'none' (no desk), 'shown' or 'unavailable'
// (a server without the endpoint, or any failure: the hint is simply hidden).
let preview = null;
let previewState = 'none';
let previewTimer = null;
let previewAsked = 0;
let maxCalls = null; // the site's recall limit, as the last preview told
let tenantName = '';
let setup = loadSetup(); // {counterId, serviceIds}
let pending = false; // an action is in flight: action buttons are disabled meanwhile
let connectionState = null;
let passwordChange = false; // a change of password is under way: refusals of the old token are expected
let loginUi = null;

window.nextupLive = null;

// ---------------------------------------------------------------------------------------------
// Storage

function loadSetup() {
  try {
    const stored = JSON.parse(localStorage.getItem(SETUP_KEY) || 'null');
    if (stored && typeof stored === 'object') {
      return {
        counterId: typeof stored.counterId === 'string' ? stored.counterId : '',
        serviceIds: Array.isArray(stored.serviceIds) ? stored.serviceIds.filter((id) => typeof id === 'string') : [],
      };
    }
  } catch { /* unreadable: start afresh */ }
  return { counterId: '', serviceIds: [] };
}

function saveSetup() {
  try { localStorage.setItem(SETUP_KEY, JSON.stringify(setup)); } catch { /* private mode */ }
}

// ---------------------------------------------------------------------------------------------
// Session

function startSession(jwt) {
  const claims = claimsOf(jwt);
  if (claims && typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()) {
    endSession('session_expired');
    return;
  }
  token = jwt;
  user = claims ? { username: claims.username || '', role: claims.role || '' } : { username: '', role: '' };
  loginUi.showError(null);
  messages.clear();
  tickets = new Map();
  summaries = [];

  clearTimeout(expiryTimer);
  if (live) live.close(); // a new token (after a change of password): a new session
  if (claims && typeof claims.exp === 'number') {
    const ms = claims.exp * 1000 - Date.now();
    if (ms < MAX_TIMER_MS) expiryTimer = setTimeout(() => endSession('session_expired'), ms + 500);
  }

  dom.login.hidden = true;
  dom.console.hidden = false;
  dom.logout.hidden = false;
  dom.changePassword.hidden = false;
  dom.userInfo.hidden = !user.username;
  dom.connection.hidden = false;
  renderHeader();
  renderAll();

  live = connectLive({
    slug,
    audience: 'operator',
    token,
    pollSecs: pollSecsFromQuery(),
    onState: (state) => {
      connectionState = state;
      renderConnection(dom.connection, state);
    },
    onSnapshot,
    onTicketUpdate,
    onQueueUpdate,
    onAuthError: (reason) => {
      if (!passwordChange) endSession(liveEndReason(reason));
    },
  });
  window.nextupLive = live;
  loadSetupData();
  focusPrimary();
}

/** Back to the login form; `reason` ('session_expired', 'token_revoked', …) is shown there. */
function endSession(reason) {
  if (live) live.close();
  live = null;
  window.nextupLive = null;
  clearTimeout(expiryTimer);
  token = null;
  user = null;
  tokens.write(null);
  tickets = new Map();
  missed = new Map();
  missedLoad = null;
  summaries = [];
  clearTimeout(previewTimer);
  preview = null;
  previewState = 'none';
  maxCalls = null;
  pending = false;
  messages.clear();
  connectionState = null;
  delete document.body.dataset.connection;

  dom.console.hidden = true;
  dom.login.hidden = false;
  dom.logout.hidden = true;
  dom.userInfo.hidden = true;
  dom.connection.hidden = true;
  closePasswordForm();
  passwordChange = false;
  dom.changePassword.hidden = true;
  loginUi.showError(reason);
  loginUi.reset();
}

/** Handles a refused token on any call; true when the session ended. */
function authFailed(reply) {
  const reason = sessionEndReason(reply);
  if (!reason) return false;
  // The old token is refused once the password changed: the console signs in again by itself.
  if (!passwordChange) endSession(reason);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Desks and services

async function loadSetupData() {
  dom.setupError.hidden = true;
  const sessionToken = token;
  let countersReply;
  let servicesReply;
  try {
    [countersReply, servicesReply] = await Promise.all([
      api(`/tenants/${encodeURIComponent(slug)}/counters`, { token }),
      api(`/tenants/${encodeURIComponent(slug)}/services`),
    ]);
  } catch {
    if (token === sessionToken) showSetupError('network_error');
    return;
  }
  if (token !== sessionToken || !token) return;
  if (authFailed(countersReply)) return;
  if (countersReply.status !== 200 || servicesReply.status !== 200) {
    const failed = countersReply.status !== 200 ? countersReply : servicesReply;
    showSetupError(errorCode(failed) || `http_${failed.status}`);
    return;
  }
  counters = countersReply.body.counters || [];
  services = servicesReply.body.services || [];
  if (setup.counterId && !counters.some((c) => c.id === setup.counterId)) setup.counterId = '';
  setup.serviceIds = setup.serviceIds.filter((id) => services.some((s) => s.id === id));
  saveSetup();
  renderCounters();
  renderServiceOptions();
  renderAll();
  schedulePreview(0);
}

function showSetupError(code) {
  dom.setupError.hidden = false;
  dom.setupErrorText.dataset.code = code;
  dom.setupErrorText.textContent = code === 'network_error'
    ? t('common.network_error')
    : t('operator.setup.load_failed', { code });
}

function renderCounters() {
  const select = dom.counterSelect;
  select.replaceChildren();
  const placeholder = el('option', '', t('operator.setup.choose_counter'));
  placeholder.value = '';
  select.append(placeholder);
  for (const counter of counters) {
    const option = el('option', '', counter.name);
    option.value = counter.id;
    select.append(option);
  }
  select.value = setup.counterId || '';
}

function renderServiceOptions() {
  dom.serviceOptions.replaceChildren();
  for (const service of services) {
    const label = el('label', 'service-option');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = service.id;
    box.dataset.testid = `service-${service.code}`;
    box.checked = setup.serviceIds.includes(service.id);
    box.addEventListener('change', onServicesChange);
    label.append(box, el('span', 'service-option-code', service.code), el('span', 'service-option-name', service.name));
    dom.serviceOptions.append(label);
  }
}

function onServicesChange() {
  setup.serviceIds = [...dom.serviceOptions.querySelectorAll('input[type=checkbox]:checked')].map((box) => box.value);
  saveSetup();
  renderWaiting();
  renderCounts();
  renderMissed();
  schedulePreview(0);
}

function onCounterChange() {
  setup.counterId = dom.counterSelect.value;
  saveSetup();
  if (messages.code() === 'choose_counter') messages.clear();
  renderAll();
  schedulePreview(0);
}

function counterName(id) {
  const counter = counters.find((c) => c.id === id);
  return counter ? counter.name : '';
}

// ---------------------------------------------------------------------------------------------
// Live queue

/** The seq of the last snapshot applied; older events must not overwrite it. */
let snapshotSeq = -1;

function onSnapshot(snapshot) {
  snapshotSeq = snapshot.seq;
  tickets = new Map();
  for (const ticket of [...(snapshot.waiting || []), ...(snapshot.called || [])]) tickets.set(ticket.id, ticket);
  summaries = snapshot.services || [];
  if (snapshot.tenant && snapshot.tenant.name) {
    tenantName = snapshot.tenant.name;
    renderHeader();
  }
  renderAll();
  // A snapshot follows every (re)connection and poll: what changed meanwhile is unknown.
  loadMissed();
  schedulePreview();
}

function onTicketUpdate(data, seq) {
  if (seq <= snapshotSeq) return;
  applyTicket(data.ticket);
  // The day was closed (contract §8): its waiting and called tickets are gone from the queue.
  if (data.action === 'expired' && messages.code() !== 'day_closed') messages.show('day_closed', 'info');
  renderAll();
  schedulePreview();
}

function onQueueUpdate(data) {
  summaries = data.services || [];
  renderCounts();
}

function applyTicket(ticket) {
  if (!ticket || !ticket.id) return;
  if (ACTIVE.has(ticket.status)) tickets.set(ticket.id, ticket);
  else tickets.delete(ticket.id); // done, no_show, cancelled, expired
  if (MISSED.includes(ticket.status) && issuedToday(ticket)) missed.set(ticket.id, ticket);
  else missed.delete(ticket.id);
  if (missedLoad) missedLoad.live.set(ticket.id, ticket);
}

/**
 * Whether a ticket belongs to today. The lists answer the most recent tickets of any day; the
 * browser's day stands for the site's (a console is used on site).
 */
function issuedToday(ticket) {
  const issued = new Date(ticket.created_at);
  return !Number.isNaN(issued.getTime()) && issued.toDateString() === new Date().toDateString();
}

/** Reads the day's missed and cancelled tickets; changes that arrive meanwhile win. */
async function loadMissed() {
  if (!token) return;
  const sessionToken = token;
  const load = { live: new Map() };
  missedLoad = load;
  let replies;
  try {
    replies = await Promise.all(MISSED.map((status) => api(`${base()}/tickets?status=${status}`, { token })));
  } catch {
    replies = null;
  }
  if (token !== sessionToken || missedLoad !== load) return;
  missedLoad = null;
  if (!replies) return; // offline: the next snapshot asks again
  for (const reply of replies) if (authFailed(reply)) return;
  if (replies.some((reply) => reply.status !== 200 || !reply.body)) return;
  missed = new Map();
  for (const reply of replies) {
    for (const ticket of reply.body.tickets || []) {
      if (MISSED.includes(ticket.status) && issuedToday(ticket)) missed.set(ticket.id, ticket);
    }
  }
  for (const ticket of load.live.values()) applyTicket(ticket);
  renderMissed();
}

/** Asks again which ticket call-next would take, once the changes of the moment have settled. */
function schedulePreview(delay = PREVIEW_DEBOUNCE_MS) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(loadPreview, delay);
}

async function loadPreview() {
  previewAsked += 1;
  const asked = previewAsked;
  const sessionToken = token;
  if (!token || !setup.counterId) {
    preview = null;
    previewState = 'none';
    renderPreview();
    return;
  }
  const query = setup.serviceIds.length ? `?service_ids=${setup.serviceIds.map(encodeURIComponent).join(',')}` : '';
  let reply = null;
  try {
    reply = await api(`${base()}/counters/${encodeURIComponent(setup.counterId)}/next${query}`, { token });
  } catch {
    reply = null;
  }
  if (asked !== previewAsked || token !== sessionToken) return;
  if (reply && authFailed(reply)) return;
  if (reply && reply.status === 200 && reply.body && typeof reply.body === 'object') {
    preview = reply.body;
    previewState = 'shown';
    maxCalls = typeof reply.body.max_calls === 'number' ? reply.body.max_calls : null;
  } else {
    // 404 from a server without the preview, or a failure: no hint rather than a wrong one.
    preview = null;
    previewState = 'unavailable';
  }
  renderPreview();
  renderActions();
}

/** The ticket called to (or being served at) my desk, if any. */
function currentTicket() {
  if (!setup.counterId) return null;
  let found = null;
  for (const ticket of tickets.values()) {
    if (!AT_DESK.has(ticket.status) || !ticket.counter || ticket.counter.id !== setup.counterId) continue;
    if (!found || (ticket.called_at || '') > (found.called_at || '')) found = ticket;
  }
  return found;
}

/**
 * Waiting tickets in call order. Only the server knows that order: every waiting operator
 * ticket carries `call_order_key`, a string whose plain order is the call order, so a ticket
 * that arrives live takes its place among those of the snapshot. A ticket without one (an
 * answer saved before keys existed, replayed for its Idempotency-Key) goes last.
 */
function waitingTickets() {
  const keyOf = (ticket) => ticket.call_order_key;
  return [...tickets.values()]
    .filter((ticket) => ticket.status === 'waiting')
    .sort((a, b) => {
      if (!keyOf(a) || !keyOf(b)) return Boolean(keyOf(b)) - Boolean(keyOf(a));
      return keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0;
    });
}

function isMine(serviceId) {
  return setup.serviceIds.length === 0 || setup.serviceIds.includes(serviceId);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderAll() {
  renderCurrent();
  renderPreview();
  renderActions();
  renderWaiting();
  renderCounts();
  renderMissed();
  messages.render();
}

function renderHeader() {
  dom.tenantName.textContent = tenantName ? `— ${tenantName}` : '';
  dom.userInfo.textContent = user && user.username ? t('operator.header.signed_in_as', { username: user.username }) : '';
  document.title = tenantName ? `${t('operator.page_title')} — ${tenantName}` : t('operator.page_title');
}

function formatTime(iso) {
  if (!iso) return '';
  try {
    return new Intl.DateTimeFormat(currentLanguage(), { hour: '2-digit', minute: '2-digit' }).format(new Date(iso));
  } catch {
    return '';
  }
}

function renderCurrent() {
  const ticket = currentTicket();
  dom.current.dataset.code = ticket ? ticket.code : '';
  dom.current.dataset.status = ticket ? ticket.status : '';
  dom.currentBody.hidden = !ticket;
  dom.currentEmpty.hidden = Boolean(ticket);
  if (!ticket) {
    dom.currentEmpty.textContent = setup.counterId ? t('operator.current.none') : t('operator.current.no_counter');
    return;
  }
  dom.currentCode.textContent = ticket.code;
  dom.currentStatus.textContent = statusText(ticket.status);
  dom.currentStatus.dataset.status = ticket.status;
  dom.currentPriority.hidden = ticket.priority !== 'priority';
  dom.currentService.textContent = ticket.service ? `${ticket.service.code} · ${ticket.service.name}` : '';
  dom.currentCustomerRow.hidden = !ticket.customer_name;
  dom.currentCustomer.textContent = ticket.customer_name || '';
  const parts = [];
  const count = ticket.call_count || 0;
  if (count > 0) parts.push(count === 1 ? t('operator.current.calls.one') : t('operator.current.calls.other', { count }));
  if (ticket.status === 'serving' && ticket.started_at) {
    parts.push(t('operator.current.started_at', { time: formatTime(ticket.started_at) }));
  } else if (ticket.called_at) {
    parts.push(t('operator.current.called_at', { time: formatTime(ticket.called_at) }));
  }
  dom.currentMeta.textContent = parts.join(' · ');
}

function previewReason(answer) {
  switch (answer.reason) {
    case 'priority':
      return t('operator.next.reason.priority');
    case 'waited_longest':
      return t('operator.next.reason.waited_longest');
    case 'fair_turn':
      return t('operator.next.reason.fair_turn', { count: answer.priority_streak || answer.priority_ratio || '' });
    default:
      return '';
  }
}

function renderPreview() {
  const node = dom.nextPreview;
  node.dataset.state = previewState;
  node.hidden = previewState !== 'shown';
  if (previewState !== 'shown') {
    node.replaceChildren();
    return;
  }
  const ticket = preview.ticket;
  node.dataset.code = ticket ? ticket.code : '';
  node.dataset.reason = ticket && preview.reason ? preview.reason : '';
  if (!ticket) {
    node.replaceChildren(el('span', 'next-nobody', t('operator.next.nobody')));
    return;
  }
  const parts = [el('span', 'next-label', t('operator.next.label')), el('span', 'next-code', ticket.code)];
  const reason = previewReason(preview);
  if (reason) parts.push(el('span', 'next-reason', `— ${reason}`));
  node.replaceChildren(...parts);
}

function renderMissed() {
  const list = dom.missedList;
  const when = (ticket) => ticket.finished_at || ticket.called_at || ticket.created_at || '';
  const shown = [...missed.values()].sort((a, b) => (when(a) < when(b) ? 1 : when(a) > when(b) ? -1 : 0));
  // Rows are kept and refreshed, like the waiting list's, so that a live change never pulls a
  // button from under a click (or the keyboard focus).
  const oldRows = new Map([...list.children].map((row) => [row.dataset.id, row]));
  const rows = shown.map((ticket) => {
    const row = oldRows.get(ticket.id) || el('li', 'missed-item');
    oldRows.delete(ticket.id);
    fillMissedRow(row, ticket);
    return row;
  });
  for (const row of oldRows.values()) row.remove();
  rows.forEach((row, index) => {
    if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null);
  });
  dom.missedEmpty.hidden = rows.length > 0;
  dom.missedTotal.textContent = rows.length ? t('operator.waiting.total', { count: rows.length }) : '';
}

function fillMissedRow(row, ticket) {
  row.dataset.id = ticket.id;
  row.dataset.code = ticket.code;
  row.dataset.status = ticket.status;
  row.classList.toggle('not-mine', !isMine(ticket.service && ticket.service.id));

  const info = el('div', 'waiting-info');
  const head = el('div', 'waiting-line');
  head.append(el('span', 'waiting-code', ticket.code));
  const pill = el('span', 'status-pill', statusText(ticket.status));
  pill.dataset.status = ticket.status;
  head.append(pill);
  if (ticket.priority === 'priority') head.append(el('span', 'badge priority', t('operator.waiting.priority')));
  info.append(head);
  const details = el('div', 'waiting-line small muted');
  details.append(el('span', 'waiting-service', ticket.service ? ticket.service.name : ''));
  if (ticket.customer_name) details.append(el('span', 'waiting-customer', ticket.customer_name));
  details.append(el('span', 'missed-issued', t('operator.missed.issued_at', { time: formatTime(ticket.created_at) })));
  info.append(details);

  let button = row.querySelector('button');
  if (button) {
    row.replaceChild(info, row.firstChild);
  } else {
    button = el('button', 'reactivate');
    button.type = 'button';
    button.addEventListener('click', () => reactivate(row.dataset.id, row.dataset.code, button));
    row.append(info, button);
  }
  button.dataset.testid = `reactivate-${ticket.code}`;
  button.textContent = t('operator.missed.reactivate');
  button.setAttribute('aria-label', t('operator.missed.reactivate_label', { code: ticket.code }));
  button.disabled = pending;
}

function renderTransferOptions(ticket) {
  const select = dom.transferService;
  const previous = select.value;
  const choices = services.filter((service) => !ticket || !ticket.service || service.id !== ticket.service.id);
  const key = JSON.stringify([currentLanguage(), choices.map((s) => s.id)]);
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    select.replaceChildren();
    const placeholder = el('option', '', t('operator.actions.transfer_choose'));
    placeholder.value = '';
    select.append(placeholder);
    for (const service of choices) {
      const option = el('option', '', `${service.code} · ${service.name}`);
      option.value = service.id;
      select.append(option);
    }
    select.value = choices.some((s) => s.id === previous) ? previous : '';
  }
}

function renderActions() {
  const ticket = currentTicket();
  const status = ticket ? ticket.status : null;
  const canTransfer = status === 'called' || status === 'serving';
  renderTransferOptions(ticket);
  const enabled = {
    'call-next': Boolean(setup.counterId),
    recall: status === 'called',
    start: status === 'called',
    finish: status === 'serving',
    'no-show': status === 'called',
    cancel: status === 'called',
    transfer: canTransfer,
    'transfer-confirm': canTransfer && Boolean(dom.transferService.value),
  };
  for (const [name, button] of Object.entries(buttons)) button.disabled = pending || !enabled[name];
  // At the recall limit (contract §8, max_calls) the next recall marks the ticket no-show.
  const lastCall = status === 'called' && maxCalls !== null && (ticket.call_count || 0) >= maxCalls;
  buttons.recall.dataset.lastCall = String(lastCall);
  dom.recallLabel.textContent = t(lastCall ? 'operator.actions.recall_last' : 'operator.actions.recall');
  buttons.recall.title = lastCall ? t('operator.actions.recall_last_hint') : '';
  dom.transferService.disabled = pending || !canTransfer;
  buttons['call-next'].classList.toggle('muted-primary', Boolean(ticket));
  dom.console.setAttribute('aria-busy', String(pending));
}

function renderWaiting() {
  const list = dom.waitingList;
  const waiting = waitingTickets();
  const focusedTestId = list.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
  const oldRows = new Map([...list.children].map((row) => [row.dataset.id, row]));
  const rows = waiting.map((ticket) => {
    const row = oldRows.get(ticket.id) || el('li', 'waiting-item');
    oldRows.delete(ticket.id);
    fillWaitingRow(row, ticket);
    return row;
  });
  for (const row of oldRows.values()) row.remove();
  rows.forEach((row, index) => {
    if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null);
  });
  dom.waitingEmpty.hidden = waiting.length > 0;
  dom.waitingTotal.textContent = t('operator.waiting.total', { count: waiting.length });
  if (focusedTestId && !list.contains(document.activeElement)) {
    const again = list.querySelector(`[data-testid="${CSS.escape(focusedTestId)}"]`);
    if (again) again.focus();
  }
}

function fillWaitingRow(row, ticket) {
  row.dataset.id = ticket.id;
  row.dataset.code = ticket.code;
  row.dataset.priority = ticket.priority;
  const mine = isMine(ticket.service && ticket.service.id);
  row.classList.toggle('not-mine', !mine);

  const info = el('div', 'waiting-info');
  const head = el('div', 'waiting-line');
  head.append(el('span', 'waiting-code', ticket.code));
  if (ticket.priority === 'priority') head.append(el('span', 'badge priority', t('operator.waiting.priority')));
  head.append(el('span', 'waiting-service', ticket.service ? ticket.service.name : ''));
  info.append(head);
  const details = el('div', 'waiting-line small muted');
  if (ticket.customer_name) details.append(el('span', 'waiting-customer', ticket.customer_name));
  const minutes = Math.floor((Date.now() - Date.parse(ticket.created_at)) / 60000);
  details.append(el('span', 'waiting-age', minutes >= 1 ? t('operator.waiting.waited', { minutes }) : t('operator.waiting.waited_short')));
  if (!mine) details.append(el('span', 'waiting-not-mine', t('operator.waiting.not_mine')));
  info.append(details);

  let button = row.querySelector('button');
  if (button) {
    // Replace the text only: the button keeps its place (and the keyboard focus).
    row.replaceChild(info, row.firstChild);
  } else {
    button = el('button', 'call-one');
    button.type = 'button';
    button.addEventListener('click', () => callTicket(row.dataset.id, row.dataset.code, button));
    row.append(info, button);
  }
  button.dataset.testid = `call-${ticket.code}`;
  button.textContent = t('operator.waiting.call');
  button.setAttribute('aria-label', t('operator.waiting.call_label', { code: ticket.code }));
  button.disabled = pending || !setup.counterId;
}

function renderCounts() {
  dom.serviceCounts.replaceChildren();
  for (const summary of summaries) {
    const item = el('li', 'service-count');
    item.dataset.testid = `waiting-count-${summary.code}`;
    item.dataset.waiting = String(summary.waiting);
    item.classList.toggle('not-mine', !isMine(summary.id));
    item.append(
      el('span', 'service-count-code', summary.code),
      el('span', 'service-count-name', summary.name),
      el('strong', 'service-count-number', t('operator.waiting.count', { count: summary.waiting })),
    );
    if (summary.waiting > 0) item.append(el('span', 'service-count-wait muted', formatWait(summary.estimated_wait_secs)));
    dom.serviceCounts.append(item);
  }
}


function announce(text) {
  dom.announce.textContent = '';
  // A fresh text node, so that a repeated announcement is read again.
  setTimeout(() => { dom.announce.textContent = text; }, 50);
}

/** Focuses the button a person most likely wants next. */
function focusPrimary() {
  const status = currentTicket() ? currentTicket().status : null;
  const order = status === 'called' ? ['start', 'recall'] : status === 'serving' ? ['finish'] : ['call-next'];
  for (const name of order) {
    if (!buttons[name].disabled) {
      buttons[name].focus();
      return;
    }
  }
  if (!setup.counterId) dom.counterSelect.focus();
}

// ---------------------------------------------------------------------------------------------
// Actions

const base = () => `/tenants/${encodeURIComponent(slug)}`;

/**
 * Sends one POST with a fresh Idempotency-Key, then shows its outcome.
 * `done(ticket)` returns the announcement for a success.
 */
async function perform(path, body, trigger, done) {
  if (pending || !token) return;
  const hadFocus = trigger && document.activeElement === trigger;
  const sessionToken = token;
  pending = true;
  renderActions();
  renderWaiting();
  renderMissed();
  let reply = null;
  try {
    reply = await api(path, { method: 'POST', body, token, idempotencyKey: newIdempotencyKey() });
  } catch {
    reply = null;
  }
  if (token !== sessionToken) return; // signed out meanwhile
  pending = false;
  if (!reply) {
    messages.show('network_error');
  } else if (authFailed(reply)) {
    return;
  } else if (reply.status === 204) {
    messages.show('nobody_waiting', 'info');
  } else if (reply.status >= 200 && reply.status < 300) {
    messages.clear();
    applyTicket(reply.body);
    if (reply.body) announce(done(reply.body));
  } else {
    messages.show(errorCode(reply) || `http_${reply.status}`);
    // A conflict means this console's view is stale (another tab or device acted first):
    // reload the queue so that the desk's actual ticket shows.
    if (reply.status === 409) refreshQueue();
  }
  renderAll();
  schedulePreview();
  if (hadFocus && (trigger.disabled || !document.contains(trigger))) focusPrimary();
}

async function refreshQueue() {
  let reply = null;
  try {
    reply = await api(`${base()}/queue`, { token });
  } catch {
    return;
  }
  if (reply.status === 200) onSnapshot(reply.body);
  else authFailed(reply);
}

function callNext() {
  if (!setup.counterId) {
    messages.show('choose_counter');
    dom.counterSelect.focus();
    return;
  }
  const body = setup.serviceIds.length ? { service_ids: [...setup.serviceIds] } : {};
  perform(`${base()}/counters/${encodeURIComponent(setup.counterId)}/call`, body, buttons['call-next'],
    (ticket) => t('operator.announce.called', { code: ticket.code, counter: counterName(setup.counterId) }));
}

function callTicket(id, code, trigger) {
  if (!setup.counterId) {
    messages.show('choose_counter');
    dom.counterSelect.focus();
    return;
  }
  perform(`${base()}/tickets/${encodeURIComponent(id)}/call`, { counter_id: setup.counterId }, trigger,
    (ticket) => t('operator.announce.called', { code: ticket.code || code, counter: counterName(setup.counterId) }));
}

function ticketAction(action, announceKey) {
  const ticket = currentTicket();
  if (!ticket) return;
  perform(`${base()}/tickets/${encodeURIComponent(ticket.id)}/${action}`, undefined, buttons[action],
    (result) => {
      if (action === 'recall' && result.status === 'no_show') {
        // The recall limit was reached: the server marked the ticket no-show instead.
        messages.show('recall_limit', 'info', { code: result.code });
        return t('operator.announce.no_show', { code: result.code });
      }
      return t(`operator.announce.${announceKey}`, { code: result.code });
    });
}

function reactivate(id, code, trigger) {
  perform(`${base()}/tickets/${encodeURIComponent(id)}/reactivate`, undefined, trigger,
    (result) => t('operator.announce.reactivated', { code: result.code || code }));
}

function transfer() {
  const ticket = currentTicket();
  const serviceId = dom.transferService.value;
  if (!ticket || !serviceId) return;
  const service = services.find((s) => s.id === serviceId);
  perform(`${base()}/tickets/${encodeURIComponent(ticket.id)}/transfer`, { service_id: serviceId }, buttons['transfer-confirm'],
    (result) => {
      dom.transferService.value = '';
      return t('operator.announce.transferred', { code: result.code, service: service ? service.name : '' });
    });
}

function onKeyDown(event) {
  if (dom.console.hidden) return;
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const name = SHORTCUTS[(event.key || '').toLowerCase()];
  if (!name || isTyping(event.target)) return;
  event.preventDefault();
  if (event.repeat) return;
  const button = buttons[name];
  if (!button.disabled) button.click();
}

/** True when keys typed at `target` are text (so they are not shortcuts). */
function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable || target.tagName === 'TEXTAREA') return true;
  if (target.tagName === 'INPUT') {
    return !['checkbox', 'radio', 'button', 'submit', 'reset', 'range', 'color', 'file', 'image'].includes(target.type);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Change of password

let passwordError = null; // {code, vars}

function togglePasswordForm() {
  if (dom.passwordPanel.hidden) openPasswordForm();
  else closePasswordForm();
}

function openPasswordForm() {
  dom.passwordPanel.hidden = false;
  dom.changePassword.setAttribute('aria-expanded', 'true');
  showPasswordError(null);
  dom.passwordCurrent.focus();
}

function closePasswordForm() {
  dom.passwordPanel.hidden = true;
  dom.changePassword.setAttribute('aria-expanded', 'false');
  dom.passwordForm.reset();
  showPasswordError(null);
}

function showPasswordError(code, vars = {}) {
  passwordError = code ? { code, vars } : null;
  renderPasswordError();
}

function renderPasswordError() {
  const error = passwordError;
  dom.passwordError.hidden = !error;
  dom.passwordError.dataset.code = error ? error.code : '';
  if (!error) {
    dom.passwordError.textContent = '';
  } else if (error.code === 'network_error') {
    dom.passwordError.textContent = t('common.network_error');
  } else {
    const key = `operator.password.errors.${error.code}`;
    const text = t(key, error.vars);
    dom.passwordError.textContent = text === key ? t('operator.password.errors.generic', { code: error.code, ...error.vars }) : text;
  }
}

/**
 * Changes the password, then signs in again with it: the server refuses the old token (and
 * closes its WebSocket with 4001) as soon as the change is made, so those refusals are not
 * "signed out" while this runs.
 */
async function submitPassword(event) {
  event.preventDefault();
  if (!token || passwordChange) return;
  const current = dom.passwordCurrent.value;
  const next = dom.passwordNew.value;
  if (!current || !next) {
    (current ? dom.passwordNew : dom.passwordCurrent).focus();
    return;
  }
  if (next !== dom.passwordRepeat.value) {
    showPasswordError('mismatch');
    dom.passwordRepeat.select();
    return;
  }
  const username = user ? user.username : '';
  passwordChange = true;
  dom.passwordSubmit.disabled = true;
  const reply = await changePassword(token, current, next);
  dom.passwordSubmit.disabled = false;
  if (!reply) {
    passwordChange = false;
    showPasswordError('network_error');
    return;
  }
  if (reply.status !== 204) {
    passwordChange = false;
    const code = errorCode(reply) || `http_${reply.status}`;
    if (code === 'invalid_credentials') {
      showPasswordError('invalid_credentials');
      dom.passwordCurrent.select();
      return;
    }
    if (authFailed(reply)) return;
    const message = reply.body && reply.body.error ? reply.body.error.message : '';
    showPasswordError(code, { message });
    return;
  }
  const login = await logIn(slug, username, next);
  passwordChange = false;
  if (!login || login.status !== 200 || !login.body || !login.body.token) {
    endSession('password_changed');
    return;
  }
  closePasswordForm();
  tokens.write(login.body.token);
  startSession(login.body.token);
  messages.show('password_changed', 'info');
  announce(t('operator.messages.password_changed'));
}

// ---------------------------------------------------------------------------------------------
// Wiring

function onLanguage() {
  renderLanguageSwitcher(dom.langSwitcher);
  renderHeader();
  loginUi.render();
  renderPasswordError();
  if (connectionState) renderConnection(dom.connection, connectionState);
  if (counters.length) renderCounters();
  if (!dom.setupError.hidden && dom.setupErrorText.dataset.code) showSetupError(dom.setupErrorText.dataset.code);
  renderAll();
}

function init() {
  translatePage();
  renderLanguageSwitcher(dom.langSwitcher);
  onLanguageChange(onLanguage);
  renderHeader();

  loginUi = loginForm(slug, {
    form: dom.loginForm,
    username: dom.loginUsername,
    password: dom.loginPassword,
    button: dom.loginButton,
    error: dom.loginError,
  }, (jwt) => {
    tokens.write(jwt);
    startSession(jwt);
    return null;
  });
  dom.changePassword.addEventListener('click', togglePasswordForm);
  dom.passwordForm.addEventListener('submit', submitPassword);
  dom.passwordCancel.addEventListener('click', () => { closePasswordForm(); dom.changePassword.focus(); });
  dom.logout.addEventListener('click', () => endSession(null));
  dom.counterSelect.addEventListener('change', onCounterChange);
  dom.setupRetry.addEventListener('click', loadSetupData);
  buttons['call-next'].addEventListener('click', callNext);
  buttons.recall.addEventListener('click', () => ticketAction('recall', 'recalled'));
  buttons.start.addEventListener('click', () => ticketAction('start', 'started'));
  buttons.finish.addEventListener('click', () => ticketAction('finish', 'finished'));
  buttons['no-show'].addEventListener('click', () => ticketAction('no-show', 'no_show'));
  buttons.cancel.addEventListener('click', () => ticketAction('cancel', 'cancelled'));
  buttons.transfer.addEventListener('click', () => dom.transferService.focus());
  buttons['transfer-confirm'].addEventListener('click', transfer);
  dom.transferService.addEventListener('change', renderActions);
  document.addEventListener('keydown', onKeyDown);
  window.addEventListener('online', () => { if (live) live.reconnectNow(); });
  // Keep "waiting N min" fresh.
  setInterval(() => { if (!dom.console.hidden) renderWaiting(); }, 30000);

  // The tenant's name for the header (public list; the live snapshot refreshes it later).
  api('/tenants').then((reply) => {
    const tenant = reply.status === 200 && reply.body && (reply.body.tenants || []).find((x) => x.slug === slug);
    if (tenant && !tenantName) {
      tenantName = tenant.name;
      renderHeader();
    }
  }).catch(() => {});

  renderAll();
  const stored = tokens.read();
  if (stored) {
    startSession(stored);
  } else {
    dom.loginUsername.focus();
  }
}

init();
