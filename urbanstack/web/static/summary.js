// Headline tiles (city air quality, highest river, visitors today, free parking) and the
// list of active alerts, computed from the entities' current state.

import { formatNumber, formatTime, locale, t } from './i18n.js';
import { FLOOD_STAGES, NO_DATA_COLOR, aqiBand, num } from './scales.js';

const MAX_ALERTS_SHOWN = 50;

/** The four headline figures from `records` (id → {entity, kv, assessment}). */
export function headlines(records) {
  let aqiSum = 0;
  let aqiCount = 0;
  let river = null;
  let visitors = 0;
  let sites = 0;
  let free = 0;
  let total = 0;
  let parks = 0;
  for (const record of records.values()) {
    const { entity, kv, assessment } = record;
    switch (entity.type) {
      case 'AirQualityObserved':
        if (assessment.value !== null) {
          aqiSum += assessment.value;
          aqiCount++;
        }
        break;
      case 'FloodMonitoring': {
        const level = num(kv.currentLevel);
        if (level === null) break;
        const margin = level - (num(kv.alarmLevel1) ?? Infinity);
        const rank = [assessment.severity, margin];
        if (
          !river ||
          rank[0] > river.rank[0] ||
          (rank[0] === river.rank[0] && rank[1] > river.rank[1])
        ) {
          river = { record, level, rank, stage: assessment.severity };
        }
        break;
      }
      case 'Museum':
      case 'PointOfInterest':
        if (num(kv.visitorsToday) !== null) {
          visitors += kv.visitorsToday;
          sites++;
        }
        break;
      case 'OffStreetParking':
        if (num(kv.availableSpotNumber) !== null && num(kv.totalSpotNumber) !== null) {
          free += kv.availableSpotNumber;
          total += kv.totalSpotNumber;
          parks++;
        }
        break;
      default:
    }
  }
  const aqi = aqiCount ? Math.round(aqiSum / aqiCount) : null;
  return { aqi, aqiCount, river, visitors, sites, free, total, parks };
}

/** Render the tiles into their elements (by data-tile). */
export function renderTiles(root, figures) {
  const tile = (name) => root.querySelector(`[data-tile="${name}"]`);
  const set = (name, value, detail, color) => {
    const el = tile(name);
    el.querySelector('.tile-value').textContent = value;
    el.querySelector('.tile-detail').textContent = detail;
    el.style.setProperty('--swatch', color ?? 'transparent');
  };
  const { aqi, river } = figures;
  if (aqi === null) set('air', '—', t('tile.noData'), NO_DATA_COLOR);
  else {
    const band = aqiBand(aqi);
    set(
      'air',
      String(aqi),
      `${t(band.key)} · ${t('tile.air.stations', { n: figures.aqiCount })}`,
      band.color,
    );
  }
  if (!river) set('river', '—', t('tile.noData'), NO_DATA_COLOR);
  else {
    const stage = FLOOD_STAGES[river.stage];
    set(
      'river',
      `${formatNumber(river.level, 2)} ${t('unit.MTR')}`,
      `${river.record.name} · ${t(stage.key)}`,
      stage.color,
    );
  }
  set(
    'visitors',
    formatNumber(figures.visitors, 0),
    t('tile.visitors.sites', { n: figures.sites }),
  );
  if (!figures.parks) set('parking', '—', t('tile.noData'));
  else {
    set(
      'parking',
      formatNumber(figures.free, 0),
      t('tile.parking.of', { total: formatNumber(figures.total, 0), n: figures.parks }),
    );
  }
}

let collator = null;

/** Active alerts, the most severe first, then by name (records carry their `name`). */
export function activeAlerts(records) {
  if (!collator || collator.resolvedOptions().locale !== locale()) {
    collator = new Intl.Collator(locale());
  }
  const alerts = [];
  for (const record of records.values()) {
    if (record.assessment.alert) alerts.push(record);
  }
  return alerts.sort(
    (a, b) => b.assessment.severity - a.assessment.severity || collator.compare(a.name, b.name),
  );
}

function alertText(record) {
  const { key, params } = record.assessment.alert;
  const name = record.name;
  switch (key) {
    case 'alert.air':
      return t(key, { name, aqi: params.aqi, band: t(params.band) });
    case 'alert.flood':
      return t(key, {
        name,
        level: formatNumber(params.level, 2),
        stage: 'I'.repeat(params.stage),
        alarm: formatNumber(params.alarm, 2),
      });
    case 'alert.parking':
      return t(key, { name, free: params.free, total: params.total });
    default:
      return t(key, { name });
  }
}

function alertTime(record) {
  const attr = {
    'alert.air': 'pm25',
    'alert.flood': 'currentLevel',
    'alert.parking': 'availableSpotNumber',
  }[record.assessment.alert.key];
  const at = record.entity[attr]?.observedAt;
  return at ? formatTime(at) : '';
}

/** Render the alert list: one button per alert, selecting its entity (the DOM is only
 * rebuilt when what it shows changed). */
export function renderAlerts(list, heading, empty, alerts, onSelect) {
  heading.textContent = t('alerts.title', { n: alerts.length });
  empty.hidden = alerts.length > 0;
  const shown = alerts.slice(0, MAX_ALERTS_SHOWN);
  const texts = shown.map((record) => [record.entity.id, alertText(record), alertTime(record)]);
  const signature = JSON.stringify([texts, alerts.length]);
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  const items = shown.map((record, i) => {
    const li = document.createElement('li');
    li.className = `alert severity-${record.assessment.severity}`;
    li.dataset.entity = record.entity.id;
    const button = document.createElement('button');
    button.type = 'button';
    button.style.setProperty('--swatch', record.assessment.color);
    const text = document.createElement('span');
    text.className = 'alert-text';
    text.textContent = texts[i][1];
    const time = document.createElement('span');
    time.className = 'alert-time';
    time.textContent = texts[i][2];
    button.append(text, time);
    button.addEventListener('click', () => onSelect(record.entity.id));
    li.append(button);
    return li;
  });
  if (alerts.length > MAX_ALERTS_SHOWN) {
    const more = document.createElement('li');
    more.className = 'alert-more';
    more.textContent = t('alerts.more', { n: alerts.length - MAX_ALERTS_SHOWN });
    items.push(more);
  }
  list.replaceChildren(...items);
}
