// The public API the page uses: NGSI-LD entities, the temporal API and the SSE stream.
// URLs are relative to the page, so the dashboard also works behind a path prefix.

const NGSI = 'ngsi-ld/v1/';
const PAGE = 1000; // the broker's max_limit by default
const MAX_HISTORY_PAGES = 20;
const REOPEN_AFTER_MS = 2000;

// the tenant the page shows: ?tenant=hcmc on the page's own URL (the default tenant without)
export const TENANT = new URLSearchParams(window.location.search).get('tenant') || null;

function url(path, params = {}) {
  const u = new URL(path, document.baseURI);
  Object.entries(params).forEach(([k, v]) => u.searchParams.set(k, v));
  return u;
}

async function getJson(u) {
  const headers = { Accept: 'application/json' };
  if (TENANT) headers['NGSILD-Tenant'] = TENANT;
  const reply = await fetch(u, { headers });
  if (!reply.ok && reply.status !== 206) {
    throw new Error(`${reply.status} ${reply.statusText} for ${u.pathname}`);
  }
  return { body: await reply.json(), reply };
}

/** Every entity of `type` (normalized), a page of up to 1,000 at a time; onPage per page. */
export async function fetchEntities(type, onPage) {
  const all = [];
  for (let offset = 0; ; offset += PAGE) {
    const { body } = await getJson(url(NGSI + 'entities', { type, limit: PAGE, offset }));
    all.push(...body);
    if (onPage) onPage(body);
    if (body.length < PAGE) return all;
  }
}

function firstSeries(attr) {
  // several datasetIds give an array: the default instance (no datasetId) first
  if (Array.isArray(attr)) return attr.find((a) => !a.datasetId) ?? attr[0];
  return attr;
}

/**
 * History of one attribute since `since` (a Date): raw [time s, value] pairs when
 * `period` is null, else the average per period (an ISO 8601 duration) at each period's
 * start. Follows 206 Partial Content answers forward. Returns {times, values}.
 */
export async function fetchHistory(id, attr, since, period) {
  const times = [];
  const values = [];
  let timeAt = since.toISOString();
  for (let page = 0; page < MAX_HISTORY_PAGES; page++) {
    const params = { attrs: attr, timerel: 'after', timeAt };
    if (period) {
      Object.assign(params, {
        options: 'aggregatedValues',
        aggrMethods: 'avg',
        aggrPeriodDuration: period,
      });
    } else {
      params.options = 'temporalValues';
    }
    const { body, reply } = await getJson(
      url(NGSI + 'temporal/entities/' + encodeURIComponent(id), params),
    );
    const series = firstSeries(body[attr]);
    const rows = series ? ((period ? series.avg : series.values) ?? []) : [];
    for (const [value, start] of rows) {
      if (typeof value !== 'number') continue;
      times.push(Date.parse(start) / 1000);
      values.push(value);
    }
    const range = reply.status === 206 ? reply.headers.get('Content-Range') : null;
    const end = range && /date-time \S+?Z-(\S+?Z)\//.exec(range);
    if (!end) break;
    timeAt = end[1];
  }
  return { times, values };
}

/**
 * Follow the stream of committed changes of `types` (normalized entities). `onEvent(kind,
 * entity)` for created|updated|deleted; `onStatus('live'|'reconnecting', reopened)`, where
 * `reopened` says changes may have been missed. The browser reconnects by itself after a
 * network error; after an error answer (the stream closed) a new one is opened here.
 */
export function openStream(types, onEvent, onStatus) {
  let opened = false;
  let lost = false;
  const connect = () => {
    const params = { type: types.join(',') };
    if (TENANT) params.tenant = TENANT; // EventSource cannot send headers
    const source = new EventSource(url('api/stream', params));
    source.addEventListener('open', () => {
      onStatus('live', opened && lost);
      opened = true;
      lost = false;
    });
    source.addEventListener('error', () => {
      lost = true;
      onStatus('reconnecting', false);
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, REOPEN_AFTER_MS);
    });
    for (const kind of ['created', 'updated', 'deleted']) {
      source.addEventListener(kind, (event) => onEvent(kind, JSON.parse(event.data)));
    }
    // the server ends the stream (event "end") when it shuts down: reconnect
    source.addEventListener('end', () => {
      source.close();
      lost = true;
      onStatus('reconnecting', false);
      setTimeout(connect, REOPEN_AFTER_MS);
    });
  };
  connect();
}
