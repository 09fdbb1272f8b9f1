// How attribute values are shown: units, percentages, language maps, opening hours.

import { formatNumber, formatPercent, formatTime, has, pickLanguage, t } from './i18n.js';
import { defaultInstance, valueOf } from './entities.js';

const FRACTIONS = new Set(['relativeHumidity', 'occupancy']);
const ALL_DAYS = 7;

/** The attribute's label in the current language (its name when the table has none). */
export function attributeLabel(name) {
  return has(`attr.${name}`) ? t(`attr.${name}`) : name;
}

/** The unit of a number: its unitCode in words, or a known unit of the attribute. */
export function unitLabel(name, unitCode) {
  if (unitCode) return has(`unit.${unitCode}`) ? t(`unit.${unitCode}`) : unitCode;
  return has(`unit.attr.${name}`) ? t(`unit.attr.${name}`) : '';
}

function openingHours(spec) {
  return spec
    .map((s) => {
      const hours = `${(s.opens ?? '').slice(0, 5)}–${(s.closes ?? '').slice(0, 5)}`;
      const days = Array.isArray(s.dayOfWeek) ? s.dayOfWeek : [];
      if (!days.length || days.length === ALL_DAYS) return t('value.everyDay', { hours });
      return `${days.map((d) => t(`day.${d}`)).join(', ')} ${hours}`;
    })
    .join('; ');
}

function geometryText(g) {
  if (g.type === 'Point') {
    const [lon, lat] = g.coordinates;
    return `${formatNumber(lat, 5)}, ${formatNumber(lon, 5)}`;
  }
  return t('value.geometry', { kind: g.type });
}

/** One normalized attribute as text. */
export function formatAttribute(name, attr) {
  const instance = defaultInstance(attr);
  const value = valueOf(attr);
  if (instance?.type === 'LanguageProperty') return pickLanguage(value);
  if (typeof value === 'number') {
    if (FRACTIONS.has(name) && value >= 0 && value <= 1) return formatPercent(value);
    const unit = unitLabel(name, instance?.unitCode);
    return unit ? `${formatNumber(value, 2)} ${unit}` : formatNumber(value, 2);
  }
  if (typeof value === 'boolean') return t(value ? 'value.yes' : 'value.no');
  if (value === null || value === undefined) return '—';
  if (name === 'openingHoursSpecification' && Array.isArray(value)) return openingHours(value);
  if (instance?.type === 'GeoProperty' && value.type) return geometryText(value);
  if (name === 'address' && typeof value === 'object') {
    const parts = ['streetAddress', 'addressLocality', 'addressRegion', 'addressCountry'];
    return parts
      .map((k) => value[k])
      .filter(Boolean)
      .join(', ');
  }
  if (Array.isArray(value))
    return value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : v)).join(', ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** When the attribute was observed, or ''. */
export function observedAt(attr) {
  const at = defaultInstance(attr)?.observedAt;
  return at ? formatTime(at) : '';
}

/** The headline number of an entity's assessment, with its unit. */
export function headlineText(type, value) {
  if (type === 'AirQualityObserved') return `VN_AQI ${value}`;
  if (type === 'FloodMonitoring') return `${formatNumber(value, 2)} ${t('unit.MTR')}`;
  if (type === 'WeatherObserved') return `${formatNumber(value, 1)} ${t('unit.CEL')}`;
  if (type === 'TrafficFlowObserved' || type === 'OffStreetParking') {
    return t('details.occupancy', { value: formatNumber(value * 100, 0) });
  }
  if (type === 'Museum' || type === 'PointOfInterest') {
    return t('details.visitors', { n: formatNumber(value, 0) });
  }
  return formatNumber(value, 1);
}
