-- urbanstack PostgreSQL schema, version 2: entity history (the NGSI-LD temporal API).
-- Entities with a history, apart from `entities`: history can outlive a deleted entity.
CREATE TABLE IF NOT EXISTS temporal_entities (
    eid   bigserial PRIMARY KEY,
    id    text COLLATE "C" NOT NULL UNIQUE,
    types text[] NOT NULL                        -- type IRIs, as last written
);
-- one series per (entity, attribute, datasetId)
CREATE TABLE IF NOT EXISTS attr_series (
    sid  bigserial PRIMARY KEY,
    eid  bigint NOT NULL,
    attr text COLLATE "C" NOT NULL,
    ds   text COLLATE "C" NOT NULL,              -- datasetId, '' for the default instance
    UNIQUE (eid, attr, ds)
);
-- one row per attribute instance, partitioned by month of `observed` (partitions are made
-- on demand, see postgres_history.py; times out of range go to the default partition).
-- Times are microseconds since 1970 UTC.
CREATE TABLE IF NOT EXISTS attr_instances (
    sid          bigint NOT NULL,
    observed     bigint NOT NULL,                -- observedAt, or the modification time
    iid          bigint NOT NULL,                -- instance number (instanceId)
    has_observed boolean NOT NULL,
    created      bigint NOT NULL,
    modified     bigint NOT NULL,
    kind         smallint NOT NULL,              -- index into ngsild.model.ATTRIBUTE_TYPES
    vt           smallint NOT NULL,              -- the value's JSON type (ngsild.history.VT_*)
    num          double precision,               -- a number or boolean (0/1), for aggregation
    inum         bigint,                         -- the same when it was an integer
    val          text COLLATE "C",               -- text, or JSON for other values
    extra        bytea,                          -- unitCode, objectType, sub-attributes (JSON)
    PRIMARY KEY (sid, observed, iid)
) PARTITION BY RANGE (observed);
CREATE TABLE IF NOT EXISTS attr_instances_default PARTITION OF attr_instances DEFAULT;
CREATE INDEX IF NOT EXISTS attr_instances_iid ON attr_instances (iid);
CREATE SEQUENCE IF NOT EXISTS instance_numbers;
