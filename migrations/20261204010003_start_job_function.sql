-- A job's start as one statement (issue 13). Starts are serialised across
-- replicas by a transaction-level advisory lock so the limits hold. Sent as
-- four round trips (lock, fold the kept count, move the job, commit), the
-- lock was held across the engine's network and scheduling delays: under
-- load the holder sat "idle in transaction" while every other start queued
-- on the lock (~110 starts a second on 2 cores). As one call the lock is held
-- for the work in the server only, and released by the statement's commit.
--
-- Returns 'started', 'at_capacity' or
-- 'lost' (the job is no longer this owner's pending job). A second job of a
-- resource in flight fails the statement with a unique violation of
-- `job_one_in_flight_per_resource_idx`, as the update did before.
create function stacksnap_start_job(
    p_job_id uuid,
    p_owner uuid,
    p_now timestamptz,
    p_deadline timestamptz,
    p_global_limit bigint,
    p_policy_id uuid,
    p_policy_limit bigint
) returns text as $$
declare
    in_flight bigint;
    changes bigint;
    delta bigint;
    policy_in_flight bigint;
begin
    perform pg_advisory_xact_lock(7262);
    -- The per-policy limit first: it refuses without writing anything.
    if p_policy_limit is not null then
        select count(*) into policy_in_flight from job
        where policy_id = p_policy_id and kind = 'snapshot' and status in ('creating', 'tracking');
        if policy_in_flight >= p_policy_limit then
            return 'at_capacity';
        end if;
    end if;
    -- Folds the committed changes; the count row is written only when there
    -- are any, so a refusal with nothing to fold writes nothing.
    with folded as (delete from job_in_flight_change returning n)
    select count(*), coalesce(sum(n), 0) into changes, delta from folded;
    if changes > 0 then
        update job_in_flight_count set n = n + delta returning n into in_flight;
    else
        select n into in_flight from job_in_flight_count;
    end if;
    if in_flight is null then
        -- The count's row is gone (deleted by hand): counted again, with the
        -- changes since, in one snapshot.
        with gone as (delete from job_in_flight_change)
        insert into job_in_flight_count (n)
        select count(*) from job where status in ('creating', 'tracking')
        returning n into in_flight;
    end if;
    if in_flight >= p_global_limit then
        return 'at_capacity';
    end if;
    update job set status = 'creating', attempt = attempt + 1,
        started_at = coalesce(started_at, p_now), deadline = coalesce(deadline, p_deadline)
    where job_id = p_job_id and lease_owner = p_owner and status = 'pending';
    if found then
        return 'started';
    end if;
    return 'lost';
end;
$$ language plpgsql;
