-- Resumable uploads (tus 1.0 through upload tickets). One row per ticket once its upload is
-- created: the offset and the store's staging state (opaque to the catalog) are the whole
-- truth of an upload, so any API node can take its next PATCH. `lease_token` and
-- `lease_until` serialise PATCHes: set and cleared by conditional UPDATEs, never a row lock
-- held over a streaming body.
CREATE TABLE tus_uploads (
    id                TEXT PRIMARY KEY NOT NULL,
    chat_id           TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    -- The membership the ticket was issued under: the upload ends with it.
    membership        TEXT NOT NULL,
    bucket            TEXT NOT NULL,
    generation        TEXT NOT NULL,
    length            BIGINT NOT NULL,
    upload_offset     BIGINT NOT NULL DEFAULT 0,
    filename          TEXT,
    media_ttl_seconds BIGINT,
    stage             TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL DEFAULT 'open',
    media_id          TEXT,
    lease_token       TEXT,
    lease_until       BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    ticket_expires_at BIGINT NOT NULL
);
-- The staged bytes a chat's and a user's open uploads hold are summed at each creation and
-- PATCH (quotas).
CREATE INDEX tus_uploads_chat ON tus_uploads (chat_id, state);
CREATE INDEX tus_uploads_user ON tus_uploads (user_id, state);
CREATE INDEX tus_uploads_expiry ON tus_uploads (state, expires_at);
