-- Which process holds a job's lease, so that a restarting embedded process releases only its
-- own leases and never those of another process sharing the catalog.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
