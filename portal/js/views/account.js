// Sign-in, the password change (required at first sign-in) and the reminders every user gets.
import {h, replace, field, flash, formatTime} from '../dom.js';
import {t, pick} from '../i18n.js';
import * as api from '../api.js';

const SCHOOL_KEY = 'footprint.school';

export async function login(ctx) {
  const school = h('input', {name: 'school', autocomplete: 'organization', required: true, maxlength: '6',
                             value: localStorage.getItem(SCHOOL_KEY) || '', autocapitalize: 'characters'});
  const username = h('input', {name: 'username', autocomplete: 'username', required: true, maxlength: '40',
                               autocapitalize: 'none'});
  const password = h('input', {name: 'password', type: 'password', autocomplete: 'current-password', required: true});
  const error = h('p', {class: 'error', role: 'alert'});
  const submit = h('button', {type: 'submit', class: 'primary'}, t('login.submit'));
  const form = h('form', {class: 'card narrow', onsubmit: async event => {
    event.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      const tokens = await api.signIn(school.value.trim().toUpperCase(), username.value.trim(), password.value);
      localStorage.setItem(SCHOOL_KEY, school.value.trim().toUpperCase());
      await ctx.refreshMe();
      ctx.go(tokens.must_change_password ? '#/password' : '#/');
    } catch (failure) {
      error.textContent = api.errorText(failure);
      submit.disabled = false;
      password.select();
    }
  }},
  h('h1', {tabindex: '-1'}, t('login.title')),
  h('p', {class: 'lead'}, t('login.lead')),
  field(t('login.school'), school, t('login.schoolHint')),
  field(t('login.username'), username),
  field(t('login.password'), password),
  error, submit);
  replace(ctx.main, form);
}

export async function password(ctx) {
  const me = ctx.me;
  const forced = me.user.must_change_password;
  const current = h('input', {type: 'password', autocomplete: 'current-password', required: true});
  const next = h('input', {type: 'password', autocomplete: 'new-password', required: true, minlength: '10'});
  const again = h('input', {type: 'password', autocomplete: 'new-password', required: true});
  const error = h('p', {class: 'error', role: 'alert'});
  const submit = h('button', {type: 'submit', class: 'primary'}, t('password.submit'));
  replace(ctx.main, h('form', {class: 'card narrow', onsubmit: async event => {
    event.preventDefault();
    error.textContent = '';
    if (next.value.length < 10) { error.textContent = t('password.tooShort'); next.focus(); return; }
    if (next.value !== again.value) { error.textContent = t('password.mismatch'); again.focus(); return; }
    submit.disabled = true;
    try {
      await api.call('/api/v1/auth/password', {method: 'POST',
                                               json: {current_password: current.value, new_password: next.value}});
      // Changing the password revokes every token of the account: sign in again with the new one.
      await api.signIn(me.school?.code || me.city.code, me.user.username, next.value);
      await ctx.refreshMe();
      flash(t('password.changed'));
      ctx.go('#/');
    } catch (failure) {
      error.textContent = api.errorText(failure);
      submit.disabled = false;
    }
  }},
  h('h1', {tabindex: '-1'}, t('password.title')),
  forced ? h('p', {class: 'notice'}, t('password.firstSignIn')) : null,
  field(t('password.current'), current),
  field(t('password.new'), next, t('password.rule')),
  field(t('password.again'), again),
  error, submit));
}

export async function notifications(ctx) {
  const list = await api.call('/api/v1/scheduling/me/notifications');
  if (!ctx.alive()) return;
  replace(ctx.main,
    h('h1', {tabindex: '-1'}, t('notifications.title')),
    list.items.length ? h('ul', {class: 'cards'}, list.items.map(item => h('li', {class: item.read_at ? 'card' : 'card unread'},
      h('h2', {}, pick(item.title)), h('p', {}, pick(item.message)),
      h('p', {class: 'meta'}, formatTime(item.created_at)),
      item.read_at ? null : h('button', {type: 'button', onclick: async () => {
        await api.call(`/api/v1/scheduling/me/notifications/${item.id}/read`, {method: 'POST'});
        notifications(ctx);
      }}, t('notifications.markRead'))))) : h('p', {class: 'empty'}, t('notifications.none')));
}
