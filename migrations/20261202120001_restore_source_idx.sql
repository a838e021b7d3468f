-- The deletion claim skips snapshots a restore (or restore test) in flight is
-- using: found through this index, not by scanning the jobs.
create index job_restore_source_idx on job ((restore ->> 'snapshot_id'))
    where kind <> 'snapshot' and status in ('pending', 'creating', 'tracking');
