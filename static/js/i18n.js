// Languages: English and Brazilian Portuguese. All text of a language lives in its folder
// (static/js/i18n/<lang>/), one file per page plus `common`. The language comes from
// ?lang=, then the last choice (localStorage), then the browser, then English.

import enAdmin from './i18n/en/admin.js';
import enCommon from './i18n/en/common.js';
import enDisplay from './i18n/en/display.js';
import enIndex from './i18n/en/index.js';
import enOperator from './i18n/en/operator.js';
import enTicket from './i18n/en/ticket.js';
import enTotem from './i18n/en/totem.js';
import ptAdmin from './i18n/pt-BR/admin.js';
import ptCommon from './i18n/pt-BR/common.js';
import ptDisplay from './i18n/pt-BR/display.js';
import ptIndex from './i18n/pt-BR/index.js';
import ptOperator from './i18n/pt-BR/operator.js';
import ptTicket from './i18n/pt-BR/ticket.js';
import ptTotem from './i18n/pt-BR/totem.js';

const DICTIONARIES = {
  en: { admin: enAdmin, common: enCommon, display: enDisplay, index: enIndex, operator: enOperator, ticket: enTicket, totem: enTotem },
  'pt-BR': { admin: ptAdmin, common: ptCommon, display: ptDisplay, index: ptIndex, operator: ptOperator, ticket: ptTicket, totem: ptTotem },
};

export const LANGUAGES = [['en', 'English'], ['pt-BR', 'Português']];
const STORAGE_KEY = 'nextup.lang';
const listeners = [];

function supported(code) {
  if (!code) return null;
  if (DICTIONARIES[code]) return code;
  if (code.toLowerCase().startsWith('pt')) return 'pt-BR';
  if (code.toLowerCase().startsWith('en')) return 'en';
  return null;
}

function initialLanguage() {
  const fromQuery = supported(new URLSearchParams(location.search).get('lang'));
  if (fromQuery) return fromQuery;
  let stored = null;
  try { stored = supported(localStorage.getItem(STORAGE_KEY)); } catch { stored = null; }
  if (stored) return stored;
  for (const code of navigator.languages || [navigator.language]) {
    const found = supported(code);
    if (found) return found;
  }
  return 'en';
}

let current = initialLanguage();

function lookup(dictionary, key) {
  return key.split('.').reduce((node, part) => (node && typeof node === 'object' ? node[part] : undefined), dictionary);
}

/** The text for `key` ("page.some.key") in the current language, with {name} filled in. */
export function t(key, vars = {}) {
  let text = lookup(DICTIONARIES[current], key);
  if (typeof text !== 'string') text = lookup(DICTIONARIES.en, key);
  if (typeof text !== 'string') return key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] !== undefined ? String(vars[name]) : `{${name}}`));
}

export function currentLanguage() {
  return current;
}

/** Fills elements marked data-i18n="key" (text) and data-i18n-attr="attr:key;attr:key". */
export function translatePage(root = document) {
  document.documentElement.lang = current;
  root.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll('[data-i18n-attr]').forEach((el) => {
    el.dataset.i18nAttr.split(';').forEach((pair) => {
      const [attr, key] = pair.split(':').map((s) => s.trim());
      if (attr && key) el.setAttribute(attr, t(key));
    });
  });
}

export function setLanguage(code) {
  const next = supported(code);
  if (!next) return;
  current = next;
  try { localStorage.setItem(STORAGE_KEY, next); } catch { /* private mode */ }
  translatePage();
  listeners.forEach((listener) => listener(next));
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

/** Renders language buttons into `container`. */
export function renderLanguageSwitcher(container) {
  container.replaceChildren();
  for (const [code, name] of LANGUAGES) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = name;
    button.lang = code;
    button.className = 'lang-button';
    button.setAttribute('aria-pressed', String(code === current));
    button.addEventListener('click', () => {
      setLanguage(code);
      renderLanguageSwitcher(container);
    });
    container.append(button);
  }
}
