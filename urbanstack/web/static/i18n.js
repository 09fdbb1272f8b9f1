// Translations: one table per language (i18n/<lang>.json), Vietnamese by default; the
// choice is remembered in localStorage.

import { CITY_TIME_ZONE } from './scales.js';

export const LANGUAGES = ['vi', 'en'];
const DEFAULT_LANGUAGE = 'vi';
const STORAGE_KEY = 'urbanstack.lang';
const LOCALES = { vi: 'vi-VN', en: 'en-GB' };

const tables = {};
const listeners = [];
let current = DEFAULT_LANGUAGE;

/** Fetch every language's table (they are small) and pick the remembered language. */
export async function loadTranslations() {
  await Promise.all(
    LANGUAGES.map(async (lang) => {
      const reply = await fetch(new URL(`i18n/${lang}.json`, import.meta.url));
      tables[lang] = await reply.json();
    }),
  );
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // storage may be disabled: the default language then
  }
  current = LANGUAGES.includes(stored) ? stored : DEFAULT_LANGUAGE;
  document.documentElement.lang = current;
}

export function language() {
  return current;
}

export function locale() {
  return LOCALES[current];
}

/** Switch language, remember it and tell every listener (which re-render their text). */
export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered, still switched
  }
  document.documentElement.lang = lang;
  translateStatic();
  listeners.forEach((fn) => fn(lang));
}

export function onLanguageChange(fn) {
  listeners.push(fn);
}

/** The text for `key` in the current language, `{name}` placeholders filled from params. */
export function t(key, params = {}) {
  const text = tables[current]?.[key] ?? tables[DEFAULT_LANGUAGE]?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? params[name] : whole));
}

/** Whether the table has `key` (for optional labels such as attribute names). */
export function has(key) {
  return key in (tables[current] ?? {});
}

/** Fill elements marked data-i18n="key" (text) and data-i18n-attr="attr:key;attr:key". */
export function translateStatic(root = document) {
  root.querySelectorAll('[data-i18n]').forEach((el) => {
    el.textContent = t(el.dataset.i18n);
  });
  root.querySelectorAll('[data-i18n-attr]').forEach((el) => {
    el.dataset.i18nAttr.split(';').forEach((pair) => {
      const [attr, key] = pair.split(':');
      el.setAttribute(attr.trim(), t(key.trim()));
    });
  });
  document.title = t('app.title');
}

/** The text of a LanguageProperty's languageMap in the current language (or any). */
export function pickLanguage(map) {
  if (map === null || typeof map !== 'object') return map == null ? '' : String(map);
  return map[current] ?? map[DEFAULT_LANGUAGE] ?? map['@none'] ?? Object.values(map)[0] ?? '';
}

const formats = new Map(); // Intl formatters are costly to build: one per locale and kind

function formatter(kind, options, build) {
  const key = `${locale()}|${kind}`;
  if (!formats.has(key)) formats.set(key, build(locale(), options));
  return formats.get(key);
}

export function formatNumber(v, digits = 1) {
  const options = { maximumFractionDigits: digits };
  return formatter(`n${digits}`, options, (l, o) => new Intl.NumberFormat(l, o)).format(v);
}

export function formatPercent(v) {
  const options = { style: 'percent', maximumFractionDigits: 0 };
  return formatter('pct', options, (l, o) => new Intl.NumberFormat(l, o)).format(v);
}

/** An ISO date-time (or a Date) in the city's time zone, short. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const options = { dateStyle: 'short', timeStyle: 'short', timeZone: CITY_TIME_ZONE };
  return formatter('time', options, (l, o) => new Intl.DateTimeFormat(l, o)).format(date);
}
