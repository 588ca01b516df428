-- Storage quotas (max_chat_bytes, max_user_bytes): what each media takes in storage (its
-- original and every variant), and the totals per chat and per uploader, kept exact by the
-- transactions that add and erase media. Rows from before are counted here.
ALTER TABLE media ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE media SET stored_bytes = size
    + COALESCE((SELECT SUM(v.size) FROM variants v WHERE v.media_id = media.id), 0);

CREATE TABLE chat_usage (
    chat_id TEXT PRIMARY KEY,
    bytes   BIGINT NOT NULL,
    media   BIGINT NOT NULL
);

CREATE TABLE user_usage (
    user_id TEXT PRIMARY KEY,
    bytes   BIGINT NOT NULL,
    media   BIGINT NOT NULL
);

INSERT INTO chat_usage (chat_id, bytes, media)
    SELECT chat_id, SUM(stored_bytes), COUNT(*) FROM media GROUP BY chat_id;
INSERT INTO user_usage (user_id, bytes, media)
    SELECT uploader, SUM(stored_bytes), COUNT(*) FROM media GROUP BY uploader;
