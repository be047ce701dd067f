// The portal's shell: session, navigation by role, hash routes, language switch.
import {h, replace, showFlash} from './dom.js';
import {t, setLang, getLang} from './i18n.js';
import * as api from './api.js';
import {ROUTES, navFor} from './routes.js';

const session = {me: null};
let renderCount = 0;

const header = document.getElementById('top');
const nav = document.getElementById('nav');
const main = document.getElementById('main');

api.setSignedOutHandler(() => {
  session.me = null;
  if (location.hash !== '#/login') location.hash = '#/login';
});

export async function loadMe() {
  session.me = await api.call('/api/v1/me');
  return session.me;
}

function roles() { return session.me?.user.roles || []; }

function renderHeader() {
  const me = session.me;
  const next = getLang() === 'zh-TW' ? 'en' : 'zh-TW';
  replace(header,
    h('a', {class: 'brand', href: '#/'}, t('app.name')),
    me ? h('span', {class: 'who'}, [me.school?.name || me.city?.name, ' · ', me.user.display_name]) : null,
    h('span', {class: 'spacer'}),
    h('button', {type: 'button', class: 'lang', lang: next, id: 'lang-switch',
                 'aria-label': t('app.switchLanguageLabel'), onclick: () => { setLang(next); render(); }},
      t('app.otherLanguage')),
    me ? h('button', {type: 'button', class: 'ghost', id: 'sign-out', onclick: signOut}, t('app.signOut')) : null);
}

function renderNav(path) {
  if (!session.me || session.me.user.must_change_password) { nav.hidden = true; replace(nav); return; }
  const items = navFor(session.me);
  nav.hidden = items.length === 0;
  replace(nav, h('ul', {}, items.map(item => h('li', {},
    h('a', {href: item.href, 'aria-current': path.startsWith(item.href.slice(1)) ? 'page' : false}, t(item.label))))));
}

async function signOut() {
  await api.signOut();
  session.me = null;
  location.hash = '#/login';
}

export async function render() {
  const count = ++renderCount;
  const path = (location.hash || '#/').slice(1) || '/';
  document.documentElement.lang = getLang();
  document.title = t('app.name');
  document.querySelector('.skip').textContent = t('app.skip');
  nav.setAttribute('aria-label', t('nav.label'));
  if (!session.me && api.hasSession()) {
    try { await loadMe(); } catch { api.forget(); }
  }
  if (count !== renderCount) return;
  if (!session.me && path !== '/login') { location.replace('#/login'); return; }
  if (session.me?.user.must_change_password && path !== '/password') { location.replace('#/password'); return; }
  if (session.me && (path === '/' || path === '/login')) {
    const first = navFor(session.me)[0];
    location.replace(first ? first.href : '#/password');
    return;
  }
  showFlash();
  renderHeader();
  renderNav(path);
  let match = null;
  const route = ROUTES.find(r => (match = path.match(r.path)));
  const ctx = {
    me: session.me, params: match ? match.slice(1).map(decodeURIComponent) : [], main,
    alive: () => count === renderCount, refreshMe: loadMe, go: hash => { location.hash = hash; },
  };
  if (!route) {
    replace(main, h('h1', {tabindex: '-1'}, t('error.pageNotFound')));
  } else if (route.roles && !route.roles.some(role => roles().includes(role))) {
    replace(main, h('h1', {tabindex: '-1'}, t('error.notYourPage')));
  } else {
    replace(main, h('p', {class: 'loading', role: 'status'}, t('app.loading')));
    try {
      await route.view(ctx);
    } catch (error) {
      if (!ctx.alive()) return;
      const message = api.errorText(error);
      // Another school's page (404 from the API): the view shows nothing of it, only that it is not there.
      replace(main, h('h1', {tabindex: '-1'}, error.status === 404 ? t('error.pageNotFound') : t('error.title')),
        h('p', {class: 'error', role: 'alert'}, message));
    }
  }
  if (ctx.alive()) main.querySelector('h1')?.focus({preventScroll: true});
}

// The skip link moves focus without touching the address (the hash is the router's).
document.querySelector('.skip').addEventListener('click', event => { event.preventDefault(); main.focus(); });
window.addEventListener('hashchange', render);
setLang(getLang());
render();
