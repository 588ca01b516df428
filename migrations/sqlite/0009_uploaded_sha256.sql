-- original_metadata: an image original may lose metadata at ingest, so the body as received
-- (what Content-Digest and an Idempotency-Key's retry are checked against) is no longer the
-- original as stored (sha256, size). Rows from before stored their bodies as sent.
ALTER TABLE media ADD COLUMN uploaded_sha256 TEXT NOT NULL DEFAULT '';
UPDATE media SET uploaded_sha256 = sha256;
