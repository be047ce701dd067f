// Staff's daily work: imports with progress and row errors, the term's windows on a calendar, submission
// status, users and substitute certifiers. Every page is of the school in its address; the API seals tenants,
// so another school's address answers 404 and the page shows nothing of it.
import {h, replace, field, table, announce, busy, saveBlob} from '../dom.js';
import {t, pick} from '../i18n.js';
import * as api from '../api.js';

const RECORDS_KINDS = ['sections', 'enrolments', 'grades', 'cadres', 'clubs', 'attendance'];
const IDENTITY_KINDS = ['students', 'teachers'];
const POLL_MS = 400;

const errorText = api.errorText;

function roles(ctx) { return ctx.me.user.roles; }

async function terms(school) {
  const list = await api.call(`/api/v1/records/schools/${school}/terms`);
  return list.items.sort((a, b) => b.code.localeCompare(a.code));
}

function termPicker(list, chosen, onchange) {
  const select = h('select', {id: 'term', onchange: () => onchange(select.value)},
    list.map(term => h('option', {value: term.code, selected: term.code === chosen}, term.name)));
  return field(t('staff.term'), select);
}

// ---- imports ----------------------------------------------------------------------------------------------

export async function imports(ctx) {
  const [school] = ctx.params;
  const termList = await terms(school); // also proves the school is the caller's (404 otherwise)
  if (!ctx.alive()) return;
  const kind = h('select', {id: 'import-kind', required: true},
    h('optgroup', {label: t('imports.records')}, RECORDS_KINDS.map(k => h('option', {value: k}, t(`imports.kind.${k}`)))),
    h('optgroup', {label: t('imports.accounts')}, IDENTITY_KINDS.map(k => h('option', {value: k}, t(`imports.kind.${k}`)))));
  const term = h('select', {id: 'import-term'}, h('option', {value: ''}, t('imports.termFromFile')),
    termList.map(item => h('option', {value: item.code}, item.name)));
  const file = h('input', {type: 'file', id: 'import-file', required: true,
                           accept: '.csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'});
  const dryRun = h('input', {type: 'checkbox', id: 'import-dry-run'});
  const bar = h('progress', {max: '100', value: '0', id: 'import-progress', 'aria-label': t('imports.progress')});
  const state = h('p', {id: 'import-state', role: 'status'});
  const report = h('div', {id: 'import-report'});
  const submit = h('button', {type: 'submit', class: 'primary'}, t('imports.start'));

  const showReport = result => {
    const errors = result.errors.flatMap(row => row.errors.map(e => ({row: row.row, ...e})));
    replace(report,
      h('h2', {}, result.dry_run ? t('imports.reportDry') : t('imports.report')),
      h('ul', {class: 'summary'}, ['rows', 'created', 'updated', 'unchanged', 'rejected'].map(key =>
        h('li', {class: key}, h('span', {}, t(`imports.${key}`)), h('strong', {}, String(result[key] ?? 0))))),
      table([{label: t('imports.row'), cell: e => String(e.row)},
             {label: t('imports.column'), cell: e => e.field || ''},
             {label: t('imports.message'), cell: e => pick(e.message)}],
            errors, {caption: t('imports.errors'), empty: t('imports.noErrors')}),
      result.errors_truncated ? h('p', {class: 'notice'}, t('imports.truncated')) : null);
  };

  async function follow(job) {
    const path = `/api/v1/records/schools/${school}/imports/jobs/${job.id}`;
    while (ctx.alive()) {
      if (job.rows_total) {
        bar.max = job.rows_total;
        bar.value = job.rows_done;
      }
      state.textContent = t(`imports.status.${job.status}`, {done: job.rows_done, total: job.rows_total ?? '…'});
      if (job.status === 'done') { bar.max = 1; bar.value = 1; showReport(job.report); return; }
      if (job.status === 'failed') {
        replace(report, h('p', {class: 'error', role: 'alert'}, pick(job.error?.message) || t('imports.failed')));
        return;
      }
      await new Promise(resolve => setTimeout(resolve, POLL_MS));
      job = await api.call(path);
    }
  }

  const form = h('form', {class: 'card', onsubmit: async event => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    replace(report);
    submit.disabled = true;
    bar.max = 100;
    bar.value = 0;
    const identity = IDENTITY_KINDS.includes(kind.value);
    const query = new URLSearchParams({dry_run: String(dryRun.checked)});
    if (!identity && term.value) query.set('term', term.value);
    const path = identity ? `/api/v1/schools/${school}/imports/${kind.value}?${query}`
                          : `/api/v1/records/schools/${school}/imports/${kind.value}?${query}`;
    const type = chosen.name.toLowerCase().endsWith('.xlsx')
      ? 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' : 'text/csv';
    try {
      const answer = await api.upload(path, chosen, {method: 'POST',
        headers: {'Content-Type': type, 'X-File-Name': encodeURIComponent(chosen.name)},
        onProgress: (sent, total) => {
          bar.value = Math.floor((sent / (total || 1)) * 100);
          state.textContent = t('imports.uploading', {percent: bar.value});
        }});
      if (identity) { bar.value = 100; state.textContent = t('imports.status.done'); showReport(answer); }
      else await follow(answer);
    } catch (error) {
      state.textContent = '';
      replace(report, h('p', {class: 'error', role: 'alert'}, errorText(error)));
    } finally {
      submit.disabled = false;
    }
  }},
  h('div', {class: 'grid'}, field(t('imports.kind'), kind), field(t('imports.term'), term, t('imports.termHint'))),
  field(t('imports.file'), file, t('imports.fileHint')),
  h('div', {class: 'check'}, dryRun, h('label', {for: 'import-dry-run'}, t('imports.dryRun'))),
  submit);
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('imports.title')), form,
    h('section', {class: 'card'}, bar, state, report));
}

// ---- windows (期程) on a calendar ----------------------------------------------------------------------------

const TAIPEI = 8 * 3600 * 1000;
const dayOf = iso => Math.floor((Date.parse(iso) + TAIPEI) / 86400000); // days since 1970 in Taiwan time
const WEEKDAYS = ['weekday.mon', 'weekday.tue', 'weekday.wed', 'weekday.thu', 'weekday.fri', 'weekday.sat', 'weekday.sun'];

function calendar(schedule) {
  const windows = schedule.windows.map((w, index) => ({...w, index, first: dayOf(w.starts_at),
                                                      last: dayOf(new Date(Date.parse(w.ends_at) - 1).toISOString())}));
  const start = new Date(Math.min(...windows.map(w => w.first)) * 86400000);
  const end = new Date(Math.max(...windows.map(w => w.last)) * 86400000);
  const months = [];
  for (let y = start.getUTCFullYear(), m = start.getUTCMonth(); y < end.getUTCFullYear() || (y === end.getUTCFullYear() && m <= end.getUTCMonth()); m === 11 ? (y++, m = 0) : m++) {
    months.push([y, m]);
  }
  return h('div', {class: 'calendar'}, months.map(([year, month]) => {
    const first = Date.UTC(year, month, 1) / 86400000;
    const days = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    const lead = (new Date(Date.UTC(year, month, 1)).getUTCDay() + 6) % 7; // Monday first
    const cells = [...Array(lead).fill(null), ...Array.from({length: days}, (_, i) => first + i)];
    while (cells.length % 7) cells.push(null);
    const weeks = [];
    for (let i = 0; i < cells.length; i += 7) weeks.push(cells.slice(i, i + 7));
    return h('table', {class: 'month'},
      h('caption', {}, t('calendar.month', {year, month: month + 1})),
      h('thead', {}, h('tr', {}, WEEKDAYS.map(d => h('th', {scope: 'col'}, t(d))))),
      h('tbody', {}, weeks.map(week => h('tr', {}, week.map(day => {
        if (day === null) return h('td', {class: 'blank'});
        const open = windows.filter(w => w.first <= day && day <= w.last);
        const label = open.map(w => pick(w.name)).join('、');
        return h('td', {title: label || null},
          h('span', {class: 'day'}, String(day - first + 1)),
          open.map(w => h('span', {class: `mark k${w.index}`, 'aria-hidden': 'true'})),
          label ? h('span', {class: 'visually-hidden'}, label) : null);
      })))));
  }));
}

const localInput = iso => iso.slice(0, 16); // the API gives Taiwan time (+08:00): keep its wall clock

export async function windows(ctx) {
  const [school] = ctx.params;
  const termList = await terms(school);
  if (!ctx.alive()) return;
  if (!termList.length) { replace(ctx.main, h('h1', {tabindex: '-1'}, t('windows.title')), h('p', {class: 'empty'}, t('staff.noTerms'))); return; }
  const chosen = termList.some(x => x.code === sessionStorage.getItem('footprint.term')) ? sessionStorage.getItem('footprint.term') : termList[0].code;
  const schedule = await api.call(`/api/v1/scheduling/schools/${school}/terms/${chosen}`);
  if (!ctx.alive()) return;
  const editable = roles(ctx).includes('school_admin');
  const message = h('p', {class: 'error', role: 'alert'});
  const inputs = {};
  const rows = schedule.windows.map((w, index) => {
    inputs[w.kind] = {
      starts: h('input', {type: 'datetime-local', value: localInput(w.starts_at), disabled: !editable, 'aria-label': `${pick(w.name)} ${t('windows.starts')}`}),
      ends: h('input', {type: 'datetime-local', value: localInput(w.ends_at), disabled: !editable, 'aria-label': `${pick(w.name)} ${t('windows.ends')}`}),
    };
    return {...w, index};
  });
  const save = h('button', {type: 'button', class: 'primary', onclick: async () => {
    message.textContent = '';
    const changed = rows.filter(w => inputs[w.kind].starts.value !== localInput(w.starts_at) || inputs[w.kind].ends.value !== localInput(w.ends_at) || !schedule.configured)
      .map(w => ({kind: w.kind, starts_at: `${inputs[w.kind].starts.value}:00+08:00`, ends_at: `${inputs[w.kind].ends.value}:00+08:00`}));
    try {
      await api.call(`/api/v1/scheduling/schools/${school}/terms/${chosen}`, {method: 'PUT', json: {windows: changed}});
      announce(t('windows.saved'), 'ok');
      windows(ctx);
    } catch (error) { message.textContent = errorText(error); }
  }}, t('windows.save'));
  const ics = h('button', {type: 'button', onclick: async () => {
    try { saveBlob(await api.fetchBlob(`/api/v1/scheduling/schools/${school}/terms/${chosen}/calendar.ics`), `${school}-${chosen}.ics`); }
    catch (error) { message.textContent = errorText(error); }
  }}, t('windows.ics'));
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('windows.title')),
    termPicker(termList, chosen, code => { sessionStorage.setItem('footprint.term', code); windows(ctx); }),
    schedule.configured ? null : h('p', {class: 'notice'}, t('windows.template')),
    table([{label: t('windows.kind'), cell: w => [h('span', {class: `mark k${w.index}`, 'aria-hidden': 'true'}), ' ', pick(w.name)]},
           {label: t('windows.starts'), cell: w => inputs[w.kind].starts},
           {label: t('windows.ends'), cell: w => inputs[w.kind].ends},
           {label: t('windows.state'), cell: w => h('span', {class: `badge ${w.state}`}, t(`windows.state.${w.state}`))}],
          rows, {caption: pick(schedule.term_name)}),
    message,
    h('div', {class: 'actions'}, editable ? save : null, schedule.configured ? ics : null),
    calendar(schedule));
}

// ---- progress statistics and submission status --------------------------------------------------------------

const STATUSES = ['draft', 'submitted', 'returned', 'certified'];
const SUMMARY = ['students', 'students_uploaded', 'upload_rate', 'outcomes_uploaded', 'outcomes_certified',
                 'performances_uploaded', 'counselling_records'];

/** Horizontal bars as a table (readable without the picture): [{label, value, text?, kind?}] */
export function barChart(caption, rows, {max} = {}) {
  const most = max ?? Math.max(1, ...rows.map(r => r.value));
  const chart = h('table', {class: 'bars'}, h('caption', {}, caption),
    h('tbody', {}, rows.map(r => h('tr', {},
      h('th', {scope: 'row'}, r.label),
      h('td', {}, h('span', {class: `bar ${r.kind || ''}`, dataset: {width: String(Math.round((r.value / most) * 100))}})),
      h('td', {class: 'number'}, r.text ?? String(r.value))))));
  // Widths through the CSSOM: the portal's CSP allows no inline style attributes.
  for (const bar of chart.querySelectorAll('.bar')) bar.style.width = `${bar.dataset.width}%`;
  return chart;
}

export const percent = rate => `${Math.round(rate * 1000) / 10}%`;

export function statisticsCell(key, row) {
  return key === 'upload_rate' ? percent(row[key]) : key === 'outcomes_per_student' ? row[key].toFixed(1) : String(row[key]);
}

export async function status(ctx) {
  const [school] = ctx.params;
  const termList = await terms(school);
  if (!ctx.alive()) return;
  if (!termList.length) { replace(ctx.main, h('h1', {tabindex: '-1'}, t('status.title')), h('p', {class: 'empty'}, t('staff.noTerms'))); return; }
  const chosen = termList.some(x => x.code === sessionStorage.getItem('footprint.term')) ? sessionStorage.getItem('footprint.term') : termList[0].code;
  const year = chosen.slice(0, 3);
  const [counts, selections, statistics] = await Promise.all([
    Promise.all(STATUSES.map(s => api.call(`/api/v1/intake/outcomes?term=${chosen}&status=${s}&limit=1`).then(r => r.total))),
    api.call(`/api/v1/intake/schools/${school}/selections/${year}?limit=1`).then(r => r.total).catch(() => null),
    api.call(`/api/v1/intake/schools/${school}/statistics?term=${chosen}`).catch(error => ({error})),
  ]);
  if (!ctx.alive()) return;
  const download = (path, name, label) => h('button', {type: 'button', onclick: event => busy(event.currentTarget, async () => {
    try { saveBlob(await api.fetchBlob(path), name); } catch (error) { announce(errorText(error), 'error'); }
  })}, label);
  const canExport = ['school_admin', 'registrar'].some(r => roles(ctx).includes(r));
  let report = null;
  if (statistics.error) {
    report = h('p', {class: 'notice'}, errorText(statistics.error));
  } else {
    const total = statistics.total;
    report = [
      h('ul', {class: 'summary', id: 'statistics-summary'}, SUMMARY.map(key =>
        h('li', {class: key}, h('span', {}, t(`statistics.${key}`)), h('strong', {}, statisticsCell(key, total))))),
      h('section', {class: 'card'}, barChart(t('statistics.perClass'), statistics.classes.map(c => ({
        label: c.class_name, value: c.upload_rate, text: `${percent(c.upload_rate)}（${c.students_uploaded}/${c.students}）`})), {max: 1}),
        table([{label: t('statistics.class'), cell: c => c.class_name},
               ...['students', 'students_uploaded', 'students_not_uploaded', 'upload_rate', 'outcomes_uploaded',
                   'outcomes_certified', 'performances_uploaded'].map(key => ({label: t(`statistics.${key}`), cell: c => statisticsCell(key, c)})),
               canExport ? {label: t('statistics.portfolios'), cell: c => h('button', {type: 'button', class: 'ghost', onclick: event => busy(event.currentTarget, async () => {
                 try { saveBlob(await api.fetchBlob(`/api/v1/intake/schools/${school}/classes/${encodeURIComponent(c.class_name)}/portfolios.zip`), `portfolios-${school}-${c.class_name}.zip`); }
                 catch (error) { announce(errorText(error), 'error'); }
               })}, t('statistics.zip'))} : null].filter(Boolean),
              statistics.classes, {empty: t('statistics.noClasses')})),
      h('section', {class: 'card'}, statistics.per_day.length
        ? barChart(t('statistics.perDay'), statistics.per_day.slice(-31).map(d => ({
          label: d.date, value: d.outcome_files + d.performance_files})))
        : h('p', {class: 'empty'}, t('statistics.noUploads'))),
    ];
  }
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('status.title')),
    termPicker(termList, chosen, code => { sessionStorage.setItem('footprint.term', code); status(ctx); }),
    report,
    h('section', {class: 'card'}, barChart(t('status.outcomes'), STATUSES.map((s, i) => ({label: t(`status.${s}`), value: counts[i], kind: s})))),
    selections !== null ? h('p', {class: 'lead'}, t('status.selections', {year, n: selections})) : null,
    h('div', {class: 'actions'},
      statistics.error ? null : download(`/api/v1/intake/schools/${school}/statistics.csv?term=${chosen}`, `statistics-${school}-${chosen}.csv`, t('status.download.csv')),
      statistics.error ? null : download(`/api/v1/intake/schools/${school}/statistics.xlsx?term=${chosen}`, `statistics-${school}-${chosen}.xlsx`, t('status.download.xlsx')),
      download(`/api/v1/records/schools/${school}/terms/${chosen}/precheck.csv`, `precheck-${school}-${chosen}.csv`, t('status.precheck'))));
}

// ---- users ---------------------------------------------------------------------------------------------------

const ROLES = ['student', 'subject_teacher', 'homeroom_teacher', 'course_counsellor', 'registrar', 'curriculum',
               'student_affairs', 'counselling_office', 'school_admin'];
const PAGE = 50;

export async function users(ctx) {
  const [school] = ctx.params;
  const state = {role: '', q: '', offset: 0};
  const role = h('select', {id: 'user-role'}, h('option', {value: ''}, t('users.allRoles')),
    ROLES.map(r => h('option', {value: r}, t(`role.${r}`))));
  const q = h('input', {type: 'search', id: 'user-q', maxlength: '40'});
  const results = h('div', {id: 'user-results'});
  const canReset = ['school_admin', 'registrar'].some(r => roles(ctx).includes(r));
  async function load() {
    const query = new URLSearchParams({offset: String(state.offset), limit: String(PAGE)});
    if (state.role) query.set('role', state.role);
    if (state.q) query.set('q', state.q);
    const list = await api.call(`/api/v1/schools/${school}/users?${query}`);
    if (!ctx.alive()) return;
    replace(results,
      table([{label: t('users.username'), cell: u => u.username},
             {label: t('users.name'), cell: u => u.display_name},
             {label: t('users.roles'), cell: u => u.roles.map(r => t(`role.${r}`)).join('、')},
             {label: t('users.class'), cell: u => u.student?.class_name || u.homeroom_class || '—'},
             {label: t('users.state'), cell: u => u.active ? (u.must_change_password ? t('users.mustChange') : t('users.active')) : t('users.inactive')},
             canReset ? {label: t('users.actions'), cell: u => h('button', {type: 'button', class: 'ghost', onclick: async () => {
               if (!confirm(t('users.resetConfirm', {name: u.display_name}))) return;
               try {
                 const reset = await api.call(`/api/v1/users/${u.id}/password-reset`, {method: 'POST'});
                 announce(t('users.resetDone', {name: u.display_name, password: reset.temporary_password}), 'ok');
               } catch (error) { announce(errorText(error), 'error'); }
             }}, t('users.reset'))} : null].filter(Boolean), list.items, {empty: t('users.none')}),
      h('p', {class: 'meta'}, t('users.range', {from: list.total ? state.offset + 1 : 0, to: state.offset + list.items.length, total: list.total})),
      h('div', {class: 'actions'},
        h('button', {type: 'button', disabled: state.offset === 0, onclick: () => { state.offset -= PAGE; load(); }}, t('common.previous')),
        h('button', {type: 'button', disabled: state.offset + PAGE >= list.total, onclick: () => { state.offset += PAGE; load(); }}, t('common.next'))));
  }
  await load();
  if (!ctx.alive()) return;
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('users.title')),
    h('form', {class: 'grid filters', role: 'search', onsubmit: event => {
      event.preventDefault();
      Object.assign(state, {role: role.value, q: q.value.trim(), offset: 0});
      load().catch(error => announce(errorText(error), 'error'));
    }}, field(t('users.role'), role), field(t('users.search'), q), h('button', {type: 'submit'}, t('common.search'))),
    results);
}

// ---- substitute certifiers (代理人) ----------------------------------------------------------------------------

export async function substitutes(ctx) {
  const [school] = ctx.params;
  const [list, teachers] = await Promise.all([
    api.call('/api/v1/certification/substitutes'),
    api.call(`/api/v1/schools/${school}/users?role=subject_teacher&limit=500`),
  ]);
  if (!ctx.alive()) return;
  const options = () => teachers.items.map(u => h('option', {value: u.id}, `${u.display_name}（${u.username}）`));
  const teacher = h('select', {required: true}, options());
  const substitute = h('select', {required: true}, options());
  const today = new Date(Date.now() + TAIPEI).toISOString().slice(0, 10);
  const starts = h('input', {type: 'date', required: true, value: today});
  const ends = h('input', {type: 'date', required: true, value: today});
  const message = h('p', {class: 'error', role: 'alert'});
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('substitutes.title')),
    table([{label: t('substitutes.teacher'), cell: a => a.teacher_name || a.teacher_id},
           {label: t('substitutes.substitute'), cell: a => a.substitute_name || a.substitute_id},
           {label: t('substitutes.period'), cell: a => `${a.starts_on} – ${a.ends_on}`},
           {label: t('substitutes.active'), cell: a => a.active ? t('common.yes') : t('common.no')},
           {label: t('users.actions'), cell: a => h('button', {type: 'button', class: 'ghost', onclick: async () => {
             try { await api.call(`/api/v1/certification/substitutes/${a.id}`, {method: 'DELETE'}); substitutes(ctx); }
             catch (error) { message.textContent = errorText(error); }
           }}, t('substitutes.end'))}], list.items, {empty: t('substitutes.none')}),
    h('form', {class: 'card', onsubmit: async event => {
      event.preventDefault();
      message.textContent = '';
      try {
        await api.call('/api/v1/certification/substitutes', {method: 'POST', json: {
          teacher_id: teacher.value, substitute_id: substitute.value, starts_on: starts.value, ends_on: ends.value}});
        announce(t('substitutes.assigned'), 'ok');
        substitutes(ctx);
      } catch (error) { message.textContent = errorText(error); }
    }}, h('h2', {}, t('substitutes.assign')),
    h('div', {class: 'grid'}, field(t('substitutes.teacher'), teacher), field(t('substitutes.substitute'), substitute),
      field(t('substitutes.starts'), starts), field(t('substitutes.ends'), ends)),
    message, h('button', {type: 'submit', class: 'primary'}, t('substitutes.assign'))));
}
