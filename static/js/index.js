// The start page: the sites (tenants) this server hosts, with links to their kiosk, display,
// operator and admin pages; a short how-to when there is none yet.

import { api } from './api.js';
import { onLanguageChange, renderLanguageSwitcher, t, translatePage } from './i18n.js';

const PAGES = ['totem', 'display', 'operator', 'admin'];
const $ = (id) => document.getElementById(id);
const ui = {
  loading: $('loading'),
  error: $('load-error'),
  errorText: $('load-error-text'),
  retry: $('retry'),
  sites: $('sites'),
  list: $('tenant-list'),
  howto: $('howto'),
  lang: $('lang'),
};

let tenants = null;

function renderTenants() {
  if (!tenants) return;
  ui.list.replaceChildren();
  for (const tenant of tenants) {
    const item = document.createElement('li');
    item.className = 'tenant';
    item.dataset.slug = tenant.slug;

    const title = document.createElement('div');
    title.className = 'tenant-title';
    const name = document.createElement('h3');
    name.className = 'tenant-name';
    name.textContent = tenant.name;
    const slug = document.createElement('code');
    slug.className = 'tenant-slug';
    slug.textContent = tenant.slug;
    title.append(name, slug);

    const links = document.createElement('div');
    links.className = 'tenant-links';
    for (const page of PAGES) {
      const link = document.createElement('a');
      link.className = `page-link page-${page}`;
      link.href = `/t/${encodeURIComponent(tenant.slug)}/${page}`;
      link.dataset.page = page;
      const label = document.createElement('span');
      label.className = 'page-label';
      label.textContent = t(`index.pages.${page}`);
      const hint = document.createElement('span');
      hint.className = 'page-hint';
      hint.textContent = t(`index.pages_hint.${page}`);
      link.append(label, hint);
      links.append(link);
    }
    item.append(title, links);
    ui.list.append(item);
  }
  ui.sites.hidden = tenants.length === 0;
  ui.howto.hidden = tenants.length !== 0;
}

async function load() {
  ui.loading.hidden = false;
  ui.error.hidden = true;
  let reply = null;
  try {
    reply = await api('/tenants');
  } catch {
    reply = null;
  }
  ui.loading.hidden = true;
  if (reply && reply.status === 200 && reply.body && Array.isArray(reply.body.tenants)) {
    tenants = reply.body.tenants;
    renderTenants();
    return;
  }
  ui.errorText.textContent = reply ? t('index.error') : t('common.network_error');
  ui.error.hidden = false;
}

translatePage();
renderLanguageSwitcher(ui.lang);
ui.retry.addEventListener('click', load);
onLanguageChange(() => {
  renderTenants();
  if (!ui.error.hidden) ui.errorText.textContent = t('index.error');
});
load();
