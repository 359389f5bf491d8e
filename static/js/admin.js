// The admin page (/t/{slug}/admin): sign in as an admin, then one tab per part of the site:
// services, desks, users, settings and opening hours with closing the day, the audit log, and
// reports (GET …/stats) drawn as SVG charts by charts.js.
//
// Nothing here is live: each tab reads the API when it is shown and after each change made
// from it. The token is kept for this tab only (sessionStorage `nextup.admin.token.<slug>`);
// a refused token (expired, or revoked because an admin changed this account) brings back the
// login form, as on the console.

import { api, errorCode, newIdempotencyKey, slugFromPath } from './api.js';
import { barChart, durationStep, lineChart } from './charts.js';
import { currentLanguage, onLanguageChange, renderLanguageSwitcher, t, translatePage } from './i18n.js';
import { claimsOf, loginForm, sessionEndReason, tokenStore } from './session.js';
import { el, messageLine } from './ui.js';

const slug = slugFromPath();
const tokens = tokenStore('admin', slug);
const TABS = ['services', 'counters', 'users', 'settings', 'audit', 'reports'];
const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const DAY_MS = 86400000;
const MAX_TIMER_MS = 2 ** 31 - 1;

const $ = (id) => document.getElementById(id);
const dom = {
  tenantName: $('tenant-name'),
  userInfo: $('user-info'),
  logout: $('logout'),
  langSwitcher: $('lang-switcher'),
  login: $('login'),
  admin: $('admin'),
  tabs: $('tabs'),
  message: $('message'),
  servicesBody: $('services-body'),
  serviceForm: $('service-form'),
  newServiceCode: $('new-service-code'),
  newServiceName: $('new-service-name'),
  countersBody: $('counters-body'),
  counterForm: $('counter-form'),
  newCounterName: $('new-counter-name'),
  usersBody: $('users-body'),
  userForm: $('user-form'),
  newUserUsername: $('new-user-username'),
  newUserPassword: $('new-user-password'),
  newUserRole: $('new-user-role'),
  settingsForm: $('settings-form'),
  timezone: $('setting-timezone'),
  timezones: $('timezones'),
  maxCalls: $('setting-max-calls'),
  priorityRatio: $('setting-priority-ratio'),
  alwaysOpen: $('setting-always-open'),
  hoursGrid: $('hours-grid'),
  closeDay: $('close-day'),
  closeDayConfirm: $('close-day-confirm'),
  closeDayYes: $('close-day-yes'),
  closeDayNo: $('close-day-no'),
  closeDayResult: $('close-day-result'),
  auditLimit: $('audit-limit'),
  auditRefresh: $('audit-refresh'),
  auditBody: $('audit-body'),
  reportForm: $('report-form'),
  reportFrom: $('report-from'),
  reportTo: $('report-to'),
  reportPrint: $('report-print'),
  reportCsv: $('report-csv'),
  reportBody: $('report-body'),
  reportRange: $('report-range'),
  reportTotals: $('report-totals'),
  chartServices: $('chart-services'),
  chartArrivals: $('chart-arrivals'),
  chartHourWait: $('chart-hour-wait'),
  reportServicesHead: $('report-services-head'),
  reportServicesBody: $('report-services-body'),
  reportOperatorsHead: $('report-operators-head'),
  reportOperatorsBody: $('report-operators-body'),
};

// The message line under the tabs: what was done, or why not.
const messages = messageLine(dom.message, 'admin');
const tabButton = (name) => $(`tab-${name}`);
const tabPanel = (name) => $(`panel-${name}`);

// ---------------------------------------------------------------------------------------------
// State

let token = null;
let user = null; // {id, username} from the token's claims
let expiryTimer = null;
let tenantName = '';
let activeTab = 'services';
let services = null; // [{id, code, name, active}]
let counters = null; // [{id, name, active}]
let users = null; // [{id, username, role, active, last_login_at}], or 'unavailable'
let settings = null; // {timezone, opening_hours, max_calls, priority_ratio}
let audit = null; // [entry]
let report = null; // the stats answer
let closeResult = null; // the last close of the day: {expired, finished}
let loginUi = null;

const base = () => `/tenants/${encodeURIComponent(slug)}`;

// ---------------------------------------------------------------------------------------------
// Session

function startSession(jwt) {
  const claims = claimsOf(jwt);
  if (claims && typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()) {
    endSession('session_expired');
    return;
  }
  token = jwt;
  user = { id: claims ? claims.sub : '', username: claims ? claims.username || '' : '' };
  clearTimeout(expiryTimer);
  if (claims && typeof claims.exp === 'number') {
    const ms = claims.exp * 1000 - Date.now();
    if (ms < MAX_TIMER_MS) expiryTimer = setTimeout(() => endSession('session_expired'), ms + 500);
  }
  services = counters = users = settings = audit = report = closeResult = null;
  messages.clear();
  dom.login.hidden = true;
  dom.admin.hidden = false;
  dom.logout.hidden = false;
  dom.userInfo.hidden = !user.username;
  renderHeader();
  const fromHash = location.hash.replace('#', '');
  selectTab(TABS.includes(fromHash) ? fromHash : activeTab, false);
}

/** Back to the login form; `reason` ('session_expired', 'token_revoked', …) is shown there. */
function endSession(reason) {
  token = null;
  user = null;
  tokens.write(null);
  clearTimeout(expiryTimer);
  services = counters = users = settings = audit = report = closeResult = null;
  dom.admin.hidden = true;
  dom.login.hidden = false;
  dom.logout.hidden = true;
  dom.userInfo.hidden = true;
  renderHeader();
  loginUi.showError(reason);
  loginUi.reset();
}

/**
 * One API call with the admin's token. Resolves to the reply, or null when the network failed
 * (the message says so) or the token was refused (the login form is back).
 */
async function call(path, options = {}) {
  const sessionToken = token;
  if (!sessionToken) return null;
  let reply = null;
  try {
    reply = await api(path, { ...options, token: sessionToken });
  } catch {
    reply = null;
  }
  if (token !== sessionToken) return null; // signed out meanwhile
  if (!reply) {
    messages.show('network_error');
    return null;
  }
  const ended = sessionEndReason(reply);
  if (ended) {
    endSession(ended);
    return null;
  }
  if (reply.status === 403 && errorCode(reply) === 'admin_required') {
    endSession('admin_required');
    return null;
  }
  return reply;
}

/** Shows a failed reply's error; true when `reply` succeeded. */
function succeeded(reply) {
  if (!reply) return false;
  if (reply.status >= 200 && reply.status < 300) return true;
  const code = errorCode(reply) || `http_${reply.status}`;
  const detail = reply.body && reply.body.error ? reply.body.error.message : '';
  messages.show(code, 'error', { message: detail });
  return false;
}

// ---------------------------------------------------------------------------------------------
// Tabs (WAI-ARIA tabs: arrows, Home and End move between them; the panel follows)

function selectTab(name, focus) {
  activeTab = name;
  for (const tab of TABS) {
    const selected = tab === name;
    tabButton(tab).setAttribute('aria-selected', String(selected));
    tabButton(tab).tabIndex = selected ? 0 : -1;
    tabPanel(tab).hidden = !selected;
  }
  if (focus) tabButton(name).focus();
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  loadTab(name);
}

function onTabKey(event) {
  const index = TABS.indexOf(activeTab);
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length], true);
}

function loadTab(name) {
  if (!token) return;
  switch (name) {
    case 'services': loadServices(); break;
    case 'counters': loadCounters(); break;
    case 'users': loadUsers(); break;
    case 'settings': loadSettings(); break;
    case 'audit': loadAudit(); break;
    case 'reports': if (report) renderReport(); else loadReport(); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------------------
// Messages


/** Re-renders `container` without losing the keyboard focus held by one of its elements. */
function keepingFocus(container, render) {
  const active = document.activeElement;
  const testid = container.contains(active) ? active.dataset.testid : null;
  render();
  if (testid && !container.contains(document.activeElement)) {
    const again = container.querySelector(`[data-testid="${CSS.escape(testid)}"]`);
    if (again) again.focus();
  }
}

function button(text, testid, onClick, className = 'secondary small') {
  const node = el('button', className, text);
  node.type = 'button';
  if (testid) node.dataset.testid = testid;
  node.addEventListener('click', onClick);
  return node;
}

function labelledInput(labelText, id, testid, value) {
  const label = el('label', 'visually-hidden', labelText);
  label.htmlFor = id;
  const input = document.createElement('input');
  input.id = id;
  input.dataset.testid = testid;
  input.value = value;
  return [label, input];
}

function stateCell(active) {
  const cell = el('td');
  const pill = el('span', 'state-pill', t(active ? 'admin.common.active' : 'admin.common.inactive'));
  pill.dataset.active = String(active);
  cell.append(pill);
  return cell;
}

function formatDateTime(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '—';
  return new Intl.DateTimeFormat(currentLanguage(), { dateStyle: 'short', timeStyle: 'medium' }).format(date);
}

// ---------------------------------------------------------------------------------------------
// Services

async function loadServices() {
  const reply = await call(`${base()}/services?all=true`);
  if (!succeeded(reply)) return;
  services = reply.body.services || [];
  renderServices();
}

function renderServices() {
  if (!services) return;
  keepingFocus(dom.servicesBody, () => {
    dom.servicesBody.replaceChildren(...services.map((service) => {
      const row = el('tr');
      row.dataset.testid = `service-row-${service.code}`;
      row.dataset.id = service.id;
      row.dataset.active = String(service.active !== false);
      const code = el('th', 'code', service.code);
      code.scope = 'row';
      const nameCell = el('td');
      const [label, input] = labelledInput(t('admin.services.name_of', { code: service.code }),
        `service-name-${service.id}`, `service-name-${service.code}`, service.name);
      input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') updateService(service, { name: input.value.trim() });
      });
      nameCell.append(label, input);
      const actions = el('td', 'row-actions');
      const active = service.active !== false;
      actions.append(
        button(t('admin.common.rename'), `service-save-${service.code}`, () => updateService(service, { name: input.value.trim() })),
        button(t(active ? 'admin.common.deactivate' : 'admin.common.activate'), `service-toggle-${service.code}`,
          () => updateService(service, { active: !active })),
      );
      row.append(code, nameCell, stateCell(active), actions);
      return row;
    }));
  });
}

async function updateService(service, body) {
  const reply = await call(`${base()}/services/${encodeURIComponent(service.id)}`, { method: 'PATCH', body });
  if (!succeeded(reply)) return;
  messages.show('saved', 'info', { name: reply.body.name || service.name });
  await loadServices();
}

async function createService(event) {
  event.preventDefault();
  const code = dom.newServiceCode.value.trim();
  const name = dom.newServiceName.value.trim();
  const reply = await call(`${base()}/services`, { method: 'POST', body: { code, name } });
  if (!succeeded(reply)) return;
  dom.serviceForm.reset();
  messages.show('created', 'info', { name: `${code} · ${name}` });
  dom.newServiceCode.focus();
  await loadServices();
}

// ---------------------------------------------------------------------------------------------
// Counters (desks)

async function loadCounters() {
  const reply = await call(`${base()}/counters?all=true`);
  if (!succeeded(reply)) return;
  counters = reply.body.counters || [];
  renderCounters();
}

function renderCounters() {
  if (!counters) return;
  keepingFocus(dom.countersBody, () => {
    dom.countersBody.replaceChildren(...counters.map((counter) => {
      const row = el('tr');
      row.dataset.testid = `counter-row-${counter.name}`;
      row.dataset.id = counter.id;
      row.dataset.active = String(counter.active !== false);
      const nameCell = el('td');
      const [label, input] = labelledInput(t('admin.counters.name_of', { name: counter.name }),
        `counter-name-${counter.id}`, `counter-name-${counter.name}`, counter.name);
      input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') updateCounter(counter, { name: input.value.trim() });
      });
      nameCell.append(label, input);
      const active = counter.active !== false;
      const actions = el('td', 'row-actions');
      actions.append(
        button(t('admin.common.rename'), `counter-save-${counter.name}`, () => updateCounter(counter, { name: input.value.trim() })),
        button(t(active ? 'admin.common.deactivate' : 'admin.common.activate'), `counter-toggle-${counter.name}`,
          () => updateCounter(counter, { active: !active })),
      );
      row.append(nameCell, stateCell(active), actions);
      return row;
    }));
  });
}

async function updateCounter(counter, body) {
  const reply = await call(`${base()}/counters/${encodeURIComponent(counter.id)}`, { method: 'PATCH', body });
  if (!succeeded(reply)) return;
  messages.show('saved', 'info', { name: reply.body.name || counter.name });
  await loadCounters();
}

async function createCounter(event) {
  event.preventDefault();
  const name = dom.newCounterName.value.trim();
  const reply = await call(`${base()}/counters`, { method: 'POST', body: { name } });
  if (!succeeded(reply)) return;
  dom.counterForm.reset();
  messages.show('created', 'info', { name });
  dom.newCounterName.focus();
  await loadCounters();
}

// ---------------------------------------------------------------------------------------------
// Users

async function loadUsers() {
  const reply = await call(`${base()}/users`);
  if (!reply) return;
  if (reply.status === 404 || reply.status === 405) {
    users = 'unavailable'; // a server without the listing: creating users still works
  } else if (!succeeded(reply)) {
    return;
  } else {
    users = reply.body.users || [];
  }
  renderUsers();
}

function renderUsers() {
  if (!users) return;
  if (users === 'unavailable') {
    const row = el('tr');
    const cell = el('td', 'muted', t('admin.users.unavailable'));
    cell.colSpan = 6;
    row.append(cell);
    dom.usersBody.replaceChildren(row);
    return;
  }
  keepingFocus(dom.usersBody, () => {
    dom.usersBody.replaceChildren(...users.map((account) => {
      const row = el('tr');
      const name = account.username;
      row.dataset.testid = `user-row-${name}`;
      row.dataset.id = account.id;
      row.dataset.role = account.role;
      row.dataset.active = String(account.active !== false);
      const nameCell = el('th', '', name);
      nameCell.scope = 'row';
      if (user && account.id === user.id) nameCell.append(el('span', 'muted small', ` (${t('admin.users.you')})`));
      const roleCell = el('td', '', t(`admin.users.roles.${account.role}`));
      const active = account.active !== false;
      const lastLogin = el('td', 'small', formatDateTime(account.last_login_at));

      const passwordCell = el('td', 'password-cell');
      const [label, input] = labelledInput(t('admin.users.new_password_of', { username: name }),
        `user-password-${account.id}`, `user-password-${name}`, '');
      input.type = 'password';
      input.autocomplete = 'new-password';
      input.minLength = 8;
      const reset = () => {
        if (!input.value) {
          input.focus();
          return;
        }
        updateUser(account, { password: input.value }, 'password_reset');
      };
      input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') reset();
      });
      passwordCell.append(label, input, button(t('admin.users.set_password'), `user-password-save-${name}`, reset));

      const otherRole = account.role === 'admin' ? 'operator' : 'admin';
      const actions = el('td', 'row-actions');
      actions.append(
        button(t(`admin.users.make.${otherRole}`), `user-role-${name}`, () => updateUser(account, { role: otherRole }, 'saved')),
        button(t(active ? 'admin.common.deactivate' : 'admin.common.activate'), `user-toggle-${name}`,
          () => updateUser(account, { active: !active }, 'saved')),
      );
      row.append(nameCell, roleCell, stateCell(active), lastLogin, passwordCell, actions);
      return row;
    }));
  });
}

async function updateUser(account, body, done) {
  const reply = await call(`${base()}/users/${encodeURIComponent(account.id)}`, { method: 'PATCH', body });
  if (!succeeded(reply)) return;
  messages.show(done, 'info', { name: account.username });
  // Changing my own role, or my own password, revokes this very token: the next call says so.
  await loadUsers();
}

async function createUser(event) {
  event.preventDefault();
  const username = dom.newUserUsername.value.trim();
  const body = { username, password: dom.newUserPassword.value, role: dom.newUserRole.value };
  const reply = await call(`${base()}/users`, { method: 'POST', body });
  if (!succeeded(reply)) return;
  dom.userForm.reset();
  messages.show('created', 'info', { name: username });
  dom.newUserUsername.focus();
  await loadUsers();
}

// ---------------------------------------------------------------------------------------------
// Settings, opening hours and closing the day

async function loadSettings() {
  const reply = await call(`${base()}/settings`);
  if (!succeeded(reply)) return;
  settings = reply.body;
  renderSettings();
}

function renderHoursGrid() {
  if (dom.hoursGrid.children.length) {
    for (const day of WEEKDAYS) $(`hours-${day}-label`).textContent = t(`admin.settings.days.${day}`);
    return;
  }
  for (const day of WEEKDAYS) {
    const label = el('label', '', t(`admin.settings.days.${day}`));
    label.id = `hours-${day}-label`;
    label.htmlFor = `hours-${day}`;
    const input = document.createElement('input');
    input.id = `hours-${day}`;
    input.dataset.testid = `hours-${day}`;
    input.placeholder = '08:00-12:00, 13:00-18:00';
    input.spellcheck = false;
    input.setAttribute('aria-describedby', 'hours-hint');
    dom.hoursGrid.append(label, input);
  }
}

function renderSettings() {
  renderHoursGrid();
  if (!settings) return;
  dom.timezone.value = settings.timezone || '';
  dom.maxCalls.value = settings.max_calls ?? '';
  dom.priorityRatio.value = settings.priority_ratio ?? '';
  const hours = settings.opening_hours;
  dom.alwaysOpen.checked = hours === null || hours === undefined;
  for (const day of WEEKDAYS) {
    const ranges = hours && Array.isArray(hours[day]) ? hours[day] : [];
    $(`hours-${day}`).value = ranges.map(([from, to]) => `${from}-${to}`).join(', ');
  }
  renderHoursEnabled();
}

function renderHoursEnabled() {
  for (const day of WEEKDAYS) $(`hours-${day}`).disabled = dom.alwaysOpen.checked;
}

/** "08:00-12:00, 13:00-18:00" → [["08:00","12:00"],["13:00","18:00"]]; the server checks them. */
function parseRanges(text) {
  return text.split(/[,;]/).map((part) => part.trim()).filter(Boolean)
    .map((part) => part.split(/\s*[-–]\s*/));
}

function numberOrNull(input) {
  const text = input.value.trim();
  return text === '' ? null : Number(text);
}

async function saveSettings(event) {
  event.preventDefault();
  const body = {
    timezone: dom.timezone.value.trim(),
    max_calls: numberOrNull(dom.maxCalls),
    priority_ratio: numberOrNull(dom.priorityRatio),
    opening_hours: dom.alwaysOpen.checked
      ? null
      : Object.fromEntries(WEEKDAYS.map((day) => [day, parseRanges($(`hours-${day}`).value)])),
  };
  const reply = await call(`${base()}/settings`, { method: 'PATCH', body });
  if (!succeeded(reply)) return;
  settings = reply.body;
  renderSettings();
  messages.show('settings_saved', 'info');
}

function askCloseDay() {
  const open = dom.closeDayConfirm.hidden;
  dom.closeDayConfirm.hidden = !open;
  dom.closeDay.setAttribute('aria-expanded', String(open));
  if (open) dom.closeDayNo.focus();
}

async function closeDay() {
  dom.closeDayConfirm.hidden = true;
  dom.closeDay.setAttribute('aria-expanded', 'false');
  dom.closeDay.focus();
  const reply = await call(`${base()}/day/close`, { method: 'POST', idempotencyKey: newIdempotencyKey() });
  if (!succeeded(reply)) return;
  closeResult = reply.body;
  renderCloseResult();
  messages.show('day_closed', 'info', { expired: closeResult.expired, finished: closeResult.finished });
}

function renderCloseResult() {
  dom.closeDayResult.dataset.expired = closeResult ? String(closeResult.expired) : '';
  dom.closeDayResult.dataset.finished = closeResult ? String(closeResult.finished) : '';
  dom.closeDayResult.textContent = closeResult
    ? t('admin.day.result', { expired: closeResult.expired, finished: closeResult.finished })
    : '';
}

// ---------------------------------------------------------------------------------------------
// Audit log

async function loadAudit() {
  const reply = await call(`${base()}/audit?limit=${encodeURIComponent(dom.auditLimit.value)}`);
  if (!succeeded(reply)) return;
  audit = reply.body.entries || [];
  renderAudit();
}

function renderAudit() {
  if (!audit) return;
  dom.auditBody.replaceChildren(...audit.map((entry) => {
    const row = el('tr');
    row.dataset.action = entry.action;
    const action = t(`admin.audit.actions.${entry.action}`);
    const target = entry.target
      ? `${t(`admin.audit.targets.${entry.target.type}`)}: ${entry.target.name ?? ''}`
      : '—';
    row.append(
      el('td', 'small', formatDateTime(entry.at)),
      el('td', '', entry.user ? entry.user.username : '—'),
      el('td', '', action.startsWith('admin.') ? entry.action : action),
      el('td', '', target.startsWith('admin.') ? entry.target.name : target),
    );
    return row;
  }));
}

// ---------------------------------------------------------------------------------------------
// Reports

/** YYYY-MM-DD of a date in the browser's zone (a site's admin works on site). */
function isoDay(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function defaultRange() {
  if (!dom.reportTo.value) dom.reportTo.value = isoDay(new Date());
  if (!dom.reportFrom.value) dom.reportFrom.value = isoDay(new Date(Date.now() - 6 * DAY_MS));
}

function statsQuery(format) {
  const params = new URLSearchParams({ from: dom.reportFrom.value, to: dom.reportTo.value });
  if (format) params.set('format', format);
  return `${base()}/stats?${params}`;
}

async function loadReport(event) {
  if (event) event.preventDefault();
  defaultRange();
  dom.reportBody.setAttribute('aria-busy', 'true');
  const reply = await call(statsQuery());
  dom.reportBody.removeAttribute('aria-busy');
  if (!succeeded(reply)) return;
  report = reply.body;
  messages.clear();
  renderReport();
}

/** A duration for people: "45 s", "2 min 05 s", "1 h 02 min"; "—" without a sample. */
function formatSecs(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '—';
  const total = Math.round(secs);
  if (total < 60) return t('admin.reports.secs', { s: total });
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return t('admin.reports.min_secs', { m: minutes, s: String(total % 60).padStart(2, '0') });
  return t('admin.reports.hours_min', { h: Math.floor(minutes / 60), m: String(minutes % 60).padStart(2, '0') });
}

/** An axis label: whole minutes as "5 min". */
function formatTick(secs) {
  return secs >= 60 && secs % 60 === 0 ? t('admin.reports.mins', { m: secs / 60 }) : formatSecs(secs);
}

function formatCount(value) {
  return typeof value === 'number' ? new Intl.NumberFormat(currentLanguage()).format(value) : '—';
}

const COUNTS = ['issued', 'served', 'no_show', 'cancelled', 'expired', 'transferred'];
const TIMES = [['wait_secs', 'mean'], ['wait_secs', 'p50'], ['wait_secs', 'p90'],
  ['service_secs', 'mean'], ['service_secs', 'p50'], ['service_secs', 'p90']];

function timeOf(row, [field, stat]) {
  return row && row[field] ? row[field][stat] : null;
}

function renderReport() {
  if (!report) return;
  dom.reportBody.hidden = false;
  dom.reportRange.textContent = t('admin.reports.range', {
    from: report.from, to: report.to, timezone: report.timezone || '',
  });

  const totals = report.totals || {};
  dom.reportTotals.replaceChildren();
  const total = (key, value, text) => {
    const item = el('div', 'total');
    item.dataset.testid = `total-${key}`;
    item.dataset.value = value === null || value === undefined ? '' : String(value);
    item.append(el('dt', '', t(`admin.reports.fields.${key}`)), el('dd', '', text));
    dom.reportTotals.append(item);
  };
  for (const key of COUNTS) total(key, totals[key], formatCount(totals[key]));
  total('wait_mean', timeOf(totals, TIMES[0]), formatSecs(timeOf(totals, TIMES[0])));
  total('wait_p90', timeOf(totals, TIMES[2]), formatSecs(timeOf(totals, TIMES[2])));
  total('service_mean', timeOf(totals, TIMES[3]), formatSecs(timeOf(totals, TIMES[3])));

  const perService = report.services || [];
  dom.chartServices.replaceChildren(barChart({
    title: t('admin.reports.service_times'),
    description: t('admin.reports.service_times_desc'),
    categories: perService.map((s) => s.code),
    series: [
      { key: 'wait_mean', label: t('admin.reports.fields.wait_mean'), values: perService.map((s) => timeOf(s, TIMES[0])) },
      { key: 'service_mean', label: t('admin.reports.fields.service_mean'), values: perService.map((s) => timeOf(s, TIMES[3])) },
    ],
    format: formatSecs,
    tickFormat: formatTick,
    stepFor: durationStep,
    describe: (code, s, text) => {
      const service = perService.find((x) => x.code === code);
      return `${code} · ${service ? service.name : ''} — ${s.label}: ${text}`;
    },
  }));

  const hours = Array.from({ length: 24 }, (_, hour) => (report.hours || []).find((h) => h.hour === hour) || { hour, arrivals: 0, mean_wait_secs: null });
  const hourLabels = hours.map((h) => String(h.hour).padStart(2, '0'));
  dom.chartArrivals.replaceChildren(barChart({
    title: t('admin.reports.arrivals'),
    description: t('admin.reports.arrivals_desc', { timezone: report.timezone || '' }),
    categories: hourLabels,
    series: [{ key: 'arrivals', label: t('admin.reports.fields.arrivals'), values: hours.map((h) => h.arrivals) }],
    format: formatCount,
    height: 240,
    describe: (hour, s, text) => `${hour}:00 — ${s.label}: ${text}`,
  }));
  dom.chartHourWait.replaceChildren(lineChart({
    title: t('admin.reports.hour_wait'),
    description: t('admin.reports.hour_wait_desc', { timezone: report.timezone || '' }),
    categories: hourLabels,
    series: [{ key: 'mean_wait', label: t('admin.reports.fields.wait_mean'), values: hours.map((h) => h.mean_wait_secs) }],
    format: formatSecs,
    tickFormat: formatTick,
    stepFor: durationStep,
    describe: (hour, s, text) => `${hour}:00 — ${s.label}: ${text}`,
  }));

  const timeHeads = TIMES.map(([field, stat]) => t(`admin.reports.columns.${field}.${stat}`));
  renderTable(dom.reportServicesHead, dom.reportServicesBody,
    [t('admin.reports.columns.service'), ...COUNTS.map((k) => t(`admin.reports.fields.${k}`)), ...timeHeads],
    perService.map((s) => ({
      testid: `report-service-${s.code}`,
      cells: [`${s.code} · ${s.name}`, ...COUNTS.map((k) => formatCount(s[k])), ...TIMES.map((f) => formatSecs(timeOf(s, f)))],
    })));
  const opCounts = COUNTS.filter((k) => k !== 'issued');
  renderTable(dom.reportOperatorsHead, dom.reportOperatorsBody,
    [t('admin.reports.columns.operator'), ...opCounts.map((k) => t(`admin.reports.fields.${k}`)), ...timeHeads],
    (report.operators || []).map((o) => ({
      testid: `report-operator-${o.username}`,
      data: Object.fromEntries(opCounts.map((k) => [k, o[k]])),
      cells: [o.username, ...opCounts.map((k) => formatCount(o[k])), ...TIMES.map((f) => formatSecs(timeOf(o, f)))],
    })));
}

function renderTable(head, body, headings, rows) {
  const headRow = el('tr');
  headings.forEach((text) => {
    const th = el('th', '', text);
    th.scope = 'col';
    headRow.append(th);
  });
  head.replaceChildren(headRow);
  body.replaceChildren(...rows.map((row) => {
    const tr = el('tr');
    tr.dataset.testid = row.testid;
    for (const [key, value] of Object.entries(row.data || {})) tr.dataset[key] = String(value ?? '');
    row.cells.forEach((text, i) => {
      const cell = el(i === 0 ? 'th' : 'td', '', text);
      if (i === 0) cell.scope = 'row';
      tr.append(cell);
    });
    return tr;
  }));
  if (!rows.length) {
    const tr = el('tr');
    const cell = el('td', 'muted', t('admin.reports.none'));
    cell.colSpan = headings.length;
    tr.append(cell);
    body.append(tr);
  }
}

/** The same range as CSV (GET …/stats?format=csv), saved as a file. */
async function downloadCsv() {
  defaultRange();
  const sessionToken = token;
  let response;
  try {
    response = await fetch(`/api/v1${statsQuery('csv')}`, { headers: { Authorization: `Bearer ${sessionToken}` } });
  } catch {
    messages.show('network_error');
    return;
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    const reply = { status: response.status, body };
    const ended = sessionEndReason(reply);
    if (ended) endSession(ended);
    else succeeded(reply);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el('a');
  link.href = url;
  link.download = `nextup-${slug}-${dom.reportFrom.value}-${dom.reportTo.value}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---------------------------------------------------------------------------------------------
// Wiring

function renderHeader() {
  dom.tenantName.textContent = tenantName ? `— ${tenantName}` : '';
  dom.userInfo.textContent = user && user.username ? t('admin.signed_in_as', { username: user.username }) : '';
  document.title = tenantName ? `${t('admin.page_title')} — ${tenantName}` : t('admin.page_title');
}

function onLanguage() {
  renderLanguageSwitcher(dom.langSwitcher);
  renderHeader();
  loginUi.render();
  messages.render();
  renderServices();
  renderCounters();
  renderUsers();
  renderHoursGrid();
  renderCloseResult();
  renderAudit();
  renderReport();
}

function fillTimezones() {
  let zones = [];
  try { zones = Intl.supportedValuesOf('timeZone'); } catch { zones = []; }
  dom.timezones.replaceChildren(...zones.map((zone) => {
    const option = document.createElement('option');
    option.value = zone;
    return option;
  }));
}

function init() {
  translatePage();
  renderLanguageSwitcher(dom.langSwitcher);
  onLanguageChange(onLanguage);
  loginUi = loginForm(slug, {
    form: $('login-form'),
    username: $('login-username'),
    password: $('login-password'),
    button: $('login-button'),
    error: $('login-error'),
  }, (jwt) => {
    const claims = claimsOf(jwt);
    if (!claims || claims.role !== 'admin') return 'admin_required';
    tokens.write(jwt);
    startSession(jwt);
    return null;
  });
  dom.logout.addEventListener('click', () => endSession(null));
  for (const tab of TABS) tabButton(tab).addEventListener('click', () => selectTab(tab, false));
  dom.tabs.addEventListener('keydown', onTabKey);
  dom.serviceForm.addEventListener('submit', createService);
  dom.counterForm.addEventListener('submit', createCounter);
  dom.userForm.addEventListener('submit', createUser);
  dom.settingsForm.addEventListener('submit', saveSettings);
  dom.alwaysOpen.addEventListener('change', renderHoursEnabled);
  dom.closeDay.addEventListener('click', askCloseDay);
  dom.closeDayYes.addEventListener('click', closeDay);
  dom.closeDayNo.addEventListener('click', () => { askCloseDay(); dom.closeDay.focus(); });
  dom.auditRefresh.addEventListener('click', loadAudit);
  dom.auditLimit.addEventListener('change', loadAudit);
  dom.reportForm.addEventListener('submit', loadReport);
  dom.reportPrint.addEventListener('click', () => window.print());
  dom.reportCsv.addEventListener('click', downloadCsv);
  fillTimezones();
  renderHoursGrid();
  defaultRange();

  api('/tenants').then((reply) => {
    const tenant = reply.status === 200 && reply.body && (reply.body.tenants || []).find((x) => x.slug === slug);
    if (tenant) {
      tenantName = tenant.name;
      renderHeader();
    }
  }).catch(() => {});

  const stored = tokens.read();
  if (stored) startSession(stored);
  else $('login-username').focus();
}

init();
