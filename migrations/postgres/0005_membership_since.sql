-- Which membership a row is: set when a user is added, kept while they stay, new when they are
-- added again after leaving. Links are bound to it, so a member who leaves and comes back
-- does not get the old links back. Rows from before this keep ''.
ALTER TABLE members ADD COLUMN since TEXT NOT NULL DEFAULT '';
