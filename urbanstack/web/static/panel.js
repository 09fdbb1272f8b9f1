// The side panel of the selected entity: its current attributes and a chart of one
// attribute's history (last hour raw, last day and week averaged) from the temporal API.

import { fetchHistory } from './api.js';
import { attributeNames, defaultInstance, displayName, valueOf } from './entities.js';
import { attributeLabel, formatAttribute, headlineText, observedAt, unitLabel } from './format.js';
import { formatNumber, formatTime, locale, t } from './i18n.js';
import { CITY_TIME_ZONE, FLOOD_STAGES, TYPES } from './scales.js';

const uPlot = window.uPlot;
const HOUR = 3600e3;
// range → how far back, the aggregation period (null: every instance), the alignment
const RANGES = {
  hour: { back: HOUR, period: null, align: 60e3 },
  day: { back: 24 * HOUR, period: 'PT15M', align: 15 * 60e3 },
  week: { back: 7 * 24 * HOUR, period: 'PT1H', align: HOUR },
};
const SKIP = new Set(['location', 'name']);

export class DetailsPanel {
  constructor(root, { onClose }) {
    this.root = root;
    this.title = root.querySelector('#details-title');
    this.subtitle = root.querySelector('#details-type');
    this.badge = root.querySelector('#details-badge');
    this.tbody = root.querySelector('#details-attrs tbody');
    this.attrSelect = root.querySelector('#chart-attr');
    this.chartEl = root.querySelector('#chart');
    this.status = root.querySelector('#chart-status');
    this.rangeButtons = [...root.querySelectorAll('[data-range]')];
    this.entity = null;
    this.assessment = null;
    this.range = 'hour';
    this.attr = null;
    this.data = { times: [], values: [] };
    this.plot = null;
    this.loadToken = 0;
    root.querySelector('#details-close').addEventListener('click', onClose);
    this.rangeButtons.forEach((button) =>
      button.addEventListener('click', () => this.setRange(button.dataset.range)),
    );
    this.attrSelect.addEventListener('change', () => {
      this.attr = this.attrSelect.value;
      this.loadHistory();
    });
    new ResizeObserver(() => this.resize()).observe(this.chartEl);
  }

  /** Show an entity (a new selection: reloads the chart). */
  show(entity, assessment) {
    const same = this.entity?.id === entity.id;
    this.entity = entity;
    this.assessment = assessment;
    this.root.hidden = false;
    this.render();
    if (!same) {
      this.attr = this.defaultAttribute();
      this.fillAttributeChoices();
      this.loadHistory();
    }
  }

  /** The selected entity changed (live): refresh the table, extend a raw chart. */
  update(entity, assessment) {
    this.entity = entity;
    this.assessment = assessment;
    this.render();
    const numeric = this.numericAttributes();
    if (numeric.join() !== [...this.attrSelect.options].map((o) => o.value).join()) {
      this.fillAttributeChoices();
    }
    if (this.range !== 'hour' || !this.attr || !entity[this.attr]) return;
    const instance = defaultInstance(entity[this.attr]);
    const value = valueOf(entity[this.attr]);
    const at = Date.parse(instance?.observedAt ?? '') / 1000;
    const times = this.data.times;
    if (typeof value === 'number' && Number.isFinite(at) && (!times.length || at > times.at(-1))) {
      times.push(at);
      this.data.values.push(value);
      this.draw();
    }
  }

  hide() {
    this.root.hidden = true;
    this.entity = null;
    this.loadToken++;
    this.destroyPlot();
  }

  /** Re-render every text (language switch). */
  relabel() {
    if (!this.entity) return;
    this.render();
    this.fillAttributeChoices();
    this.draw();
  }

  render() {
    const entity = this.entity;
    this.title.textContent = displayName(entity);
    this.subtitle.textContent = t(`type.${entity.type}`);
    const a = this.assessment;
    if (a && a.band) {
      this.badge.hidden = false;
      this.badge.style.setProperty('--swatch', a.color);
      const value = a.value === null ? '' : headlineText(entity.type, a.value);
      this.badge.querySelector('.badge-text').textContent = [value, t(a.band)]
        .filter(Boolean)
        .join(' · ');
    } else {
      this.badge.hidden = true;
    }
    const rows = attributeNames(entity)
      .filter((name) => !SKIP.has(name))
      .map((name) => {
        const tr = document.createElement('tr');
        tr.dataset.attr = name;
        const th = document.createElement('th');
        th.scope = 'row';
        th.textContent = attributeLabel(name);
        const value = document.createElement('td');
        value.textContent = formatAttribute(name, entity[name]);
        const at = document.createElement('td');
        at.className = 'observed';
        at.textContent = observedAt(entity[name]);
        tr.append(th, value, at);
        return tr;
      });
    this.tbody.replaceChildren(...rows);
  }

  numericAttributes() {
    return attributeNames(this.entity).filter(
      (name) => typeof valueOf(this.entity[name]) === 'number' && !/^alarmLevel/.test(name),
    );
  }

  defaultAttribute() {
    const numeric = this.numericAttributes();
    const primary = TYPES[this.entity.type]?.primary;
    return numeric.includes(primary) ? primary : (numeric[0] ?? null);
  }

  fillAttributeChoices() {
    const numeric = this.numericAttributes();
    if (this.attr && !numeric.includes(this.attr)) numeric.unshift(this.attr);
    this.attrSelect.replaceChildren(
      ...numeric.map((name) => new Option(attributeLabel(name), name, false, name === this.attr)),
    );
    this.attrSelect.disabled = numeric.length === 0;
  }

  setRange(range) {
    this.range = range;
    this.rangeButtons.forEach((b) =>
      b.setAttribute('aria-pressed', String(b.dataset.range === range)),
    );
    this.loadHistory();
  }

  async loadHistory() {
    const token = ++this.loadToken;
    this.data = { times: [], values: [] };
    if (!this.entity || !this.attr) {
      this.setStatus('empty', t('chart.noAttribute'));
      this.draw();
      return;
    }
    const { back, period, align } = RANGES[this.range];
    const since = new Date(Math.floor((Date.now() - back) / align) * align);
    this.setStatus('loading', t('chart.loading'));
    try {
      const data = await fetchHistory(this.entity.id, this.attr, since, period);
      if (token !== this.loadToken) return;
      this.data = data;
      this.setStatus(
        data.times.length ? 'ready' : 'empty',
        data.times.length ? '' : t('chart.empty'),
      );
    } catch (error) {
      if (token !== this.loadToken) return;
      this.setStatus('error', t('chart.error', { detail: error.message }));
    }
    this.draw();
  }

  setStatus(state, text) {
    this.chartEl.dataset.state = state;
    this.status.textContent = text;
  }

  /** (Re)build the uPlot chart from this.data. */
  draw() {
    this.destroyPlot();
    const { times, values } = this.data;
    this.chartEl.dataset.points = String(times.length);
    if (!this.entity || !times.length) return;
    const name = this.attr;
    const unit = unitLabel(name, defaultInstance(this.entity[name])?.unitCode);
    const label = `${attributeLabel(name)}${this.range === 'hour' ? '' : ' ' + t('chart.average')}`;
    const series = [
      {
        label: t('chart.time'),
        value: (u, ts) => (ts == null ? '--' : formatTime(new Date(ts * 1e3))),
      },
      {
        label,
        stroke: '#1f6feb',
        width: 2,
        fill: 'rgba(31,111,235,0.08)',
        points: { show: times.length < 80 },
      },
    ];
    const columns = [times, values];
    if (this.entity.type === 'FloodMonitoring' && name === 'currentLevel') {
      [1, 2, 3].forEach((i) => {
        const alarm = valueOf(this.entity[`alarmLevel${i}`]);
        if (typeof alarm !== 'number') return;
        series.push({
          label: t('chart.alarm', { n: 'I'.repeat(i) }),
          stroke: FLOOD_STAGES[i].color,
          dash: [6, 4],
          width: 1.5,
          points: { show: false },
        });
        columns.push(times.map(() => alarm));
      });
    }
    const width = Math.max(this.chartEl.clientWidth, 240);
    this.plot = new uPlot(
      {
        width,
        height: 200,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), CITY_TIME_ZONE),
        scales: { x: { time: true } },
        series,
        axes: [
          { values: (u, splits) => splits.map((ts) => this.tick(ts)), space: 70 },
          { label: unit, size: 56, values: (u, ticks) => ticks.map((v) => formatNumber(v, 2)) },
        ],
        legend: { live: true },
      },
      columns,
      this.chartEl,
    );
  }

  /** A time-axis label in the city's time zone and the page's language. */
  tick(ts) {
    const options =
      this.range === 'week'
        ? { timeZone: CITY_TIME_ZONE, day: '2-digit', month: '2-digit' }
        : { timeZone: CITY_TIME_ZONE, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
    return new Intl.DateTimeFormat(locale(), options).format(new Date(ts * 1e3));
  }

  resize() {
    if (this.plot)
      this.plot.setSize({ width: Math.max(this.chartEl.clientWidth, 240), height: 200 });
  }

  destroyPlot() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}
