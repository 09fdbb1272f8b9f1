-- urbanstack SQLite schema, version 3: subscriptions and the notification outbox.
CREATE TABLE IF NOT EXISTS subscriptions (
    seq               INTEGER PRIMARY KEY,     -- creation order (listing)
    id                TEXT NOT NULL UNIQUE,
    doc               BLOB NOT NULL,           -- the subscription, stored JSON form
    times_sent        INTEGER NOT NULL DEFAULT 0,
    times_failed      INTEGER NOT NULL DEFAULT 0,
    last_notification TEXT,
    last_success      TEXT,
    last_failure      TEXT,
    failing           INTEGER NOT NULL DEFAULT 0
);
-- one row per notification to send, written in the transaction of the change that caused
-- it; deleted once delivered. seq orders the changes: per (subscription, entity) the
-- worker delivers in seq order. AUTOINCREMENT: a seq is never reused, even after the rows
-- above it were delivered and deleted (the worker skips rows up to the last seq it sent).
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    payload         BLOB NOT NULL,           -- what to notify (JSON), rendered at delivery
    created         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt    REAL NOT NULL,           -- unix time of the next try
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_subscription ON outbox (subscription_id, seq);
