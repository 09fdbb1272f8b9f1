// The operations-centre dashboard: loads the current state of every shown type, follows
// the change stream (updates applied in batches, once per animation frame), and keeps the
// map, headline tiles, alert list and the selected entity's panel up to date.

import { TENANT, fetchEntities, openStream } from './api.js';
import { displayName, geometryOf, keyValues } from './entities.js';
import { setupFind } from './find.js';
import { headlineText } from './format.js';
import {
  LANGUAGES,
  language,
  loadTranslations,
  onLanguageChange,
  setLanguage,
  t,
  translateStatic,
} from './i18n.js';
import { EntityLayers, addBaseLayers, createMap } from './map.js';
import { DetailsPanel } from './panel.js';
import {
  AQI_BANDS,
  FLOOD_STAGES,
  OCCUPANCY_BANDS,
  TEMPERATURE_BANDS,
  TYPES,
  assess,
} from './scales.js';
import { activeAlerts, headlines, renderAlerts, renderTiles } from './summary.js';

const TYPE_NAMES = Object.keys(TYPES);
const SUMMARY_INTERVAL_MS = 500;
const APPLY_LOG_MAX = 200000;
const STREAM_WAIT_MS = 3000;

const records = new Map(); // id → {entity, kv, assessment}
const pending = new Map(); // id → {kind, entity}: changes waiting for the next frame
let frameRequested = false;
let buffering = true; // while a snapshot loads, stream events wait in `buffered`
let buffered = [];
let selectedId = null;
let summaryDirty = true;
let lastSummary = 0;
let summaryTimer = null;
let layers;
let panel;

// A hook for tests and benchmarks: readiness, timings, marker colours and positions.
const metrics = {
  ready: false,
  firstRenderMs: null,
  loadMs: null,
  entityCount: 0,
  updatesApplied: 0,
  applyMs: 0, // time spent applying stream changes (JS only; the canvas repaint is Leaflet's)
  summaryMs: 0, // time spent re-rendering the tiles and the alert list
  frameBatches: 0,
  applyLog: null,
  frames: null,
  error: null,
  redraws: () => ({ ...layers?.redraws }),
  markerCount: () => layers?.count() ?? 0,
  markerColor: (id) => layers?.colorOf(id) ?? null,
  markerPosition: (id) => layers?.pagePosition(id) ?? null,
  /** [r, g, b] drawn on the entities' canvas at the entity's marker. */
  pixelAt(id) {
    const at = layers?.pagePosition(id);
    const canvas = layers?.renderer._container;
    if (!at || !canvas) return null;
    const box = canvas.getBoundingClientRect();
    const x = Math.round((at.x - box.left) * (canvas.width / box.width));
    const y = Math.round((at.y - box.top) * (canvas.height / box.height));
    return [...canvas.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)];
  },
  select: (id) => select(id, true),
  /** Start logging [id, entity, time applied (epoch ms)] for every applied change. */
  startApplyLog() {
    metrics.applyLog = [];
  },
  takeApplyLog() {
    const log = metrics.applyLog ?? [];
    metrics.applyLog = [];
    return log;
  },
  /** Record the time between animation frames until stopFrames() (which returns them). */
  startFrames() {
    const frames = { deltas: [], last: performance.now(), running: true };
    metrics.frames = frames;
    const tick = (now) => {
      frames.deltas.push(now - frames.last);
      frames.last = now;
      if (frames.running) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  },
  stopFrames() {
    if (!metrics.frames) return [];
    metrics.frames.running = false;
    return metrics.frames.deltas;
  },
};
window.__dashboard = metrics;

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

/** Apply one entity's new state (no frame scheduling: callers batch). */
function applyEntity(entity) {
  const kv = keyValues(entity);
  const assessment = assess(entity.type, kv);
  const record = { entity, kv, assessment, name: displayName(entity) };
  records.set(entity.id, record);
  layers.upsert(entity, geometryOf(entity), assessment.color);
  if (entity.id === selectedId) panel.update(entity, assessment);
  return record;
}

function removeEntity(id) {
  records.delete(id);
  layers.remove(id);
  if (id === selectedId) closePanel();
}

function enqueue(kind, entity) {
  if (buffering) {
    buffered.push([kind, entity]);
    return;
  }
  pending.set(entity.id, { kind, entity });
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(applyPending);
  }
}

/** Once per frame: apply every change received since the last frame. */
function applyPending() {
  const began = performance.now();
  frameRequested = false;
  const log = metrics.applyLog;
  const now = log ? Date.now() : 0;
  for (const [id, { kind, entity }] of pending) {
    if (kind === 'deleted') removeEntity(id);
    else applyEntity(entity);
    if (log && log.length < APPLY_LOG_MAX) log.push([id, entity, now]);
  }
  metrics.updatesApplied += pending.size;
  metrics.frameBatches++;
  pending.clear();
  summaryDirty = true;
  scheduleSummary();
  metrics.applyMs += performance.now() - began;
}

function scheduleSummary() {
  if (summaryTimer) return;
  const wait = Math.max(0, lastSummary + SUMMARY_INTERVAL_MS - performance.now());
  summaryTimer = setTimeout(() => {
    summaryTimer = null;
    renderSummary();
  }, wait);
}

function renderSummary() {
  if (!summaryDirty) return;
  const began = performance.now();
  summaryDirty = false;
  lastSummary = performance.now();
  renderTiles(document.querySelector('#tiles'), headlines(records));
  renderAlerts(
    document.querySelector('#alert-list'),
    document.querySelector('#alerts-title'),
    document.querySelector('#alerts-empty'),
    activeAlerts(records),
    (id) => select(id, true),
  );
  const counts = {};
  for (const { entity } of records.values()) counts[entity.type] = (counts[entity.type] ?? 0) + 1;
  document.querySelectorAll('[data-layer-count]').forEach((el) => {
    el.textContent = String(counts[el.dataset.layerCount] ?? 0);
  });
  metrics.entityCount = records.size;
  metrics.summaryMs += performance.now() - began;
}

/** Load the current state of every type; entities no longer there are removed. */
async function loadSnapshot() {
  const seen = new Set();
  await Promise.all(
    TYPE_NAMES.map((type) =>
      fetchEntities(type, (page) => {
        for (const entity of page) {
          seen.add(entity.id);
          applyEntity(entity);
        }
      }),
    ),
  );
  for (const id of [...records.keys()]) if (!seen.has(id)) removeEntity(id);
}

/** Snapshot, then the stream events that came meanwhile, in order. */
async function synchronise() {
  buffering = true;
  try {
    await loadSnapshot();
  } finally {
    buffering = false;
    const replay = buffered;
    buffered = [];
    for (const [kind, entity] of replay) enqueue(kind, entity);
    summaryDirty = true;
    renderSummary();
  }
}

function setConnection(state) {
  const el = document.querySelector('#connection');
  el.dataset.state = state;
  el.dataset.i18n = `status.${state}`;
  el.textContent = t(`status.${state}`);
}

function select(id, fromList = false) {
  const record = records.get(id);
  if (!record) return;
  selectedId = id;
  layers.select(id);
  panel.show(record.entity, record.assessment);
  if (fromList) {
    layers.reveal(id);
    document.querySelector('#details-title').focus(); // keyboard users land on the panel
  }
}

function closePanel() {
  selectedId = null;
  layers.select(null);
  panel.hide();
}

function tooltip(id) {
  const record = records.get(id);
  if (!record) return '';
  const { entity, assessment } = record;
  const parts = [displayName(entity)];
  if (assessment.value !== null) parts.push(headlineText(entity.type, assessment.value));
  if (assessment.band) parts.push(t(assessment.band));
  const el = document.createElement('span');
  el.textContent = parts.join(' · ');
  return el;
}

function buildLayerList() {
  const list = document.querySelector('#layer-list');
  list.replaceChildren(
    ...TYPE_NAMES.map((type) => {
      const li = document.createElement('li');
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = true;
      box.dataset.layer = type;
      box.addEventListener('change', () => layers.setVisible(type, box.checked));
      const name = document.createElement('span');
      name.dataset.i18n = `type.${type}`;
      const count = document.createElement('span');
      count.className = 'count';
      count.dataset.layerCount = type;
      count.textContent = '0';
      label.append(box, name, count);
      li.append(label);
      return li;
    }),
  );
}

function buildLegend() {
  const scales = [
    ['legend.air', AQI_BANDS],
    ['legend.flood', FLOOD_STAGES],
    ['legend.occupancy', OCCUPANCY_BANDS],
    ['legend.temperature', TEMPERATURE_BANDS],
  ];
  const root = document.querySelector('#legend-scales');
  root.replaceChildren(
    ...scales.map(([title, bands]) => {
      const section = document.createElement('div');
      section.className = 'legend-scale';
      const h = document.createElement('h3');
      h.dataset.i18n = title;
      const ul = document.createElement('ul');
      for (const band of bands) {
        const li = document.createElement('li');
        li.style.setProperty('--swatch', band.color);
        li.dataset.i18n = band.key;
        ul.append(li);
      }
      section.append(h, ul);
      return section;
    }),
  );
}

function setupLanguageButtons() {
  const buttons = document.querySelectorAll('[data-lang]');
  const mark = () =>
    buttons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.lang === language())));
  buttons.forEach((b) => {
    if (!LANGUAGES.includes(b.dataset.lang)) b.hidden = true;
    b.addEventListener('click', () => setLanguage(b.dataset.lang));
  });
  mark();
  onLanguageChange(() => {
    mark();
    for (const record of records.values()) record.name = displayName(record.entity);
    summaryDirty = true;
    renderSummary();
    panel.relabel();
  });
}

async function main() {
  await loadTranslations();
  buildLayerList();
  buildLegend();
  translateStatic();
  setConnection('loading');
  if (TENANT) {
    const tenant = document.querySelector('#tenant');
    tenant.textContent = TENANT; // the data space shown (?tenant=...), not translated
    tenant.hidden = false;
  }
  const config = await (await fetch('web/config.json')).json();
  const map = createMap(document.querySelector('#map'), config);
  layers = new EntityLayers(map, TYPE_NAMES, (id) => select(id), tooltip);
  panel = new DetailsPanel(document.querySelector('#details'), { onClose: closePanel });
  setupLanguageButtons();
  const refreshFind = setupFind(
    document.querySelector('#find-input'),
    document.querySelector('#find-results'),
    () => records,
    (id) => select(id, true),
  );
  onLanguageChange(refreshFind);
  const started = performance.now();
  const base = addBaseLayers(map);
  let connected;
  const firstOpen = new Promise((resolve) => {
    connected = resolve;
  });
  openStream(
    TYPE_NAMES,
    (kind, entity) => enqueue(kind, entity),
    (state, reopened) => {
      setConnection(state);
      if (state === 'live') connected();
      if (reopened) synchronise(); // changes were missed while disconnected: reload
    },
  );
  // subscribed before the snapshot is read, so no change falls between the two
  await Promise.race([firstOpen, new Promise((resolve) => setTimeout(resolve, STREAM_WAIT_MS))]);
  await Promise.all([base, synchronise()]);
  metrics.loadMs = performance.now() - started;
  await nextFrame(); // Leaflet redraws its canvas in the next animation frame
  await nextFrame();
  metrics.firstRenderMs = performance.now();
  metrics.ready = true;
  document.body.dataset.ready = 'true';
}

main().catch((error) => {
  metrics.error = String(error);
  console.error(error);
  const el = document.querySelector('#connection');
  el.dataset.state = 'error';
  el.textContent = t('status.error', { detail: error.message });
});
