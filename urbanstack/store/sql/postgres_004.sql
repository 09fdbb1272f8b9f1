-- urbanstack PostgreSQL schema, version 4: records and bounded logs of the platform's own
-- parts (IoT provisioning, dead letters), kept in the default tenant's schema.
CREATE TABLE IF NOT EXISTS records (
    kind     text COLLATE "C" NOT NULL,
    key      text COLLATE "C" NOT NULL,
    doc      json NOT NULL,
    modified text NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS logs (
    seq  bigserial PRIMARY KEY,
    kind text NOT NULL,
    doc  json NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_kind ON logs (kind, seq);
