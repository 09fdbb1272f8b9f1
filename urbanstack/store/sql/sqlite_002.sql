-- urbanstack SQLite schema, version 2: entity history (the NGSI-LD temporal API).
-- Entities with a history, kept apart from `entities` so that history can outlive a
-- deleted entity (setting history_on_delete=keep) and survive its re-creation.
CREATE TABLE IF NOT EXISTS temporal_entities (
    eid   INTEGER PRIMARY KEY,
    id    TEXT NOT NULL UNIQUE,
    types BLOB NOT NULL                -- JSON list of type IRIs, as last written
);
-- one row per attribute instance, clustered by series (entity, attribute, datasetId) and
-- time: one series' time range is one contiguous B-tree range, read in time order without
-- sorting. Times are microseconds since 1970 UTC.
CREATE TABLE IF NOT EXISTS attr_instances (
    eid          INTEGER NOT NULL,
    pid          INTEGER NOT NULL,     -- attribute IRI, interned in `paths`
    ds           TEXT NOT NULL,        -- datasetId, '' for the default instance
    observed     INTEGER NOT NULL,     -- observedAt, or the modification time without one
    iid          INTEGER NOT NULL,     -- instance number (instanceId), unique per tenant
    has_observed INTEGER NOT NULL,     -- 1 when observedAt was given
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL,
    kind         INTEGER NOT NULL,     -- attribute type, index into ngsild.model.ATTRIBUTE_TYPES
    vt           INTEGER NOT NULL,     -- the value's JSON type (ngsild.history.VT_*)
    num,                               -- the value when a number (as given) or a boolean (0/1)
    val,                               -- the value when text, or JSON bytes; NULL for numbers
    extra        BLOB,                 -- unitCode, objectType, sub-attributes (JSON) or NULL
    PRIMARY KEY (eid, pid, ds, observed, iid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO history_counters (name, value) VALUES ('next_iid', 1);
