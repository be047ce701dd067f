// Small DOM helpers: the portal builds its elements with h() instead of a framework.

/** h('button', {class: 'primary', onclick: fn, 'aria-label': '…'}, 'text', child, …) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'value') el.value = value; // a property: a textarea has no value attribute
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key in el && typeof value !== 'string') el[key] = value; // value, checked, disabled as properties
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldCounter = 0;
/** A labelled form field: the label is tied to the control so screen readers and clicks find it. */
export function field(labelText, control, hint) {
  control.id ||= `f${++fieldCounter}`;
  const parts = [h('label', {for: control.id}, labelText), control];
  if (hint) {
    const hintEl = h('small', {class: 'hint', id: `${control.id}-hint`}, hint);
    control.setAttribute('aria-describedby', hintEl.id);
    parts.push(hintEl);
  }
  return h('div', {class: 'field'}, parts);
}

/** A table from column definitions [{label, cell: row => node|string}] */
export function table(columns, rows, {caption, empty} = {}) {
  if (!rows.length && empty) return h('p', {class: 'empty'}, empty);
  return h('div', {class: 'table-wrap'},
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map(c => h('th', {scope: 'col'}, c.label)))),
      h('tbody', {}, rows.map(row => h('tr', {}, columns.map(c => h('td', {'data-label': typeof c.label === 'string' ? c.label : false}, c.cell(row))))))));
}

/** Politely tell assistive technology what just happened (and show it). */
export function announce(message, kind = 'info') {
  const region = document.getElementById('status');
  region.className = `status ${kind}`;
  region.textContent = message;
}

let pending = null;
/** A message for the next page (e.g. "certified" shown on the queue the teacher returns to). */
export function flash(message, kind = 'ok') { pending = {message, kind}; }

/** On every page change: show the flashed message, or clear the previous page's. */
export function showFlash() {
  const shown = pending;
  pending = null;
  announce(shown ? shown.message : '', shown ? shown.kind : 'info');
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Taiwan time for display, whatever the device's zone. */
export function formatTime(iso, withTime = true) {
  if (!iso) return '';
  const options = {timeZone: 'Asia/Taipei', year: 'numeric', month: '2-digit', day: '2-digit'};
  if (withTime) Object.assign(options, {hour: '2-digit', minute: '2-digit', hour12: false});
  return new Intl.DateTimeFormat(document.documentElement.lang || 'zh-TW', options).format(new Date(iso));
}

/** Run a download (or other slow work) from a button: disabled and marked busy until it ends. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try { return await work(); } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/** Save a Blob as a file the user downloads. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h('a', {href: url, download: name});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
