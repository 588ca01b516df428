-- The same tables as migrations/sqlite, in PostgreSQL's types: every integer is BIGINT
-- (sizes, unix seconds, unix ms) so both catalogs decode rows the same way.

-- Chats get a row (and a bucket) on first upload; members may exist before that.
CREATE TABLE chats (
    chat_id    TEXT PRIMARY KEY,
    bucket     TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    chat_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

CREATE TABLE media (
    id              TEXT PRIMARY KEY,
    chat_id         TEXT NOT NULL,
    uploader        TEXT NOT NULL,
    filename        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    mime            TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    status          TEXT NOT NULL,
    error_code      TEXT,
    error_message   TEXT,
    width           BIGINT,
    height          BIGINT,
    duration_ms     BIGINT,
    waveform        TEXT,
    blurhash        TEXT,
    thumbhash       TEXT,
    -- NULLs are distinct in a UNIQUE constraint, so uploads without a key never collide.
    idempotency_key TEXT,
    UNIQUE (chat_id, idempotency_key)
);
CREATE INDEX media_chat ON media (chat_id);
CREATE INDEX media_expiry ON media (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE variants (
    media_id    TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    mime        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    width       BIGINT,
    height      BIGINT,
    duration_ms BIGINT,
    PRIMARY KEY (media_id, name)
);

-- The job of a media that is still processing, written in the same transaction as the media
-- row, so an accepted upload always has its job (the outbox for a broker).
CREATE TABLE jobs (
    media_id     TEXT PRIMARY KEY REFERENCES media (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,            -- queued | published | running
    attempts     BIGINT NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,          -- unix ms
    lease_until  BIGINT                    -- unix ms, while running
);
CREATE INDEX jobs_ready ON jobs (state, available_at);

-- Objects whose catalog rows are gone but whose deletion from storage is not yet confirmed.
-- A NULL prefix means the whole bucket.
CREATE TABLE garbage (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket TEXT NOT NULL,
    prefix TEXT
);
