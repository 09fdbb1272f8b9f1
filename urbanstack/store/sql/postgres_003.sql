-- urbanstack PostgreSQL schema, version 3: subscriptions and the notification outbox.
CREATE TABLE IF NOT EXISTS subscriptions (
    seq               bigserial PRIMARY KEY,     -- creation order (listing)
    id                text NOT NULL UNIQUE,
    doc               jsonb NOT NULL,            -- the subscription, stored JSON form
    times_sent        bigint NOT NULL DEFAULT 0,
    times_failed      bigint NOT NULL DEFAULT 0,
    last_notification text,
    last_success      text,
    last_failure      text,
    failing           boolean NOT NULL DEFAULT false
);
-- one row per notification to send, written in the transaction of the change that caused
-- it; deleted once delivered. seq (a sequence: never reused) orders the changes.
CREATE TABLE IF NOT EXISTS outbox (
    seq             bigserial PRIMARY KEY,
    subscription_id text NOT NULL,
    entity_id       text NOT NULL,
    payload         bytea NOT NULL,              -- what to notify (JSON), rendered at delivery
    created         text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt    double precision NOT NULL,   -- unix time of the next try
    last_error      text
);
CREATE INDEX IF NOT EXISTS outbox_by_subscription ON outbox (subscription_id, seq);
-- which store instance delivers each subscription's notifications, until when: several
-- processes share the outbox, each subscription is delivered by one of them at a time
CREATE TABLE IF NOT EXISTS outbox_claims (
    subscription_id text PRIMARY KEY,
    owner           text NOT NULL,
    until           double precision NOT NULL   -- unix time the claim lapses unless renewed
);
