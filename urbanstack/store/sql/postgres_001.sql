-- urbanstack PostgreSQL schema, version 1: entities, their index and shapes, contexts.
-- Every tenant has a schema of its own holding these tables (run with search_path set to
-- it); the default tenant's schema also registers the other tenants and the contexts.
CREATE TABLE IF NOT EXISTS entities (
    rid         bigserial PRIMARY KEY,           -- creation order (query paging)
    id          text COLLATE "C" NOT NULL UNIQUE,
    types       text[] COLLATE "C" NOT NULL,     -- expanded type IRIs
    scopes      text[] COLLATE "C" NOT NULL DEFAULT '{}',
    created_at  text COLLATE "C" NOT NULL,       -- normalised UTC text, compares as time
    modified_at text COLLATE "C" NOT NULL,
    doc         json NOT NULL,                   -- the entity in stored form (json: key order kept)
    view        bytea,                           -- its default rendering (view_renderer)
    ix          jsonb NOT NULL                   -- the index document (postgres_index.py)
);
CREATE INDEX IF NOT EXISTS entities_types ON entities USING gin (types);
CREATE INDEX IF NOT EXISTS entities_scopes ON entities USING gin (scopes);
CREATE INDEX IF NOT EXISTS entities_ix ON entities USING gin (ix jsonb_path_ops);
-- one row per GeoProperty instance; geo-queries run on these in PostGIS
CREATE TABLE IF NOT EXISTS entity_geo (
    rid  bigint NOT NULL REFERENCES entities (rid) ON DELETE CASCADE,
    attr text COLLATE "C" NOT NULL,              -- the GeoProperty's IRI
    geom geometry(Geometry, 4326) NOT NULL       -- 2-D, longitude/latitude
);
CREATE INDEX IF NOT EXISTS entity_geo_rid ON entity_geo (rid);
CREATE INDEX IF NOT EXISTS entity_geo_geom ON entity_geo USING gist (geom);
-- near: distances on the sphere, through the geography cast
CREATE INDEX IF NOT EXISTS entity_geo_geog ON entity_geo USING gist ((geom::geography));
-- JSON-LD contexts hosted or cached by the broker (used in the default tenant's schema)
CREATE TABLE IF NOT EXISTS jsonld_contexts (
    id         text PRIMARY KEY,
    url        text NOT NULL UNIQUE,
    kind       text NOT NULL,                    -- Hosted | Cached | ImplicitlyCreated
    body       jsonb NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    last_used  text,
    hits       integer NOT NULL DEFAULT 0
);
-- the other tenants and their schemas (used in the default tenant's schema)
CREATE TABLE IF NOT EXISTS tenants (
    name        text PRIMARY KEY,
    schema_name text NOT NULL UNIQUE,
    created     timestamptz NOT NULL DEFAULT now()
);
