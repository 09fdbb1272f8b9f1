-- urbanstack SQLite schema, version 4: records and bounded logs of the platform's own
-- parts (IoT provisioning, dead letters), kept in the default tenant's file.
CREATE TABLE IF NOT EXISTS records (
    kind     TEXT NOT NULL,
    key      TEXT NOT NULL,
    doc      BLOB NOT NULL,            -- JSON
    modified TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    doc   BLOB NOT NULL                -- JSON
);
CREATE INDEX IF NOT EXISTS logs_by_kind ON logs (kind, seq);
