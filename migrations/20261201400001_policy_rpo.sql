-- The policy's recovery point objective in seconds, as the service last worked
-- it out when the policy was written (`options.rpo`, or the longest gap between
-- fire times over the next year plus the timeout): freshness is then plain SQL.
-- Null for policies written before it existed, until the service fills it in.
alter table policy add column rpo_seconds bigint;

-- The status summary counts recent failed jobs and missed runs.
create index job_failed_finished_idx on job (finished_at) where status in ('failed', 'timed_out');
create index run_missed_idx on run (scheduled_for) where status = 'missed';
