// The city admin: the schools of the city and their progress side by side.
import {h, replace, table, field, announce, saveBlob} from '../dom.js';
import {t} from '../i18n.js';
import * as api from '../api.js';
import {barChart, percent, statisticsCell} from './staff.js';

const COLUMNS = ['students', 'students_uploaded', 'upload_rate', 'outcomes_uploaded', 'outcomes_per_student',
                 'outcomes_certified', 'performances_uploaded', 'counselling_records'];

/** 學年度 of today (Taiwan: a school year starts in August). */
function currentYear() {
  const now = new Date(Date.now() + 8 * 3600 * 1000);
  return now.getUTCFullYear() - 1911 - (now.getUTCMonth() < 7 ? 1 : 0);
}

export async function schools(ctx) {
  const city = ctx.me.city.code;
  const years = Array.from({length: 5}, (_, i) => String(currentYear() - i));
  const scopes = years.flatMap(y => [`year:${y}`, `term:${y}01`, `term:${y}02`]);
  const chosen = scopes.includes(sessionStorage.getItem('footprint.cityScope')) ? sessionStorage.getItem('footprint.cityScope') : scopes[0];
  const [kind, value] = chosen.split(':');
  const [list, statistics] = await Promise.all([
    api.call('/api/v1/schools'),
    api.call(`/api/v1/intake/cities/${city}/statistics?${kind}=${value}`).catch(error => ({error})),
  ]);
  if (!ctx.alive()) return;
  const select = h('select', {id: 'city-scope', onchange: () => { sessionStorage.setItem('footprint.cityScope', select.value); schools(ctx); }},
    scopes.map(s => { const [k, v] = s.split(':'); return h('option', {value: s, selected: s === chosen},
      k === 'year' ? t('city.year', {year: v}) : t('city.term', {year: v.slice(0, 3), semester: v.slice(4)})); }));
  const rowOf = Object.fromEntries((statistics.schools || []).map(row => [row.school, row]));
  const download = ext => h('button', {type: 'button', onclick: async () => {
    try { saveBlob(await api.fetchBlob(`/api/v1/intake/cities/${city}/statistics.${ext}?${kind}=${value}`), `statistics-${city}-${value}.${ext}`); }
    catch (error) { announce(api.errorText(error), 'error'); }
  }}, t(`status.download.${ext}`));
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('city.title', {city: ctx.me.city.name})),
    field(t('city.scope'), select),
    statistics.error ? h('p', {class: 'notice'}, api.errorText(statistics.error)) : h('section', {class: 'card'},
      barChart(t('city.rates'), list.items.map(s => ({label: s.name, value: rowOf[s.code]?.upload_rate || 0,
        text: percent(rowOf[s.code]?.upload_rate || 0)})), {max: 1})),
    table([{label: t('city.code'), cell: s => s.code},
           {label: t('city.name'), cell: s => s.name},
           {label: t('city.state'), cell: s => h('span', {class: `badge ${s.active ? 'open' : 'closed'}`}, s.active ? t('city.active') : t('city.inactive'))},
           ...COLUMNS.map(key => ({label: t(`statistics.${key}`), cell: s => rowOf[s.code] ? statisticsCell(key, rowOf[s.code]) : '—'}))],
          list.items, {empty: t('city.none'), caption: t('city.caption', {n: list.items.length})}),
    statistics.total ? h('p', {class: 'lead', id: 'city-total'}, t('city.total', {students: statistics.total.students,
      rate: percent(statistics.total.upload_rate), outcomes: statistics.total.outcomes_uploaded})) : null,
    statistics.error ? null : h('div', {class: 'actions'}, download('csv'), download('xlsx')));
}
