// A teacher's certification: the queue by course and class, preview and playback, certify, return, bulk.
import {h, replace, field, table, announce, flash, busy, formatTime, formatBytes, saveBlob} from '../dom.js';
import {t} from '../i18n.js';
import * as api from '../api.js';

const CERT = '/api/v1/certification';
const STATES = ['submitted', 'returned', 'certified'];
const FILTER_KEY = 'footprint.queue';

const errorText = api.errorText;

function filters() {
  try { return JSON.parse(sessionStorage.getItem(FILTER_KEY)) || {}; } catch { return {}; }
}

export async function queue(ctx) {
  const chosen = {state: 'submitted', section: '', className: '', ...filters()};
  const query = new URLSearchParams({state: chosen.state, limit: '500'});
  if (chosen.section) query.set('section_id', chosen.section);
  const [list, counts] = await Promise.all([api.call(`${CERT}/queue?${query}`), api.call(`${CERT}/counts`)]);
  if (!ctx.alive()) return;
  const remember = change => { sessionStorage.setItem(FILTER_KEY, JSON.stringify({...chosen, ...filters(), ...change})); queue(ctx); };
  const classes = [...new Set(list.items.map(item => item.class_name).filter(Boolean))].sort();
  const rows = list.items.filter(item => !chosen.className || item.class_name === chosen.className);
  const selected = new Set();
  const bulk = h('button', {type: 'button', class: 'primary', id: 'bulk-certify', disabled: true}, t('queue.bulk', {n: 0}));
  const result = h('p', {role: 'status', id: 'bulk-result'});
  const refreshBulk = () => {
    bulk.disabled = selected.size === 0;
    bulk.textContent = t('queue.bulk', {n: selected.size});
  };
  bulk.addEventListener('click', async () => {
    bulk.disabled = true;
    try {
      const answer = await api.call(`${CERT}/bulk-certify`, {method: 'POST', json: {outcome_ids: [...selected]}});
      announce(t('queue.bulkDone', {certified: answer.certified, skipped: answer.skipped}), 'ok');
      queue(ctx);
    } catch (error) { result.textContent = errorText(error); refreshBulk(); }
  });
  const all = h('input', {type: 'checkbox', id: 'select-all', 'aria-label': t('queue.selectAll'), onchange: () => {
    for (const box of ctx.main.querySelectorAll('input.pick-outcome')) {
      box.checked = all.checked;
      box.checked ? selected.add(box.value) : selected.delete(box.value);
    }
    refreshBulk();
  }});
  const sectionSelect = h('select', {id: 'filter-section', onchange: () => remember({section: sectionSelect.value})},
    h('option', {value: ''}, t('queue.allCourses')),
    counts.sections.map(s => h('option', {value: s.section_id, selected: s.section_id === chosen.section},
      `${s.subject_name} ${s.section_name}（${t('queue.pendingCount', {n: s.pending})}）`)));
  const classSelect = h('select', {id: 'filter-class', onchange: () => remember({className: classSelect.value})},
    h('option', {value: ''}, t('queue.allClasses')),
    classes.map(c => h('option', {value: c, selected: c === chosen.className}, c)));
  const submitted = chosen.state === 'submitted';
  const columns = [
    submitted ? {label: all, cell: item => h('input', {type: 'checkbox', class: 'pick-outcome', value: item.outcome_id,
      'aria-label': t('queue.selectOne', {name: item.student_name || item.student_no || ''}),
      onchange: event => { event.target.checked ? selected.add(item.outcome_id) : selected.delete(item.outcome_id); refreshBulk(); }})} : null,
    {label: t('queue.student'), cell: item => [item.student_name || '—', h('small', {class: 'meta'}, ` ${item.student_no || ''}`)]},
    {label: t('queue.class'), cell: item => item.class_name || '—'},
    {label: t('queue.course'), cell: item => [`${item.subject_name} ${item.section_name}`,
      item.on_behalf_of ? h('span', {class: 'badge substitute'}, t('queue.substitute')) : null]},
    {label: t('queue.brief'), cell: item => item.brief},
    {label: t('queue.files'), cell: item => String(item.files.length)},
    {label: t('queue.submittedAt'), cell: item => formatTime(item.submitted_at)},
    {label: t('queue.open'), cell: item => h('a', {href: `#/teacher/outcomes/${item.outcome_id}`, class: 'button'},
      submitted ? t('queue.review') : t('queue.view'))},
  ].filter(Boolean);

  const homeroom = ctx.me.user.homeroom_class;
  const classZip = homeroom ? h('button', {type: 'button', id: 'class-portfolios', onclick: event => busy(event.currentTarget, async () => {
    const school = ctx.me.school.code;
    try {
      saveBlob(await api.fetchBlob(`/api/v1/intake/schools/${school}/classes/${encodeURIComponent(homeroom)}/portfolios.zip`),
               `portfolios-${school}-${homeroom}.zip`);
    } catch (error) { announce(errorText(error), 'error'); }
  })}, t('queue.classPortfolios', {name: homeroom})) : null;
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('queue.title')),
    h('p', {class: 'lead'}, t('queue.totals', counts.totals)),
    classZip ? h('div', {class: 'actions'}, classZip) : null,
    h('div', {class: 'tabs', role: 'group', 'aria-label': t('queue.state')}, STATES.map(state =>
      h('button', {type: 'button', 'aria-pressed': String(state === chosen.state), onclick: () => remember({state})},
        t(`queue.state.${state}`)))),
    h('div', {class: 'grid filters'}, field(t('queue.course'), sectionSelect), field(t('queue.class'), classSelect)),
    table(columns, rows, {empty: t('queue.empty'), caption: t(`queue.state.${chosen.state}`)}),
    submitted && rows.length ? h('div', {class: 'actions'}, bulk, result) : null);
}

/** Fetch a file with the token and show it in the page: image, PDF, audio or video. */
async function preview(file, panel) {
  replace(panel, h('p', {class: 'loading', role: 'status'}, t('app.loading')));
  try {
    const blob = await api.fetchBlob(`/api/v1/intake/files/${file.file_id}`);
    const url = URL.createObjectURL(new Blob([blob], {type: file.media_type || blob.type}));
    const type = file.media_type || '';
    let viewer;
    if (type.startsWith('image/')) viewer = h('img', {src: url, alt: file.name, class: 'preview-image'});
    else if (type === 'application/pdf') viewer = h('iframe', {src: url, title: file.name, class: 'preview-pdf'});
    else if (type.startsWith('audio/')) viewer = h('audio', {src: url, controls: true, preload: 'metadata', 'aria-label': file.name});
    else if (type.startsWith('video/')) viewer = h('video', {src: url, controls: true, preload: 'metadata', 'aria-label': file.name, class: 'preview-video'});
    else viewer = h('a', {href: url, download: file.name}, file.name);
    viewer.dataset.bytes = String(blob.size); // what arrived, to compare with the recorded size
    replace(panel, h('p', {class: 'meta'}, `${file.name} · ${formatBytes(file.size)}`), viewer);
  } catch (error) {
    replace(panel, h('p', {class: 'error', role: 'alert'}, errorText(error)));
  }
}

export async function outcome(ctx) {
  const [id] = ctx.params;
  const item = await api.call(`${CERT}/outcomes/${id}`);
  if (!ctx.alive()) return;
  const panel = h('div', {class: 'preview', id: 'preview', 'aria-live': 'polite'});
  const message = h('p', {class: 'error', role: 'alert'});
  const reason = h('textarea', {rows: '3', maxlength: '200', required: true, id: 'return-reason-input'});
  const decide = async (path, json) => {
    message.textContent = '';
    try {
      await api.call(`${CERT}/outcomes/${id}/${path}`, {method: 'POST', json});
      flash(path === 'certify' ? t('review.certified') : t('review.returned'));
      ctx.go('#/teacher/queue');
    } catch (error) { message.textContent = errorText(error); }
  };
  const open = item.state === 'submitted';
  replace(ctx.main,
    h('p', {}, h('a', {href: '#/teacher/queue'}, `← ${t('queue.title')}`)),
    h('h1', {tabindex: '-1'}, `${item.subject_name || item.course_code} ${item.section_name || ''}`,
      ' ', h('span', {class: `badge ${item.state}`}, t(`status.${item.state}`))),
    h('p', {class: 'meta'}, `${item.student_name || item.student_id} · ${t('courses.term')} ${item.term} · `,
      t('review.submission', {n: item.submission})),
    h('section', {class: 'card'}, h('h2', {}, t('brief.label')), h('p', {class: 'brief'}, item.brief),
      h('h2', {}, t('files.title')),
      h('ul', {class: 'files'}, item.files.map(file => h('li', {},
        h('span', {class: 'name'}, file.name), h('span', {class: 'meta'}, `${file.media_type} · ${formatBytes(file.size)}`),
        h('button', {type: 'button', onclick: () => preview(file, panel)},
          (file.media_type || '').match(/^(audio|video)\//) ? t('review.play') : t('review.preview'))))),
      panel),
    open ? h('section', {class: 'card decide'},
      h('h2', {}, t('review.decide')),
      h('div', {class: 'actions'},
        h('button', {type: 'button', class: 'primary', id: 'certify', onclick: () => decide('certify', {})}, t('review.certify'))),
      h('form', {onsubmit: event => { event.preventDefault(); decide('return', {reason: reason.value}); }},
        field(t('review.reason'), reason, t('review.reasonHint')),
        h('button', {type: 'submit', class: 'danger', id: 'return'}, t('review.return'))),
      message) : h('p', {class: 'notice'}, item.reason ? t('outcome.reason', {reason: item.reason}) : t('review.decided')),
    h('section', {class: 'card'}, h('h2', {}, t('review.audit')),
      table([{label: t('review.action'), cell: e => t(`audit.${e.action}`)},
             {label: t('review.at'), cell: e => formatTime(e.at)},
             {label: t('review.submissionNo'), cell: e => String(e.submission)},
             {label: t('review.reason'), cell: e => e.reason || ''}], item.audit)));
}

export async function substitutes(ctx) {
  const list = await api.call(`${CERT}/substitutes`);
  if (!ctx.alive()) return;
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('substitutes.mine')),
    h('p', {class: 'lead'}, t('substitutes.mineLead')),
    table([{label: t('substitutes.teacher'), cell: a => a.teacher_name || a.teacher_id},
           {label: t('substitutes.substitute'), cell: a => a.substitute_name || a.substitute_id},
           {label: t('substitutes.period'), cell: a => `${a.starts_on} – ${a.ends_on}`},
           {label: t('substitutes.active'), cell: a => a.active ? t('common.yes') : t('common.no')}],
          list.items, {empty: t('substitutes.none')}));
}
