-- Enabled policies with no next fire time that the scheduler has not set aside:
-- an older replica cleared next_run_at of a row it could not parse (with only a
-- log line). The scheduler replans them every tick; this index keeps that work
-- proportional to such policies, not to all of them.
create index policy_unplanned_idx on policy (policy_id)
    where enabled and next_run_at is null and broken_error is null;
