-- Each garbage row retries on its own schedule, so rows that keep failing never hold back
-- the others: attempts so far, and when the row is due again (unix ms).
ALTER TABLE garbage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE garbage ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;
