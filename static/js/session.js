// Signing in, shared by the pages that need a token (the operator console, the admin page):
// the login form, where the token is kept, and what a refused token means.
//
// A token ends for three reasons, all shown as "log in again": it expired, an admin changed
// the account (deactivated it, or changed its role or password: 401 `token_revoked` on REST,
// WebSocket close 4001), or it belongs to another site (403 `wrong_tenant`).

import { api, errorCode } from './api.js';
import { t } from './i18n.js';

/** The tab's token of `page` on site `slug`, in sessionStorage (this tab only). */
export function tokenStore(page, slug) {
  const key = `nextup.${page}.token.${slug}`;
  return {
    read() {
      try { return sessionStorage.getItem(key); } catch { return null; }
    },
    write(value) {
      try {
        if (value) sessionStorage.setItem(key, value);
        else sessionStorage.removeItem(key);
      } catch { /* private mode: the session lasts as long as the page */ }
    },
  };
}

/** The claims of a JWT (not verified: the server does that), or null. */
export function claimsOf(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = part + '='.repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** POST /auth/login; resolves to the api() reply, or null when the network failed. */
export async function logIn(slug, username, password) {
  try {
    return await api('/auth/login', { method: 'POST', body: { tenant: slug, username, password } });
  } catch {
    return null;
  }
}

/**
 * POST /auth/password. On 204 the token used is refused from then on (the server revokes
 * every token of the user), so the caller logs in again with the new password.
 */
export async function changePassword(token, currentPassword, newPassword) {
  try {
    return await api('/auth/password', {
      method: 'POST',
      token,
      body: { current_password: currentPassword, new_password: newPassword },
    });
  } catch {
    return null;
  }
}

/**
 * Why a reply ends the session ('token_revoked', 'session_expired', 'wrong_tenant'), or null
 * when it does not.
 */
export function sessionEndReason(reply) {
  if (!reply) return null;
  if (reply.status === 401) return errorCode(reply) === 'token_revoked' ? 'token_revoked' : 'session_expired';
  if (reply.status === 403 && errorCode(reply) === 'wrong_tenant') return 'wrong_tenant';
  return null;
}

/** The same for a WebSocket closed with 4001: its reason names a revocation or an expiry. */
export function liveEndReason(closeReason) {
  return /revoked/i.test(closeReason || '') ? 'token_revoked' : 'session_expired';
}

/**
 * Drives a login form: `els` = {form, username, password, button, error}. `onToken(token,
 * reply)` is called after a successful login; it may return an error reason to refuse the
 * account (e.g. 'admin_required' on the admin page). Texts are `common.login.*`.
 */
export function loginForm(slug, els, onToken) {
  let shown = null; // {reason, vars}

  const render = () => {
    els.error.hidden = !shown;
    els.error.dataset.code = shown ? shown.reason : '';
    els.error.textContent = shown ? loginText(shown.reason, shown.vars) : '';
    if (!els.button.disabled) els.button.textContent = t('common.login.submit');
  };

  const showError = (reason, vars = {}) => {
    shown = reason ? { reason, vars } : null;
    render();
  };

  els.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = els.username.value.trim();
    const password = els.password.value;
    if (!username || !password) {
      (username ? els.password : els.username).focus();
      return;
    }
    els.button.disabled = true;
    els.button.textContent = t('common.login.signing_in');
    const reply = await logIn(slug, username, password);
    els.button.disabled = false;
    els.button.textContent = t('common.login.submit');
    if (!reply) {
      showError('network_error');
    } else if (reply.status === 200 && reply.body && reply.body.token) {
      const refused = onToken(reply.body.token, reply);
      if (refused) {
        showError(refused);
        return;
      }
      els.password.value = '';
      showError(null);
    } else if (reply.status === 401) {
      showError('invalid_credentials');
      els.password.select();
    } else {
      showError('failed', { code: errorCode(reply) || `http_${reply.status}` });
    }
  });

  return {
    showError,
    /** Re-renders in the current language. */
    render,
    /** Back to a usable form, focused. */
    reset() {
      els.button.disabled = false;
      render();
      els.username.focus();
    },
  };
}

/** The sentence for a login error reason. */
export function loginText(reason, vars = {}) {
  if (reason === 'network_error') return t('common.network_error');
  const key = `common.login.${reason}`;
  const text = t(key, vars);
  return text === key ? t('common.login.failed', { code: reason }) : text;
}
