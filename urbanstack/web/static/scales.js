// Colour scales, thresholds and alerts of every entity type (pure functions, no DOM).

export const CITY_TIME_ZONE = 'Asia/Ho_Chi_Minh';

// VN_AQI sub-index breakpoints: concentration (µg/m³) ↔ index, piecewise linear.
const AQI_INDEX = [0, 50, 100, 150, 200, 300, 400, 500];
const PM25_BREAKPOINTS = [0, 25, 50, 80, 150, 250, 350, 500];
const PM10_BREAKPOINTS = [0, 50, 150, 250, 350, 420, 500, 600];

// Categories of VN_AQI: the upper bound of each band, its translation key and colour.
export const AQI_BANDS = [
  { max: 50, key: 'aqi.good', color: 'rgb(0,228,0)' },
  { max: 100, key: 'aqi.moderate', color: 'rgb(255,255,0)' },
  { max: 150, key: 'aqi.poor', color: 'rgb(255,126,0)' },
  { max: 200, key: 'aqi.bad', color: 'rgb(255,0,0)' },
  { max: 300, key: 'aqi.veryBad', color: 'rgb(143,63,151)' },
  { max: Infinity, key: 'aqi.hazardous', color: 'rgb(126,0,35)' },
];
export const AQI_ALERT_ABOVE = 150;

// Flood stages: below alarm I, ≥ I, ≥ II, ≥ III.
export const FLOOD_STAGES = [
  { key: 'flood.stage0', color: 'rgb(0,170,70)' },
  { key: 'flood.stage1', color: 'rgb(255,215,0)' },
  { key: 'flood.stage2', color: 'rgb(255,126,0)' },
  { key: 'flood.stage3', color: 'rgb(220,0,0)' },
];

// Occupancy bands (traffic, parking): upper bound (0..1) and colour.
export const OCCUPANCY_BANDS = [
  { max: 0.5, key: 'occupancy.low', color: 'rgb(0,170,70)' },
  { max: 0.8, key: 'occupancy.medium', color: 'rgb(255,215,0)' },
  { max: 0.95, key: 'occupancy.high', color: 'rgb(255,126,0)' },
  { max: Infinity, key: 'occupancy.full', color: 'rgb(220,0,0)' },
];
export const PARKING_ALERT_BELOW = 0.05;

export const TEMPERATURE_BANDS = [
  { max: 20, key: 'temperature.cool', color: 'rgb(66,133,244)' },
  { max: 28, key: 'temperature.mild', color: 'rgb(0,170,70)' },
  { max: 33, key: 'temperature.warm', color: 'rgb(255,165,0)' },
  { max: Infinity, key: 'temperature.hot', color: 'rgb(220,0,0)' },
];

export const NO_DATA_COLOR = 'rgb(150,150,150)';
export const HERITAGE_COLOR = 'rgb(123,63,160)';

// Every entity type the dashboard shows, in the order of its layer list; `primary` is the
// attribute charted first, `shape` how it is drawn.
export const TYPES = {
  AirQualityObserved: { primary: 'pm25', shape: 'point' },
  FloodMonitoring: { primary: 'currentLevel', shape: 'point' },
  WeatherObserved: { primary: 'temperature', shape: 'point' },
  TrafficFlowObserved: { primary: 'intensity', shape: 'point' },
  OffStreetParking: { primary: 'availableSpotNumber', shape: 'point' },
  Museum: { primary: 'visitorsToday', shape: 'point' },
  PointOfInterest: { primary: 'visitorsToday', shape: 'point' },
  AdministrativeArea: { primary: null, shape: 'area' },
};

/** A number, or null when `v` is not a finite number. */
export function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** Piecewise-linear interpolation of concentration `c` on `breakpoints` ↔ AQI_INDEX. */
export function subIndex(c, breakpoints) {
  if (num(c) === null || c < 0) return null;
  const last = breakpoints.length - 1;
  if (c >= breakpoints[last]) return AQI_INDEX[last];
  for (let i = 1; i <= last; i++) {
    if (c <= breakpoints[i]) {
      const [c0, c1] = [breakpoints[i - 1], breakpoints[i]];
      const [i0, i1] = [AQI_INDEX[i - 1], AQI_INDEX[i]];
      return i0 + ((i1 - i0) * (c - c0)) / (c1 - c0);
    }
  }
  return AQI_INDEX[last];
}

/** VN_AQI: the largest of the PM2.5 and PM10 sub-indices, rounded; null without either. */
export function vnAqi(pm25, pm10) {
  const parts = [subIndex(pm25, PM25_BREAKPOINTS), subIndex(pm10, PM10_BREAKPOINTS)].filter(
    (v) => v !== null,
  );
  return parts.length ? Math.round(Math.max(...parts)) : null;
}

export function aqiBand(aqi) {
  return AQI_BANDS.find((band) => aqi <= band.max);
}

/** 0 below alarm I, then 1, 2, 3 for levels at or above alarm I, II, III. */
export function floodStage(level, alarms) {
  let stage = 0;
  alarms.forEach((alarm, i) => {
    if (num(alarm) !== null && level >= alarm) stage = i + 1;
  });
  return stage;
}

function band(bands, v) {
  return bands.find((b) => v <= b.max);
}

/**
 * What the dashboard makes of one entity's current values (`kv`: attribute → value):
 * `color`, `value` (the headline number, or null), `band` (a translation key), `severity`
 * (0 none, 1..3 for alerts) and, when alerting, `alert` {key, params}.
 */
export function assess(type, kv) {
  switch (type) {
    case 'AirQualityObserved': {
      const aqi = vnAqi(num(kv.pm25), num(kv.pm10));
      if (aqi === null) return blank();
      const b = aqiBand(aqi);
      const severity = aqi > 300 ? 3 : aqi > 200 ? 2 : aqi > AQI_ALERT_ABOVE ? 1 : 0;
      return {
        color: b.color,
        value: aqi,
        band: b.key,
        severity,
        alert: severity ? { key: 'alert.air', params: { aqi, band: b.key } } : null,
      };
    }
    case 'FloodMonitoring': {
      const level = num(kv.currentLevel);
      if (level === null) return blank();
      const alarms = [num(kv.alarmLevel1), num(kv.alarmLevel2), num(kv.alarmLevel3)];
      const stage = floodStage(level, alarms);
      return {
        color: FLOOD_STAGES[stage].color,
        value: level,
        band: FLOOD_STAGES[stage].key,
        severity: stage,
        alert: stage
          ? { key: 'alert.flood', params: { level, stage, alarm: alarms[stage - 1] } }
          : null,
      };
    }
    case 'TrafficFlowObserved': {
      const occ = num(kv.occupancy);
      if (occ === null) return kv.congested === true ? fixed('rgb(220,0,0)') : blank();
      const b = band(OCCUPANCY_BANDS, kv.congested === true ? Math.max(occ, 0.96) : occ);
      return { color: b.color, value: occ, band: b.key, severity: 0, alert: null };
    }
    case 'OffStreetParking': {
      const total = num(kv.totalSpotNumber);
      const free = num(kv.availableSpotNumber);
      if (total === null || free === null || total <= 0) return blank();
      const occ = 1 - free / total;
      const b = band(OCCUPANCY_BANDS, occ);
      const full = free < PARKING_ALERT_BELOW * total;
      return {
        color: full ? OCCUPANCY_BANDS[3].color : b.color,
        value: occ,
        band: full ? OCCUPANCY_BANDS[3].key : b.key,
        severity: full ? 1 : 0,
        alert: full ? { key: 'alert.parking', params: { free, total } } : null,
      };
    }
    case 'WeatherObserved': {
      const t = num(kv.temperature);
      if (t === null) return blank();
      const b = band(TEMPERATURE_BANDS, t);
      return { color: b.color, value: t, band: b.key, severity: 0, alert: null };
    }
    case 'Museum':
    case 'PointOfInterest':
      return { ...fixed(HERITAGE_COLOR), value: num(kv.visitorsToday) };
    default:
      return fixed('rgb(60,110,160)');
  }
}

function blank() {
  return { color: NO_DATA_COLOR, value: null, band: 'band.noData', severity: 0, alert: null };
}

function fixed(color) {
  return { color, value: null, band: null, severity: 0, alert: null };
}
