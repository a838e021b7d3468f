-- History retention purges finished runs (with their jobs) and deleted snapshot rows
-- older than the retention, oldest first, in small batches.
create index run_finished_idx on run (finished_at) where status <> 'running';
create index snapshot_deleted_idx on snapshot (deleted_at) where state = 'deleted';
-- A run is purged only when no snapshot row still names it.
create index snapshot_run_idx on snapshot (run_id);
