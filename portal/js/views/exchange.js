// The central submission exchange: staff submit a term or a school year, follow its packages, answer disputes and
// send corrections, confirm the receipts for the school or for a student; students read their 收訖明細 (receipts),
// confirm them (收訖明細確認) or raise a dispute on a row.
import {h, replace, field, table, announce, formatTime} from '../dom.js';
import {t} from '../i18n.js';
import * as api from '../api.js';

const KINDS = ['cadres', 'course_records', 'outcomes', 'performances'];
const base = school => `/api/v1/exchange/schools/${school}/submissions`;
const errorText = api.errorText;
const UNSETTLED = ['open', 'correcting'];

function submissionName(s) {
  return t(`exchange.scope.${s.scope}`, {term: s.term, year: s.year});
}

// ---- students: receipts and disputes -------------------------------------------------------------------------

/** Names for receipt rows: the student's own enrolments, outcomes and performances by id. */
async function rowNames() {
  const names = {};
  const [outcomes, performances] = await Promise.all([
    api.call('/api/v1/intake/outcomes?limit=200').catch(() => ({items: []})),
    api.call('/api/v1/intake/performances?limit=200').catch(() => ({items: []})),
  ]);
  for (const o of outcomes.items) { names[o.id] = `${o.subject_name} · ${o.brief}`; names[o.section_id] ||= o.subject_name; }
  for (const p of performances.items) names[p.id] = p.name;
  return names;
}

export async function receipts(ctx) {
  const school = ctx.me.school.code;
  const submissions = (await api.call(base(school))).items;
  const names = ctx.me.user.receipts_only ? {} : await rowNames();
  const enrolments = ctx.me.user.receipts_only ? {items: []}
    : await api.call(`/api/v1/records/schools/${school}/enrolments?limit=500`).catch(() => ({items: []}));
  for (const e of enrolments.items) names[e.id] = `${e.subject_name}（${e.course_code}）`;
  const sections = [];
  const schedules = {};
  for (const submission of submissions) {
    const [list, disputes] = await Promise.all([
      api.call(`${base(school)}/${submission.submission_id}/receipts?student_id=${ctx.me.user.id}&limit=500`),
      api.call(`${base(school)}/${submission.submission_id}/disputes`),
    ]);
    if (!list.items.length) continue;
    // The latest version holding rows of theirs: what a confirmation covers.
    const receipt = list.items.reduce((a, b) => (b.version > a.version ? b : a));
    schedules[submission.term] ||= api.call(`/api/v1/scheduling/schools/${school}/terms/${submission.term}`).catch(() => null);
    const windowClosed = windowReason(await schedules[submission.term]);
    const disputed = new Map(disputes.items.map(d => [`${d.kind}:${d.row_key}`, d]));
    const kinds = KINDS.filter(kind => receipt[kind]).map(kind => {
      const rows = receipt[kind].rows;
      return h('div', {class: 'receipt-kind'},
        h('h3', {}, t(`exchange.kind.${kind}`), ' ',
          h('span', {class: 'meta'}, t('exchange.receivedRejected', {received: receipt[kind].received, rejected: receipt[kind].rejected}))),
        table([{label: t('exchange.item'), cell: r => names[r.key] || r.key},
               {label: t('exchange.rowStatus'), cell: r => h('span', {class: `badge ${r.status === 'received' ? 'certified' : 'returned'}`},
                 t(`exchange.row.${r.status}`), r.reason ? ` ${r.reason}` : '')},
               {label: t('exchange.dispute'), cell: r => disputeCell(ctx, submission, receipt, kind, r, disputed.get(`${kind}:${r.key}`))}],
              rows, {empty: t('exchange.noRows')}));
    });
    sections.push(h('section', {class: 'card', dataset: {submission: submission.submission_id}},
      h('h2', {}, submissionName(submission), ' ', h('span', {class: 'meta'}, t('exchange.version', {n: receipt.version}))),
      confirmBlock(ctx, submission, receipt, disputes.items.some(d => UNSETTLED.includes(d.state)), windowClosed),
      kinds));
  }
  if (!ctx.alive()) return;
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('exchange.receiptsTitle')),
    h('p', {class: 'lead'}, t('exchange.receiptsLead')),
    sections.length ? sections : h('p', {class: 'empty'}, t('exchange.noReceipts')));
}

/** Why the receipt confirmation window does not allow it now (null: open, or no window set — the API decides). */
function windowReason(schedule) {
  const w = schedule?.configured && schedule.windows.find(x => x.kind === 'receipt_confirmation');
  if (!w || w.state === 'open') return null;
  return t('exchange.confirmReason.window', {starts: formatTime(w.starts_at), ends: formatTime(w.ends_at)});
}

/** A student's confirmation of their latest receipt: its state, or the button (disabled with the reason why). */
function confirmBlock(ctx, submission, receipt, unsettled, windowClosed) {
  const done = receipt.confirmed;
  if (done) {
    return h('p', {class: 'confirmation', dataset: {confirmed: 'true'}},
      h('span', {class: 'badge certified'}, t('exchange.confirmed')), ' ',
      t(done.on_behalf ? 'exchange.confirmedOnBehalf' : 'exchange.confirmedAt', {at: formatTime(done.at), n: done.version}));
  }
  const reason = submission.state === 'final' ? t('exchange.confirmReason.final')
    : unsettled ? t('exchange.confirmReason.disputes') : windowClosed;
  const reasonId = `confirm-reason-${submission.submission_id}`;
  const button = h('button', {type: 'button', class: 'primary', disabled: Boolean(reason),
                              'aria-describedby': reason ? reasonId : null, onclick: async () => {
    button.disabled = true;
    try {
      await api.call(`${base(ctx.me.school.code)}/${submission.submission_id}/confirmations`, {method: 'POST', json: {}});
      announce(t('exchange.confirmDone'), 'ok');
      receipts(ctx);
    } catch (error) { button.disabled = false; announce(errorText(error), 'error'); }
  }}, t('exchange.confirm'));
  return h('div', {class: 'actions confirmation'}, button, reason ? h('p', {class: 'meta', id: reasonId}, reason) : null);
}

function disputeCell(ctx, submission, receipt, kind, row, dispute) {
  if (dispute) {
    return h('span', {}, h('span', {class: 'badge'}, t(`exchange.disputeState.${dispute.state}`)),
      dispute.resolution ? h('small', {class: 'meta'}, ` ${dispute.resolution.reason}`) : null);
  }
  if (submission.state === 'final') return '';
  const reason = h('input', {maxlength: '500', required: true, 'aria-label': t('exchange.disputeReason')});
  const form = h('form', {class: 'inline', hidden: true, onsubmit: async event => {
    event.preventDefault();
    try {
      await api.call(`${base(ctx.me.school.code)}/${submission.submission_id}/disputes`, {method: 'POST', json: {
        student_id: receipt.student_id, kind, row_key: row.key, reason: reason.value, version: receipt.version}});
      announce(t('exchange.disputeRaised'), 'ok');
      receipts(ctx);
    } catch (error) { announce(errorText(error), 'error'); }
  }}, reason, h('button', {type: 'submit'}, t('exchange.send')));
  const open = h('button', {type: 'button', class: 'ghost', onclick: () => { form.hidden = false; open.hidden = true; reason.focus(); }},
    t('exchange.raise'));
  return h('span', {}, open, form);
}

// ---- staff: submissions ----------------------------------------------------------------------------------------

export async function submissions(ctx) {
  const [school] = ctx.params;
  const [list, terms] = await Promise.all([api.call(base(school)),
                                           api.call(`/api/v1/records/schools/${school}/terms`)]);
  if (!ctx.alive()) return;
  const canSubmit = ['school_admin', 'registrar'].some(r => ctx.me.user.roles.includes(r));
  const scope = h('select', {id: 'submission-scope'}, ['term', 'year'].map(s => h('option', {value: s}, t(`exchange.scopeName.${s}`))));
  const term = h('select', {id: 'submission-term'}, terms.items.map(x => h('option', {value: x.code}, x.name)));
  const message = h('p', {class: 'error', role: 'alert'});
  replace(ctx.main, h('h1', {tabindex: '-1'}, t('exchange.title')),
    table([{label: t('exchange.submission'), cell: s => h('a', {href: `#/school/${school}/submissions/${encodeURIComponent(s.submission_id)}`}, submissionName(s))},
           {label: t('exchange.state'), cell: s => h('span', {class: `badge ${s.state === 'final' ? 'certified' : 'submitted'}`}, t(`exchange.submissionState.${s.state}`))},
           {label: t('exchange.requestedAt'), cell: s => formatTime(s.created_at)}],
          list.items, {empty: t('exchange.none')}),
    canSubmit ? h('form', {class: 'card', onsubmit: async event => {
      event.preventDefault();
      message.textContent = '';
      if (scope.value === 'year' && !confirm(t('exchange.yearConfirm'))) return;
      try {
        const created = await api.call(base(school), {method: 'POST', json: {scope: scope.value, term: term.value}});
        ctx.go(`#/school/${school}/submissions/${encodeURIComponent(created.submission_id)}`);
      } catch (error) { message.textContent = errorText(error); }
    }}, h('h2', {}, t('exchange.request')),
      h('div', {class: 'grid'}, field(t('exchange.scopeLabel'), scope, t('exchange.scopeHint')), field(t('staff.term'), term)),
      message, h('button', {type: 'submit', class: 'primary'}, t('exchange.requestButton'))) : null);
}

export async function submission(ctx) {
  const [school, sid] = ctx.params;
  const path = `${base(school)}/${encodeURIComponent(sid)}`;
  const [detail, receiptList, disputes, people, enrolments] = await Promise.all([
    api.call(path), api.call(`${path}/receipts?limit=500`), api.call(`${path}/disputes`),
    api.call(`/api/v1/schools/${school}/users?role=student&limit=500`).catch(() => ({items: []})),
    api.call(`/api/v1/records/schools/${school}/enrolments?limit=1000`).catch(() => ({items: []})),
  ]);
  if (!ctx.alive()) return;
  // A course record's row key is its enrolment: name it by its course (other kinds show their key).
  const rowName = Object.fromEntries(enrolments.items.map(e => [e.id, `${e.subject_name || ''}（${e.course_code}）`]));
  const name = Object.fromEntries(people.items.map(u => [u.id, `${u.display_name}（${u.student?.student_no || u.username}）`]));
  const roles = ctx.me.user.roles;
  const canSubmit = ['school_admin', 'registrar'].some(r => roles.includes(r));
  const open = detail.state === 'open';
  const openDisputes = disputes.items.filter(d => d.state === 'open');
  const confirmations = detail.confirmations || {students: 0, confirmed: 0, school: null};
  const latestOf = {};
  for (const r of receiptList.items) latestOf[r.student_id] = Math.max(latestOf[r.student_id] || 0, r.version);
  const packages = detail.packages || [];
  const schoolReason = packages.some(p => ['waiting', 'building', 'ready'].includes(p.state)) ? t('exchange.confirmSchoolReason.busy')
    : !packages.some(p => p.state === 'received') ? t('exchange.confirmSchoolReason.nothing')
    : detail.open_disputes ? t('exchange.confirmSchoolReason.disputes') : null;
  const message = h('p', {class: 'error', role: 'alert'});
  const act = async (url, json, done) => {
    message.textContent = '';
    try { await api.call(url, {method: 'POST', json}); announce(done, 'ok'); submission(ctx); }
    catch (error) { message.textContent = errorText(error); }
  };
  const rejectCell = d => {
    if (d.state !== 'open' || !canSubmit || !open) return d.resolution ? d.resolution.reason : '';
    const reason = h('input', {maxlength: '500', required: true, 'aria-label': t('exchange.rejectReason')});
    return h('form', {class: 'inline', onsubmit: event => {
      event.preventDefault();
      act(`${path}/disputes/${d.dispute_id}/reject`, {reason: reason.value}, t('exchange.rejected'));
    }}, reason, h('button', {type: 'submit', class: 'danger'}, t('exchange.reject')));
  };
  const confirmedCell = r => {
    if (r.confirmed) {
      return h('span', {dataset: {confirmed: 'true'}},
        h('span', {class: 'badge certified'}, t(r.confirmed.on_behalf ? 'exchange.confirmedByStaff' : 'exchange.confirmedByStudent')),
        ' ', formatTime(r.confirmed.at));
    }
    if (!open || !canSubmit || latestOf[r.student_id] !== r.version) return t('exchange.notConfirmed');
    return h('span', {}, t('exchange.notConfirmed'), ' ', h('button', {type: 'button', class: 'ghost',
      'aria-label': t('exchange.confirmOnBehalfOf', {name: name[r.student_id] || r.student_id}),
      onclick: () => act(`${path}/confirmations`, {student_id: r.student_id}, t('exchange.confirmDone'))},
    t('exchange.confirmOnBehalf')));
  };
  const schoolConfirmation = confirmations.school;
  const schoolReasonId = 'confirm-school-reason';
  const confirmSchool = open && canSubmit && !schoolConfirmation ? h('div', {class: 'actions'},
    h('button', {type: 'button', class: 'primary', id: 'confirm-school', disabled: Boolean(schoolReason),
                 'aria-describedby': schoolReason ? schoolReasonId : null,
                 onclick: () => act(`${path}/confirmations`, {}, t('exchange.confirmSchoolDone'))}, t('exchange.confirmSchool')),
    schoolReason ? h('p', {class: 'meta', id: schoolReasonId}, schoolReason) : null) : null;
  replace(ctx.main,
    h('p', {}, h('a', {href: `#/school/${school}/submissions`}, `← ${t('exchange.title')}`)),
    h('h1', {tabindex: '-1'}, submissionName(detail), ' ',
      h('span', {class: `badge ${open ? 'submitted' : 'certified'}`}, t(`exchange.submissionState.${detail.state}`))),
    h('h2', {}, t('exchange.packages')),
    table([{label: t('exchange.versionLabel'), cell: p => String(p.version)},
           {label: t('exchange.state'), cell: p => h('span', {class: `badge ${p.state === 'received' ? 'certified' : p.state === 'failed' ? 'returned' : 'submitted'}`, dataset: {state: p.state}}, t(`exchange.packageState.${p.state}`))},
           {label: t('exchange.students'), cell: p => String(p.students)},
           {label: t('exchange.rows'), cell: p => KINDS.filter(k => p.rows[k] !== undefined).map(k => `${t(`exchange.kind.${k}`)} ${p.rows[k]}`).join('、')},
           {label: t('exchange.rejectedRows'), cell: p => String(p.rejected_rows)},
           {label: t('exchange.receivedAt'), cell: p => p.received_at ? formatTime(p.received_at) : (p.last_error || '')}],
          detail.packages || []),
    h('h2', {}, t('exchange.receipts')),
    h('p', {id: 'confirmation-summary'}, t('exchange.confirmedCount', {confirmed: confirmations.confirmed, students: confirmations.students}),
      ' ', schoolConfirmation ? h('span', {}, h('span', {class: 'badge certified'}, t('exchange.schoolConfirmedBadge')), ' ',
        t('exchange.schoolConfirmed', {n: schoolConfirmation.version, at: formatTime(schoolConfirmation.at)}))
        : t('exchange.schoolNotConfirmed')),
    confirmSchool,
    table([{label: t('queue.student'), cell: r => name[r.student_id] || r.student_id},
           {label: t('exchange.versionLabel'), cell: r => String(r.version)},
           ...KINDS.map(k => ({label: t(`exchange.kind.${k}`), cell: r => r[k] ? t('exchange.receivedRejected', {received: r[k].received, rejected: r[k].rejected}) : '—'})),
           {label: t('exchange.confirmation'), cell: confirmedCell}],
          receiptList.items, {empty: t('exchange.noReceipts')}),
    h('h2', {}, t('exchange.disputes')),
    table([{label: t('queue.student'), cell: d => name[d.student_id] || d.student_id},
           {label: t('exchange.kindLabel'), cell: d => t(`exchange.kind.${d.kind}`)},
           {label: t('exchange.item'), cell: d => rowName[d.row_key] || d.row_key},
           {label: t('exchange.disputeReason'), cell: d => d.reason},
           {label: t('exchange.state'), cell: d => t(`exchange.disputeState.${d.state}`)},
           {label: t('exchange.answer'), cell: rejectCell}],
          disputes.items, {empty: t('exchange.noDisputes')}),
    message,
    open && canSubmit ? h('div', {class: 'actions'},
      h('button', {type: 'button', id: 'send-correction', onclick: () => act(`${path}/corrections`,
        {dispute_ids: openDisputes.map(d => d.dispute_id)}, t('exchange.correctionSent'))}, t('exchange.correction')),
      roles.includes('school_admin') ? h('button', {type: 'button', class: 'danger', onclick: () => {
        if (confirm(t('exchange.finalConfirm'))) act(`${path}/final`, undefined, t('exchange.finalised'));
      }}, t('exchange.final')) : null) : null);
}
