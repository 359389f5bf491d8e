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
