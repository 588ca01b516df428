-- Chats get a row (and a bucket) on first upload; members may exist before that.
CREATE TABLE chats (
    chat_id    TEXT PRIMARY KEY NOT NULL,
    bucket     TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    chat_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
) WITHOUT ROWID;

CREATE TABLE media (
    id              TEXT PRIMARY KEY NOT NULL,
    chat_id         TEXT NOT NULL,
    uploader        TEXT NOT NULL,
    filename        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    mime            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    status          TEXT NOT NULL,
    error_code      TEXT,
    error_message   TEXT,
    width           INTEGER,
    height          INTEGER,
    duration_ms     INTEGER,
    waveform        TEXT,
    blurhash        TEXT,
    thumbhash       TEXT,
    idempotency_key TEXT,
    UNIQUE (chat_id, idempotency_key)
);
CREATE INDEX media_chat ON media (chat_id);
CREATE INDEX media_expiry ON media (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE variants (
    media_id    TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    mime        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    width       INTEGER,
    height      INTEGER,
    duration_ms INTEGER,
    PRIMARY KEY (media_id, name)
) WITHOUT ROWID;

-- The job of a media that is still processing, written in the same transaction as the media
-- row, so an accepted upload always has its job (the outbox for a broker, later).
CREATE TABLE jobs (
    media_id     TEXT PRIMARY KEY NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,            -- queued | running
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,         -- unix ms
    lease_until  INTEGER                   -- unix ms, while running
);
CREATE INDEX jobs_ready ON jobs (state, available_at);

-- Objects whose catalog rows are gone but whose deletion from storage is not yet confirmed.
-- A NULL prefix means the whole bucket.
CREATE TABLE garbage (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    prefix TEXT
);
