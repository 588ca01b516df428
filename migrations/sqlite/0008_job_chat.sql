-- Each job knows its chat, so that the claim can be fair across chats: the job of a chat with
-- fewer jobs running goes first, and max_jobs_in_flight_per_chat caps how many one chat runs.
ALTER TABLE jobs ADD COLUMN chat_id TEXT NOT NULL DEFAULT '';
UPDATE jobs SET chat_id = COALESCE((SELECT m.chat_id FROM media m WHERE m.id = jobs.media_id), '');
CREATE INDEX jobs_chat_state ON jobs (chat_id, state);
