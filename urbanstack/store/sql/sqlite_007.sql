-- urbanstack SQLite schema, version 7: new history instances are first appended here, in
-- arrival order, and moved into attr_instances in key order every few seconds (see
-- store/sqlite_history.py). No index: a batch of measures fills a few pages at the end of
-- the table instead of one page per series of the clustered table.
CREATE TABLE IF NOT EXISTS recent_instances (
    eid          INTEGER NOT NULL,
    pid          INTEGER NOT NULL,
    ds           TEXT NOT NULL,
    observed     INTEGER NOT NULL,
    iid          INTEGER NOT NULL,
    has_observed INTEGER NOT NULL,
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL,
    kind         INTEGER NOT NULL,
    vt           INTEGER NOT NULL,
    num,
    val,
    extra        BLOB
);
