// The city admin: the schools of the city side by side.
import {h, replace, table} from '../dom.js';
import {t} from '../i18n.js';
import * as api from '../api.js';

export async function schools(ctx) {
  const list = await api.call('/api/v1/schools');
  if (!ctx.alive()) return;
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('city.title', {city: ctx.me.city.name})),
    table([{label: t('city.code'), cell: s => s.code},
           {label: t('city.name'), cell: s => s.name},
           {label: t('city.state'), cell: s => h('span', {class: `badge ${s.active ? 'open' : 'closed'}`},
             s.active ? t('city.active') : t('city.inactive'))}],
          list.items, {empty: t('city.none'), caption: t('city.caption', {n: list.items.length})}));
}
