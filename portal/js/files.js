// Files as intake takes them: the brief counted as the server counts it, the type and size checked before a
// byte is sent (the server decides by content and answers with its own message after), uploads with progress.
import {h, replace, formatBytes} from './dom.js';
import {t} from './i18n.js';
import * as api from './api.js';

export const BRIEF_MAX = 100;
// Python's str.strip() whitespace: intake strips the brief, then pydantic counts code points (not UTF-16 units).
const PY_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const EDGE_SPACE = new RegExp(`^[${PY_WHITESPACE}]+|[${PY_WHITESPACE}]+$`, 'g');

export function briefLength(text) {
  return [...text.replace(EDGE_SPACE, '')].length;
}

const KINDS = {pdf: 'document', jpg: 'document', jpeg: 'document', png: 'document', mp3: 'media', mp4: 'media'};
export const ACCEPT = Object.keys(KINDS).map(ext => `.${ext}`).join(',');

/** The problem with a file before uploading it (by extension and size), or null. */
export function precheck(file, policy) {
  const ext = (file.name.split('.').pop() || '').toLowerCase();
  const kind = file.name.includes('.') ? KINDS[ext] : undefined;
  if (!kind) return t('upload.typeNotAllowed');
  if (file.size === 0) return t('upload.empty');
  const limit = kind === 'document' ? policy.document_limit_bytes : policy.media_limit_bytes;
  if (file.size > limit) return t('upload.tooLarge', {size: formatBytes(file.size), limit: formatBytes(limit)});
  return null;
}

function uploadKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
}

/** A brief editor with a live counter; returns {element, textarea, valid()}. */
export function briefEditor(value, {label, disabled = false} = {}) {
  const textarea = h('textarea', {rows: '3', value, disabled, id: 'brief'});
  const count = h('p', {class: 'counter', id: 'brief-count', 'aria-live': 'polite'});
  const update = () => {
    const n = briefLength(textarea.value);
    count.textContent = t('brief.count', {n, max: BRIEF_MAX});
    count.classList.toggle('over', n > BRIEF_MAX);
    textarea.setAttribute('aria-invalid', n > BRIEF_MAX ? 'true' : 'false');
  };
  textarea.addEventListener('input', update);
  textarea.setAttribute('aria-describedby', 'brief-count');
  update();
  const element = h('div', {class: 'field'}, h('label', {for: 'brief'}, label || t('brief.label')), textarea, count);
  return {element, textarea, valid: () => briefLength(textarea.value) <= BRIEF_MAX};
}

/**
 * Drag-and-drop (or pick) files and upload each with its own progress bar.
 * itemPath: /api/v1/intake/outcomes/<id> or …/performances/<id>; onUploaded(file) after each success.
 */
export function uploader(itemPath, policy, onUploaded) {
  const input = h('input', {type: 'file', multiple: true, accept: ACCEPT, id: 'file-input', class: 'visually-hidden'});
  const rows = h('ul', {class: 'uploads', 'aria-label': t('upload.listLabel')});
  const zone = h('div', {class: 'dropzone', id: 'dropzone'},
    h('p', {}, t('upload.dropHere')),
    input, // before its label: CSS shows the keyboard focus of the (visually hidden) input on the label
    h('label', {for: 'file-input', class: 'button'}, t('upload.choose')),
    h('p', {class: 'hint'}, t('upload.rules', {doc: formatBytes(policy.document_limit_bytes),
                                                media: formatBytes(policy.media_limit_bytes)})));
  const start = files => { for (const file of files) send(file); };
  input.addEventListener('change', () => { start([...input.files]); input.value = ''; });
  zone.addEventListener('dragover', event => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', event => {
    event.preventDefault();
    zone.classList.remove('over');
    start([...event.dataTransfer.files]);
  });

  async function send(file) {
    const bar = h('progress', {max: '100', value: '0', 'aria-label': t('upload.progressOf', {name: file.name})});
    const state = h('span', {class: 'state'}, t('upload.waiting'));
    const row = h('li', {class: 'upload', dataset: {name: file.name}},
      h('span', {class: 'name'}, file.name), h('span', {class: 'size'}, formatBytes(file.size)), bar, state);
    rows.append(row);
    const problem = precheck(file, policy);
    if (problem) {
      row.classList.add('failed');
      bar.remove();
      replace(state, h('span', {role: 'alert'}, problem));
      return;
    }
    try {
      const stored = await api.upload(`${itemPath}/files/${uploadKey()}`, file, {
        headers: {'X-File-Name': encodeURIComponent(file.name), 'Content-Type': 'application/octet-stream'},
        onProgress: (sent, total) => {
          const percent = Math.floor((sent / (total || 1)) * 100);
          bar.value = percent;
          state.textContent = t('upload.percent', {percent});
        },
      });
      bar.value = 100;
      row.classList.add('done');
      state.textContent = t('upload.done');
      onUploaded(stored);
    } catch (error) {
      row.classList.add('failed');
      bar.remove(); // a full bar next to a refusal would say the opposite of what happened
      replace(state, h('span', {role: 'alert'}, api.errorText(error)));
    }
  }

  return h('section', {class: 'uploader', 'aria-labelledby': 'upload-title'},
    h('h2', {id: 'upload-title'}, t('upload.title')), zone, rows);
}

/** The files of an item, with removal while the item is editable. */
export function fileList(files, {editable, onRemove}) {
  if (!files.length) return h('p', {class: 'empty', id: 'file-list'}, t('files.none'));
  return h('ul', {class: 'files', id: 'file-list'}, files.map(file => h('li', {},
    h('span', {class: 'name'}, file.name),
    h('span', {class: 'meta'}, `${file.media_type} · ${formatBytes(file.size)}`),
    editable ? h('button', {type: 'button', class: 'ghost', 'aria-label': t('files.removeLabel', {name: file.name}),
                            onclick: () => onRemove(file)}, t('files.remove')) : null)));
}
