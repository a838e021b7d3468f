-- The policy's recovery point objective in seconds, as the service last worked
-- it out when the policy was written (`options.rpo`, or the longest gap between
-- fire times over the next year plus the timeout): freshness is then plain SQL.
-- Null for policies written before it existed, until the service fills it in.
alter table policy add column rpo_seconds bigint;

-- The status summary counts recent failed jobs and missed runs.
create index job_failed_finished_idx on job (finished_at) where status in ('failed', 'timed_out');
create index run_missed_idx on run (scheduled_for) where status = 'missed';

-- A policy's explicit target ids. The same as jsonb_array_elements_text, but
-- the planner is told a policy names about one id (it guesses 100 for the
-- builtin, which over a few thousand policies inflates the estimate of the
-- freshness queries fifteenfold and makes PostgreSQL JIT-compile them for
-- longer than they run). The SET clause keeps it from being inlined, which
-- would drop that estimate.
create function policy_target_ids(targets jsonb) returns setof text
    language sql immutable parallel safe rows 1 set search_path = pg_catalog
    as $$ select jsonb_array_elements_text(coalesce(targets -> 'ids', '[]')) $$;
