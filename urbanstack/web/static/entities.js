// Reading NGSI-LD entities (normalized representation) for display.

import { pickLanguage } from './i18n.js';

const CORE_MEMBERS = new Set(['id', 'type', '@context', 'scope', 'createdAt', 'modifiedAt']);

/** The default instance of an attribute (several datasetIds come as an array). */
export function defaultInstance(attr) {
  if (Array.isArray(attr)) return attr.find((a) => a && !a.datasetId) ?? attr[0];
  return attr;
}

/** The value of one normalized attribute, whatever its NGSI-LD attribute type. */
export function valueOf(attr) {
  const a = defaultInstance(attr);
  if (a === null || typeof a !== 'object') return a;
  switch (a.type) {
    case 'LanguageProperty':
      return a.languageMap;
    case 'Relationship':
      return a.object;
    case 'VocabProperty':
      return a.vocab;
    case 'ListProperty':
      return a.valueList;
    case 'JsonProperty':
      return a.json;
    default:
      return 'value' in a ? a.value : a;
  }
}

/** The names of an entity's attributes (not id, type, scope, system attributes). */
export function attributeNames(entity) {
  return Object.keys(entity).filter((k) => !CORE_MEMBERS.has(k));
}

/** attribute → value, as keyValues would give it. */
export function keyValues(entity) {
  const kv = {};
  for (const name of attributeNames(entity)) kv[name] = valueOf(entity[name]);
  return kv;
}

/** The entity's name in the current language, else the last part of its id. */
export function displayName(entity) {
  const name = entity.name ? valueOf(entity.name) : null;
  if (name && typeof name === 'object') return pickLanguage(name);
  if (name) return String(name);
  return entity.id.split(':').pop();
}

/** A GeoJSON geometry of the entity's location, or null. */
export function geometryOf(entity) {
  const value = entity.location ? valueOf(entity.location) : null;
  return value && typeof value === 'object' && value.type ? value : null;
}
