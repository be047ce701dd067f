// All UI text comes from one dictionary per language: zh-TW first, English second.
import zhTW from './i18n/zh-TW.js';
import en from './i18n/en.js';

export const LANGUAGES = {'zh-TW': zhTW, en};
const KEY = 'footprint.lang';
let lang = LANGUAGES[localStorage.getItem(KEY)] ? localStorage.getItem(KEY) : 'zh-TW';

export function getLang() { return lang; }

export function setLang(next) {
  lang = LANGUAGES[next] ? next : 'zh-TW';
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
}

/** t('brief.count', {n: 3, max: 100}) → the text with {n} and {max} filled in. */
export function t(key, vars = {}) {
  const text = LANGUAGES[lang][key] ?? LANGUAGES['zh-TW'][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** A server-given pair {"zh-TW": …, "en": …} in the current language. */
export function pick(pair) {
  if (!pair) return '';
  return pair[lang] || pair['zh-TW'] || pair.en || '';
}
