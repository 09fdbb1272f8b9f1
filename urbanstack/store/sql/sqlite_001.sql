-- urbanstack SQLite schema, version 1: one database file per tenant.
-- Index rows are only ever deleted by their full key (the writer recomputes them from the
-- stored entity), so the index tables need no secondary index by entity.
CREATE TABLE IF NOT EXISTS entities (
    rid         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    doc         BLOB NOT NULL,         -- the entity in stored (expanded) form, JSON
    view        BLOB                   -- its default rendering (see EntityStore.view_renderer)
);
CREATE TABLE IF NOT EXISTS entity_types (
    type TEXT NOT NULL,
    rid  INTEGER NOT NULL,
    PRIMARY KEY (type, rid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_scopes (
    scope TEXT NOT NULL,
    rid   INTEGER NOT NULL,
    PRIMARY KEY (scope, rid)
) WITHOUT ROWID;
-- interned attribute paths: attr IRI, then \x1f sub-attribute IRI, then \x1e compound key,
-- and for typed leaf values a \x1d suffix: "rel" (relationship objects), "dt" (datetimes),
-- "bool" (booleans, stored as 0/1)
CREATE TABLE IF NOT EXISTS paths (
    pid  INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE
);
-- which attributes (and sub-attributes) each entity has, with their attribute type
CREATE TABLE IF NOT EXISTS attr_presence (
    pid  INTEGER NOT NULL,
    rid  INTEGER NOT NULL,
    kind TEXT NOT NULL,
    n    INTEGER NOT NULL,             -- number of instances (datasetIds)
    PRIMARY KEY (pid, rid, kind)
) WITHOUT ROWID;
-- the attribute-value index used by q: one row per distinct leaf value per path and per
-- entity type (tid: the interned type IRI), so type + value queries are one index range
CREATE TABLE IF NOT EXISTS attr_values (
    pid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    val NOT NULL,
    rid INTEGER NOT NULL,
    PRIMARY KEY (pid, tid, val, rid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS geo (
    gid INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    wkb BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS geo_rid ON geo (rid);
CREATE VIRTUAL TABLE IF NOT EXISTS geo_rtree USING rtree (gid, minx, maxx, miny, maxy);
-- JSON-LD contexts hosted or cached by the broker (used in the default tenant's file)
CREATE TABLE IF NOT EXISTS jsonld_contexts (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,          -- Hosted | Cached | ImplicitlyCreated
    body       BLOB NOT NULL,
    created_at TEXT NOT NULL,
    last_used  TEXT,
    hits       INTEGER NOT NULL DEFAULT 0
);
