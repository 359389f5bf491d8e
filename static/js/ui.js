// Small helpers shared by the pages.

import { t } from './i18n.js';

/** Shows the live connection state ('connecting' | 'live' | 'reconnecting' | 'polling'). */
export function renderConnection(el, state) {
  el.dataset.state = state;
  el.textContent = t(`common.connection.${state}`);
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
