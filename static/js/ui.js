// Small helpers shared by the pages.

import { currentLanguage, t } from './i18n.js';

/** Shows the live connection state ('connecting' | 'live' | 'reconnecting' | 'polling'). */
export function renderConnection(el, state) {
  el.dataset.state = state;
  el.textContent = t(`common.connection.${state}`);
}

/**
 * A page's message line: one message at a time, kept by its code and shown in the current
 * language from the page's texts `<prefix>.messages.<code>`. An unknown code reads as
 * `<prefix>.messages.refused` when the server said why (`vars.message`) and the page has that
 * text, else as `<prefix>.messages.generic`. The element carries the code and the kind
 * ('error' | 'info') as data attributes, for styles and tests.
 */
export function messageLine(element, prefix) {
  let current = null; // {code, kind, vars}
  const text = ({ code, vars }) => {
    if (code === 'network_error') return t('common.network_error');
    const key = `${prefix}.messages.${code}`;
    const known = t(key, vars);
    if (known !== key) return known;
    const refused = `${prefix}.messages.refused`;
    if (vars.message && t(refused) !== refused) return t(refused, { message: vars.message, code });
    return t(`${prefix}.messages.generic`, { code });
  };
  const render = () => {
    element.dataset.code = current ? current.code : '';
    element.dataset.kind = current ? current.kind : '';
    element.textContent = current ? text(current) : '';
  };
  return {
    show(code, kind = 'error', vars = {}) {
      current = { code, kind, vars };
      render();
    },
    clear() {
      current = null;
      render();
    },
    /** The code shown, or null. */
    code() {
      return current ? current.code : null;
    },
    /** Again, in the current language. */
    render,
  };
}

/** "about 5 min", "less than a minute", for an estimate in seconds. */
export function formatWait(secs) {
  if (secs === null || secs === undefined) return '';
  const minutes = Math.round(secs / 60);
  if (minutes < 1) return t('common.wait.under_a_minute');
  return t('common.wait.minutes', { minutes });
}

/** The translated name of a ticket status. */
export function statusText(status) {
  return t(`common.status.${status}`);
}

/** A ticket code spelled for speech: "A023" → "A 0 2 3". */
export function spokenCode(code) {
  return code.split('').join(' ');
}

/** Creates an element with a class and text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Puts `node` where {counter} stands in the translated `key` ("Go to {counter}"). */
export function fillWithCounter(container, key, node) {
  const marker = '\u0000';
  const [before, after = ''] = t(key, { counter: marker }).split(marker);
  container.replaceChildren(document.createTextNode(before), node, document.createTextNode(after));
}

/** "You are next", "3 people ahead of you". */
export function aheadText(ahead) {
  if (ahead === 0) return t('common.ticket.ahead.zero');
  if (ahead === 1) return t('common.ticket.ahead.one');
  return t('common.ticket.ahead.other', { count: ahead });
}

/**
 * Shows a ticket's people ahead (with `data-ahead` for tests) and estimated wait while it
 * waits, and clears both otherwise. Shared by the kiosk and the phone page.
 */
export function renderWait(aheadEl, estimateEl, ticket) {
  const waiting = ticket.status === 'waiting';
  if (waiting && typeof ticket.ahead === 'number') {
    aheadEl.dataset.ahead = String(ticket.ahead);
    aheadEl.textContent = aheadText(ticket.ahead);
  } else {
    delete aheadEl.dataset.ahead;
    aheadEl.textContent = '';
  }
  const secs = ticket.estimated_wait_secs;
  estimateEl.textContent = waiting && secs !== null && secs !== undefined
    ? t('common.ticket.estimate', { wait: formatWait(secs) })
    : '';
}

/** Year, month and day of `date` in `timeZone` (the browser's when undefined), as a day number. */
function dayNumber(date, timeZone) {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric' })
    .formatToParts(date);
  const part = (type) => Number(parts.find((p) => p.type === type).value);
  return Date.UTC(part('year'), part('month') - 1, part('day')) / 86400000;
}

/**
 * When a closed site opens again, for people: "Opens at 08:00", "Opens tomorrow at 08:00",
 * "Opens Monday at 08:00", in the page language and in `timeZone` (the tenant's when the
 * server gives it; else the browser's, which for a kiosk or a screen on site is the same).
 * '' when there is no opening ahead (`opensAt` null) or it cannot be read.
 */
export function opensAtText(opensAt, timeZone, now = new Date()) {
  if (!opensAt) return '';
  const at = new Date(opensAt);
  if (Number.isNaN(at.getTime())) return '';
  const lang = currentLanguage();
  let zone = timeZone || undefined;
  try {
    new Intl.DateTimeFormat(lang, { timeZone: zone }).format(at);
  } catch {
    zone = undefined; // a zone this browser does not know: its own
  }
  const time = new Intl.DateTimeFormat(lang, { timeZone: zone, hour: '2-digit', minute: '2-digit' }).format(at);
  const days = dayNumber(at, zone) - dayNumber(now, zone);
  if (days <= 0) return t('common.closed.opens_today', { time });
  if (days === 1) return t('common.closed.opens_tomorrow', { time });
  if (days < 7) {
    const day = new Intl.DateTimeFormat(lang, { timeZone: zone, weekday: 'long' }).format(at);
    return t('common.closed.opens_weekday', { day, time });
  }
  const date = new Intl.DateTimeFormat(lang, { timeZone: zone, day: 'numeric', month: 'long' }).format(at);
  return t('common.closed.opens_date', { date, time });
}
