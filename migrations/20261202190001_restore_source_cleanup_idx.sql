-- The deletion claim also waits for a restore's (or restore test's) clean-up:
-- until it is over, volumes made from the snapshot's Cinder snapshots may
-- still exist. The index covers jobs in flight and ended jobs owing a clean-up.
drop index if exists job_restore_source_idx;
create index job_restore_source_idx on job ((restore ->> 'snapshot_id'))
    where kind <> 'snapshot'
      and (status in ('pending', 'creating', 'tracking') or cleanup_due_at is not null);
