// The API client: tokens, JSON calls, streamed uploads with progress, downloads as blobs.
// The access token lives in memory only; the refresh token in sessionStorage (this tab, until it closes), so a
// reload signs in again through /api/v1/auth/refresh without asking for the password.
import {getLang, t} from './i18n.js';

const REFRESH_KEY = 'footprint.refresh';
let accessToken = null;
let refreshing = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || 'http_error';
  }

  /** The server's message in the current language, with the field messages it gave. */
  localized() {
    if (this.code === 'network_error') return t('error.network');
    const lang = getLang();
    if (!this.problem.message) return t('error.http', {status: this.status});
    const main = this.problem.message?.[lang] || this.problem.message?.en || this.message;
    const details = (this.problem.errors || []).map(e => e.message?.[lang] || e.message?.en).filter(Boolean);
    if (!details.length) return main;
    return lang === 'en' ? `${main} (${details.join('; ')})` : `${main}（${details.join('；')}）`;
  }
}

/** What to tell the user about a failure: the server's message in the current language, else the error's own. */
export function errorText(error) {
  return error instanceof ApiError ? error.localized() : (error?.message || String(error));
}

export function setSignedOutHandler(handler) { onSignedOut = handler; }
export function hasSession() { return Boolean(accessToken || sessionStorage.getItem(REFRESH_KEY)); }

function keep(tokens) {
  accessToken = tokens.access_token;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  return tokens;
}

export function forget() {
  accessToken = null;
  sessionStorage.removeItem(REFRESH_KEY);
}

async function problemOf(response) {
  try { return await response.json(); } catch { return null; }
}

export async function signIn(school, username, password) {
  const response = await fetch('/api/v1/auth/login', {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({school, username, password}),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return keep(await response.json());
}

/** One refresh at a time: refresh tokens rotate, so two concurrent refreshes would revoke each other. */
export function refresh() {
  refreshing ||= (async () => {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (!token) throw new ApiError(401, {code: 'unauthenticated'});
    const response = await fetch('/api/v1/auth/refresh', {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({refresh_token: token}),
    });
    if (!response.ok) {
      forget();
      throw new ApiError(response.status, await problemOf(response));
    }
    return keep(await response.json());
  })().finally(() => { refreshing = null; });
  return refreshing;
}

export async function signOut() {
  const token = sessionStorage.getItem(REFRESH_KEY);
  try {
    if (accessToken) await call('/api/v1/auth/logout', {method: 'POST', json: token ? {refresh_token: token} : {}});
  } catch { /* signing out locally is what matters */ }
  forget();
}

async function authorized(send) {
  if (!accessToken) await refresh();
  let response = await send(accessToken);
  if (response.status === 401 && sessionStorage.getItem(REFRESH_KEY)) {
    try { await refresh(); } catch (error) { onSignedOut(); throw error; }
    response = await send(accessToken);
  }
  if (response.status === 401) { forget(); onSignedOut(); }
  return response;
}

/** A JSON call; resolves to the parsed body (null for 204), rejects with ApiError. */
export async function call(path, {method = 'GET', json, body, headers = {}} = {}) {
  const response = await authorized(token => fetch(path, {
    method,
    headers: {...headers, ...(json !== undefined ? {'Content-Type': 'application/json'} : {}), Authorization: `Bearer ${token}`},
    body: json !== undefined ? JSON.stringify(json) : body,
  }));
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/** A download (file, CSV, calendar) as a Blob, fetched with the token. */
export async function fetchBlob(path) {
  const response = await authorized(token => fetch(path, {headers: {Authorization: `Bearer ${token}`}}));
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.blob();
}

/**
 * Send a file as the raw request body with XMLHttpRequest, whose upload events give the progress that fetch
 * cannot. onProgress(sentBytes, totalBytes). Resolves to the parsed JSON answer, rejects with ApiError.
 */
export async function upload(path, file, {method = 'PUT', headers = {}, onProgress = () => {}} = {}) {
  if (!accessToken) await refresh();
  const attempt = () => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.setRequestHeader('Authorization', `Bearer ${accessToken}`);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = event => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, {code: 'network_error'}));
    xhr.send(file);
  });
  try {
    return await attempt();
  } catch (error) {
    if (error.status !== 401) throw error;
    await refresh(); // an expired access token: once more with a fresh one (the upload key makes it idempotent)
    return attempt();
  }
}
