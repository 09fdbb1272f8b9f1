// The map: shipped vector layers (river, Citadel, wards), an optional online basemap, and
// one layer per entity type drawn on a single canvas (circle markers, polygons).

import { onLanguageChange } from './i18n.js';

const L = window.L;
const CENTRE = [16.466, 107.578];
const ZOOM = 14;
const BASE_LAYERS = ['wards', 'citadel', 'river'];
const BASE_STYLES = {
  ward: { color: '#7a8699', weight: 1, dashArray: '4 4', fill: false },
  citadel: { color: '#8c5a2b', weight: 3, fillColor: '#d9b98c', fillOpacity: 0.18 },
  river: { color: '#3b83c4', weight: 9, opacity: 0.75, lineCap: 'round' },
};

/** Create the Leaflet map in `element` with the canvas renderer. */
export function createMap(element, config) {
  const map = L.map(element, { preferCanvas: true, zoomControl: true, attributionControl: true });
  map.setView(CENTRE, ZOOM);
  map.attributionControl.setPrefix(false);
  if (config.basemapUrl) {
    L.tileLayer(config.basemapUrl, {
      attribution: config.basemapAttribution || '',
      maxZoom: 19,
    }).addTo(map);
  } else {
    element.classList.add('no-basemap');
  }
  return map;
}

/** Draw the shipped GeoJSON layers (static context under the entities). */
export async function addBaseLayers(map) {
  const pane = map.createPane('base');
  pane.style.zIndex = 350;
  const renderer = L.canvas({ pane: 'base' });
  const layers = await Promise.all(
    BASE_LAYERS.map(async (name) => {
      const reply = await fetch(new URL(`layers/${name}.geojson`, import.meta.url));
      const data = await reply.json();
      return L.geoJSON(data, {
        pane: 'base',
        renderer,
        interactive: false, // under the entities' canvas, which takes the clicks
        style: (feature) => BASE_STYLES[feature.properties.kind],
      }).addTo(map);
    }),
  );
  return layers;
}

/**
 * Entity layers: one Leaflet layer group per type; markers are drawn on one shared canvas.
 * `onSelect(id)` is called when an entity is clicked; `label(id)` gives its tooltip.
 */
export class EntityLayers {
  constructor(map, types, onSelect, label) {
    this.map = map;
    this.onSelect = onSelect;
    this.label = label;
    this.renderer = L.canvas({ padding: 0.3, tolerance: 4 });
    this.groups = {};
    this.layers = new Map(); // id → {layer, type, shape, color}
    this.selected = null;
    this.redraws = { count: 0, ms: 0 }; // canvas repaints, for the benchmark
    const redraw = this.renderer._redraw;
    const stats = this.redraws;
    this.renderer._redraw = function timedRedraw() {
      const began = performance.now();
      redraw.call(this);
      stats.count++;
      stats.ms += performance.now() - began;
    };
    for (const type of types) this.groups[type] = L.layerGroup().addTo(map);
    onLanguageChange(() => this.closeTooltips());
  }

  /** Add or move/restyle the entity's layer; false when it has no drawable location. */
  upsert(entity, geometry, color) {
    const known = this.layers.get(entity.id);
    if (!geometry) {
      if (known) this.remove(entity.id);
      return false;
    }
    const shape = geometry.type === 'Point' ? 'point' : 'area';
    if (known && (known.type !== entity.type || known.shape !== shape)) this.remove(entity.id);
    const entry = this.layers.get(entity.id);
    if (!entry) {
      const layer = shape === 'point' ? this.point(geometry, color) : this.area(geometry, color);
      layer.on('click', (event) => {
        L.DomEvent.stopPropagation(event);
        this.onSelect(entity.id);
      });
      layer.bindTooltip(() => this.label(entity.id), { sticky: shape === 'area' });
      this.groups[entity.type]?.addLayer(layer);
      // one canvas: areas are drawn first, so a marker inside an area takes its clicks
      if (shape === 'area') layer.bringToBack();
      this.layers.set(entity.id, { layer, type: entity.type, shape, color, geometry });
      return true;
    }
    if (shape === 'point') {
      const [lon, lat] = geometry.coordinates;
      const at = entry.layer.getLatLng();
      if (at.lat !== lat || at.lng !== lon) entry.layer.setLatLng([lat, lon]);
    } else if (JSON.stringify(entry.geometry) !== JSON.stringify(geometry)) {
      this.remove(entity.id);
      return this.upsert(entity, geometry, color);
    }
    if (entry.color !== color) {
      entry.color = color;
      entry.layer.setStyle(this.style(entry.shape, color, entity.id === this.selected));
    }
    return true;
  }

  point(geometry, color) {
    const [lon, lat] = geometry.coordinates;
    return L.circleMarker([lat, lon], { renderer: this.renderer, ...this.style('point', color) });
  }

  area(geometry, color) {
    return L.geoJSON(geometry, { renderer: this.renderer, style: () => this.style('area', color) });
  }

  style(shape, color, selected = false) {
    if (shape === 'area') {
      return {
        color: selected ? '#111' : '#4a6078',
        weight: selected ? 3 : 1.5,
        fillColor: color,
        fillOpacity: 0.08,
      };
    }
    return {
      radius: selected ? 10 : 7,
      color: selected ? '#111' : '#333',
      weight: selected ? 3 : 1,
      fillColor: color,
      fillOpacity: 0.9,
    };
  }

  remove(id) {
    const entry = this.layers.get(id);
    if (!entry) return;
    this.groups[entry.type]?.removeLayer(entry.layer);
    this.layers.delete(id);
    if (this.selected === id) this.selected = null;
  }

  /** Emphasise the selected entity (and only it). */
  select(id) {
    const previous = this.layers.get(this.selected);
    if (previous) previous.layer.setStyle(this.style(previous.shape, previous.color, false));
    this.selected = id;
    const entry = this.layers.get(id);
    if (!entry) return;
    entry.layer.setStyle(this.style(entry.shape, entry.color, true));
    if (entry.shape === 'point') entry.layer.bringToFront();
  }

  /** Centre the map on the entity if it is outside the view. */
  reveal(id) {
    const entry = this.layers.get(id);
    if (!entry) return;
    const bounds =
      entry.shape === 'point' ? L.latLngBounds([entry.layer.getLatLng()]) : entry.layer.getBounds();
    if (!this.map.getBounds().contains(bounds)) this.map.panTo(bounds.getCenter());
  }

  setVisible(type, visible) {
    const group = this.groups[type];
    if (!group) return;
    if (visible) {
      group.addTo(this.map);
      if (type === 'AdministrativeArea') group.eachLayer((layer) => layer.bringToBack());
    } else group.remove();
  }

  closeTooltips() {
    this.map.eachLayer((layer) => layer.closeTooltip?.());
  }

  /** The fill colour of the entity's layer (for tests and benchmarks). */
  colorOf(id) {
    return this.layers.get(id)?.color ?? null;
  }

  /** The entity's marker position in page pixels (for tests and benchmarks). */
  pagePosition(id) {
    const entry = this.layers.get(id);
    if (!entry) return null;
    const latlng =
      entry.shape === 'point' ? entry.layer.getLatLng() : entry.layer.getBounds().getCenter();
    const point = this.map.latLngToContainerPoint(latlng);
    const box = this.map.getContainer().getBoundingClientRect();
    return { x: box.left + point.x, y: box.top + point.y };
  }

  count() {
    return this.layers.size;
  }
}
