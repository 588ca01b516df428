-- The event outbox: one row per event and sink ('amqp', 'webhook'), written in the
-- transaction of the change it reports and removed once that sink has it (a broker's confirm,
-- a webhook's 2xx). Per order_key (the media, or 'chat:<id>') only the oldest pending row is
-- claimed, so events of one media go out in order; a 'dead' row holds nothing back.
CREATE TABLE event_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    event_id    TEXT NOT NULL,              -- ULID, the same for every sink
    sink        TEXT NOT NULL,              -- amqp | webhook
    order_key   TEXT NOT NULL,
    event       TEXT NOT NULL,              -- media.ready, media.erased, chat.erased, ...
    chat_id     TEXT NOT NULL,
    media_id    TEXT,
    body        TEXT NOT NULL,              -- the JSON delivered
    state       TEXT NOT NULL,              -- pending | dead
    attempts    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,           -- unix ms, when the change committed
    queued_at   BIGINT NOT NULL,           -- unix ms, written or re-queued: the age limit's start
    next_at     BIGINT NOT NULL,           -- unix ms, due
    lease_until BIGINT,                    -- unix ms, while a node delivers it
    lease_owner TEXT,
    last_error  TEXT,
    UNIQUE (event_id, sink)
);
CREATE INDEX event_outbox_order ON event_outbox (sink, state, order_key, seq);
