// A student's daily work: courses by term and their outcomes, diverse performances, the year's selection (勾選).
import {h, replace, field, announce, busy, formatTime, saveBlob} from '../dom.js';
import {t} from '../i18n.js';
import * as api from '../api.js';
import {briefEditor, uploader, fileList} from '../files.js';

const INTAKE = '/api/v1/intake';
export const CATEGORIES = ['competition', 'licence', 'service_learning', 'group_activity', 'flexible_learning',
                           'workplace_learning', 'other'];

function badge(status) {
  return h('span', {class: `badge ${status}`}, t(`status.${status}`));
}

const errorText = api.errorText;

async function policyOf(me) {
  return api.call(`${INTAKE}/schools/${me.school.code}/policy`);
}

// ---- courses and outcomes ---------------------------------------------------------------------------------

export async function courses(ctx) {
  const school = ctx.me.school.code;
  const [enrolments, terms, outcomes] = await Promise.all([
    api.call(`/api/v1/records/schools/${school}/enrolments?limit=500`),
    api.call(`/api/v1/records/schools/${school}/terms`),
    api.call(`${INTAKE}/outcomes?limit=200`),
  ]);
  if (!ctx.alive()) return;
  const termName = Object.fromEntries(terms.items.map(term => [term.code, term.name]));
  const byTerm = new Map();
  for (const enrolment of enrolments.items) {
    if (!byTerm.has(enrolment.term)) byTerm.set(enrolment.term, []);
    byTerm.get(enrolment.term).push(enrolment);
  }
  const sections = [...byTerm.keys()].sort().reverse().map(term => h('section', {class: 'term'},
    h('h2', {}, termName[term] || term),
    h('ul', {class: 'cards'}, byTerm.get(term).map(enrolment => {
      const mine = outcomes.items.filter(o => o.section_id === enrolment.section_id);
      const start = h('button', {type: 'button', class: 'primary', onclick: async () => {
        start.disabled = true;
        try {
          const created = await api.call(`${INTAKE}/outcomes`, {method: 'POST', json: {section_id: enrolment.section_id}});
          ctx.go(`#/student/outcomes/${created.id}`);
        } catch (error) {
          start.disabled = false;
          announce(errorText(error), 'error');
        }
      }}, t('courses.newOutcome'));
      return h('li', {class: 'card course', dataset: {section: enrolment.section_id}},
        h('h3', {}, enrolment.subject_name || enrolment.course_code),
        h('p', {class: 'meta'}, `${t('courses.code')} ${enrolment.course_code}`,
          enrolment.grade ? ` · ${t('courses.score')} ${enrolment.grade.score ?? '—'}` : ''),
        mine.length ? h('ul', {class: 'outcomes'}, mine.map(outcome => h('li', {},
          h('a', {href: `#/student/outcomes/${outcome.id}`}, outcome.brief || t('courses.untitled')), ' ', badge(outcome.status),
          outcome.status === 'returned' ? h('p', {class: 'reason'}, t('outcome.reason', {reason: outcome.return_reason})) : null)))
          : h('p', {class: 'empty'}, t('courses.noOutcome')),
        enrolment.status === 'active' ? start : h('p', {class: 'meta'}, t('courses.withdrawn')));
    }))));
  const exportAs = ext => h('button', {type: 'button', id: `portfolio-${ext}`, onclick: event => busy(event.currentTarget, async () => {
    try {
      saveBlob(await api.fetchBlob(`${INTAKE}/students/${ctx.me.user.id}/portfolio.${ext}`), `portfolio-${ctx.me.user.username}.${ext}`);
    } catch (error) { announce(errorText(error), 'error'); }
  })}, t(`courses.export.${ext}`));
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('courses.title')),
    sections.length ? sections : h('p', {class: 'empty'}, t('courses.none')),
    h('section', {class: 'card'}, h('h2', {}, t('courses.export')), h('p', {class: 'lead'}, t('courses.exportLead')),
      h('div', {class: 'actions'}, exportAs('pdf'), exportAs('json'))));
}

export async function outcome(ctx) {
  const [id] = ctx.params;
  const [item, policy] = await Promise.all([api.call(`${INTAKE}/outcomes/${id}`), policyOf(ctx.me)]);
  if (!ctx.alive()) return;
  const path = `${INTAKE}/outcomes/${id}`;
  const rerender = () => outcome(ctx);
  const brief = briefEditor(item.brief, {disabled: !item.editable});
  const message = h('p', {class: 'error', role: 'alert', id: 'outcome-error'});

  async function saveBrief() {
    if (!brief.valid()) throw new Error(t('brief.tooLong', {max: 100}));
    if (brief.textarea.value === item.brief) return;
    const saved = await api.call(path, {method: 'PATCH', json: {brief: brief.textarea.value}});
    item.brief = saved.brief;
  }

  const actions = [];
  if (item.editable) {
    actions.push(h('button', {type: 'button', id: 'save-brief', onclick: async () => {
      message.textContent = '';
      try { await saveBrief(); announce(t('outcome.saved'), 'ok'); } catch (error) { message.textContent = errorText(error); }
    }}, t('outcome.saveBrief')));
    actions.push(h('button', {type: 'button', class: 'primary', id: 'submit-outcome', onclick: async () => {
      message.textContent = '';
      try {
        await saveBrief(); // what the student sees in the box is what is sent for certification
        await api.call(`${path}/submit`, {method: 'POST'});
        announce(t('outcome.submitted'), 'ok');
        rerender();
      } catch (error) { message.textContent = errorText(error); }
    }}, item.status === 'returned' ? t('outcome.resubmit') : t('outcome.submit')));
    if (item.status === 'draft') {
      actions.push(h('button', {type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(t('outcome.deleteConfirm'))) return;
        try { await api.call(path, {method: 'DELETE'}); ctx.go('#/student/courses'); }
        catch (error) { message.textContent = errorText(error); }
      }}, t('outcome.delete')));
    }
  }

  replace(ctx.main,
    h('p', {}, h('a', {href: '#/student/courses'}, `← ${t('courses.title')}`)),
    h('h1', {tabindex: '-1'}, item.subject_name || item.course_code, ' ', badge(item.status)),
    h('p', {class: 'meta'}, `${t('courses.term')} ${item.term} · ${t('courses.code')} ${item.course_code}`),
    item.status === 'returned' ? h('div', {class: 'notice returned', role: 'alert', id: 'return-reason'},
      h('strong', {}, t('outcome.returnedTitle')), ' ', t('outcome.reason', {reason: item.return_reason}),
      item.returned_at ? h('span', {class: 'meta'}, ` (${formatTime(item.returned_at)})`) : null) : null,
    item.status === 'submitted' ? h('p', {class: 'notice'}, t('outcome.waiting')) : null,
    item.status === 'certified' ? h('p', {class: 'notice ok'}, t('outcome.certifiedAt', {at: formatTime(item.certified_at)})) : null,
    h('section', {class: 'card'}, brief.element,
      h('h2', {}, t('files.title')),
      fileList(item.files, {editable: item.editable, onRemove: async file => {
        try { await api.call(`${INTAKE}/files/${file.file_id}`, {method: 'DELETE'}); rerender(); }
        catch (error) { message.textContent = errorText(error); }
      }}),
      message,
      h('div', {class: 'actions'}, actions)),
    item.editable ? uploader(path, policy, async () => {
      const fresh = await api.call(path);
      if (!ctx.alive()) return;
      document.getElementById('file-list').replaceWith(fileList(fresh.files, {editable: fresh.editable, onRemove: async file => {
        try { await api.call(`${INTAKE}/files/${file.file_id}`, {method: 'DELETE'}); rerender(); }
        catch (error) { message.textContent = errorText(error); }
      }}));
    }) : null);
}

// ---- diverse performances ---------------------------------------------------------------------------------

async function schoolYears(me) {
  const terms = await api.call(`/api/v1/records/schools/${me.school.code}/terms`);
  const years = [...new Set(terms.items.map(term => term.code.slice(0, 3)))].sort().reverse();
  return years.length ? years : [String(new Date().getFullYear() - 1911 - (new Date().getMonth() < 7 ? 1 : 0))];
}

/**
 * The fields of a performance, for recording one (with its school year) or changing one (without: the year stays).
 * onSave(values) sends them; its failure is shown under the form.
 */
function performanceForm({item = null, years = null, title, button, onSave}) {
  const category = h('select', {required: true}, CATEGORIES.map(c => h('option', {value: c, selected: item?.category === c}, t(`category.${c}`))));
  const year = years ? h('select', {required: true}, years.map(y => h('option', {value: y}, t('selection.year', {year: y})))) : null;
  const name = h('input', {required: true, maxlength: '100', value: item?.name || ''});
  const organiser = h('input', {maxlength: '100', value: item?.organiser || ''});
  const start = h('input', {type: 'date', required: true, value: item?.start_date || ''});
  const end = h('input', {type: 'date', required: true, value: item?.end_date || ''});
  const hours = h('input', {type: 'number', min: '0', max: '2000', step: '0.5', value: String(item?.hours ?? 0)});
  const result = h('input', {maxlength: '100', value: item?.result || ''});
  const brief = briefEditor(item?.brief || '', {label: t('performance.brief')});
  const message = h('p', {class: 'error', role: 'alert'});
  return h('form', {class: 'card', onsubmit: async event => {
    event.preventDefault();
    message.textContent = '';
    if (!brief.valid()) { message.textContent = t('brief.tooLong', {max: 100}); return; }
    const values = {category: category.value, name: name.value, organiser: organiser.value, start_date: start.value,
                    end_date: end.value, hours: Number(hours.value || 0), result: result.value, brief: brief.textarea.value};
    if (year) values.year = year.value;
    try { await onSave(values); } catch (error) { message.textContent = errorText(error); }
  }},
  h('h2', {}, title),
  h('div', {class: 'grid'}, field(t('performance.category'), category), year ? field(t('performance.year'), year) : null,
    field(t('performance.name'), name), field(t('performance.organiser'), organiser),
    field(t('performance.start'), start), field(t('performance.end'), end),
    field(t('performance.hours'), hours), field(t('performance.result'), result)),
  brief.element, message, h('button', {type: 'submit', class: 'primary'}, button));
}

export async function performances(ctx) {
  const years = await schoolYears(ctx.me);
  const list = await api.call(`${INTAKE}/performances?limit=200`);
  if (!ctx.alive()) return;
  const form = performanceForm({years, title: t('performance.new'), button: t('performance.create'), onSave: async values => {
    const created = await api.call(`${INTAKE}/performances`, {method: 'POST', json: values});
    ctx.go(`#/student/performances/${created.id}`);
  }});
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('performances.title')),
    list.items.length ? h('ul', {class: 'cards'}, list.items.map(item => h('li', {class: 'card'},
      h('h3', {}, h('a', {href: `#/student/performances/${item.id}`}, item.name)),
      h('p', {class: 'meta'}, `${t(`category.${item.category}`)} · ${item.start_date} – ${item.end_date} · `,
        t('files.count', {n: item.files.length}))))) : h('p', {class: 'empty'}, t('performances.none')),
    form);
}

export async function performance(ctx) {
  const [id] = ctx.params;
  const path = `${INTAKE}/performances/${id}`;
  const [item, policy] = await Promise.all([api.call(path), policyOf(ctx.me)]);
  if (!ctx.alive()) return;
  const message = h('p', {class: 'error', role: 'alert'});
  const rerender = () => performance(ctx);
  const remove = async file => {
    try { await api.call(`${INTAKE}/files/${file.file_id}`, {method: 'DELETE'}); rerender(); }
    catch (error) { message.textContent = errorText(error); }
  };
  replace(ctx.main,
    h('p', {}, h('a', {href: '#/student/performances'}, `← ${t('performances.title')}`)),
    h('h1', {tabindex: '-1'}, item.name),
    h('dl', {class: 'facts'},
      h('dt', {}, t('performance.category')), h('dd', {}, t(`category.${item.category}`)),
      h('dt', {}, t('performance.year')), h('dd', {}, item.year),
      h('dt', {}, t('performance.organiser')), h('dd', {}, item.organiser || '—'),
      h('dt', {}, t('performance.period')), h('dd', {}, `${item.start_date} – ${item.end_date}`),
      h('dt', {}, t('performance.hours')), h('dd', {}, String(item.hours)),
      h('dt', {}, t('performance.result')), h('dd', {}, item.result || '—'),
      h('dt', {}, t('performance.brief')), h('dd', {}, item.brief || '—')),
    h('section', {class: 'card'}, h('h2', {}, t('files.title')), fileList(item.files, {editable: item.editable, onRemove: remove}),
      message,
      item.editable ? h('button', {type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(t('performance.deleteConfirm'))) return;
        try { await api.call(path, {method: 'DELETE'}); ctx.go('#/student/performances'); }
        catch (error) { message.textContent = errorText(error); }
      }}, t('performance.delete')) : h('p', {class: 'notice'}, t('performance.locked'))),
    item.editable ? uploader(path, policy, async () => {
      const fresh = await api.call(path);
      if (ctx.alive()) document.getElementById('file-list').replaceWith(fileList(fresh.files, {editable: true, onRemove: remove}));
    }) : null,
    item.editable ? performanceForm({item, title: t('performance.edit'), button: t('performance.save'), onSave: async values => {
      await api.call(path, {method: 'PATCH', json: values});
      announce(t('performance.saved'), 'ok');
      rerender();
    }}) : null);
}

// ---- selection (勾選) ---------------------------------------------------------------------------------------

export async function selection(ctx) {
  const years = await schoolYears(ctx.me);
  const chosen = sessionStorage.getItem('footprint.selectionYear');
  const year = years.includes(chosen) ? chosen : years[0];
  const [current, certified, performanceList] = await Promise.all([
    api.call(`${INTAKE}/selections/${year}`),
    api.call(`${INTAKE}/outcomes?status=certified&limit=200`),
    api.call(`${INTAKE}/performances?year=${year}&limit=200`),
  ]);
  if (!ctx.alive()) return;
  const outcomes = certified.items.filter(o => o.term.startsWith(year));
  const picked = {outcomes: new Set(current.outcomes.map(o => o.id)), performances: new Set(current.performances.map(p => p.id))};
  const caps = {outcomes: current.caps.outcomes ?? current.caps.outcome_selection_cap ?? 6,
                performances: current.caps.performances ?? current.caps.performance_selection_cap ?? 10};
  const message = h('p', {class: 'error', role: 'alert', id: 'selection-error'});
  const counters = {outcomes: h('p', {class: 'counter', 'aria-live': 'polite'}),
                    performances: h('p', {class: 'counter', 'aria-live': 'polite'})};
  const save = h('button', {type: 'button', class: 'primary', id: 'save-selection', disabled: current.locked}, t('selection.save'));
  const update = () => {
    let over = false;
    for (const kind of ['outcomes', 'performances']) {
      const n = picked[kind].size;
      counters[kind].textContent = t('selection.count', {n, cap: caps[kind]});
      counters[kind].classList.toggle('over', n > caps[kind]);
      over ||= n > caps[kind];
    }
    save.disabled = current.locked || over;
  };
  const box = (kind, id, label, detail) => {
    const input = h('input', {type: 'checkbox', checked: picked[kind].has(id), disabled: current.locked, id: `pick-${id}`,
                              onchange: () => { input.checked ? picked[kind].add(id) : picked[kind].delete(id); update(); }});
    return h('li', {class: 'pick'}, input, h('label', {for: input.id}, h('strong', {}, label), h('span', {class: 'meta'}, detail)));
  };
  save.addEventListener('click', async () => {
    message.textContent = '';
    try {
      await api.call(`${INTAKE}/selections/${year}`, {method: 'PUT', json: {
        outcome_ids: [...picked.outcomes], performance_ids: [...picked.performances]}});
      announce(t('selection.saved'), 'ok');
    } catch (error) { message.textContent = errorText(error); }
  });
  const yearSelect = h('select', {onchange: () => { sessionStorage.setItem('footprint.selectionYear', yearSelect.value); selection(ctx); }},
    years.map(y => h('option', {value: y, selected: y === year}, t('selection.year', {year: y}))));
  update();
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('selection.title')),
    h('p', {class: 'lead'}, t('selection.lead')),
    field(t('performance.year'), yearSelect),
    current.locked ? h('p', {class: 'notice'}, t('selection.locked')) : null,
    h('section', {class: 'card'}, h('h2', {}, t('selection.outcomes')), counters.outcomes,
      outcomes.length ? h('ul', {class: 'picks'}, outcomes.map(o => box('outcomes', o.id, o.subject_name || o.course_code, o.brief)))
        : h('p', {class: 'empty'}, t('selection.noOutcomes'))),
    h('section', {class: 'card'}, h('h2', {}, t('selection.performances')), counters.performances,
      performanceList.items.length ? h('ul', {class: 'picks'}, performanceList.items.map(p =>
        box('performances', p.id, p.name, t(`category.${p.category}`)))) : h('p', {class: 'empty'}, t('selection.noPerformances'))),
    message, h('div', {class: 'actions'}, save));
}
