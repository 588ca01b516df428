-- A chat erased and used again is a new generation, with a bucket of its own: an upload begun
-- before the erase can never be recorded into the new chat, and a late deletion of the old
-- bucket can never touch the new one. Chats recorded before this keep '' and their bucket.
ALTER TABLE chats ADD COLUMN generation TEXT NOT NULL DEFAULT '';
