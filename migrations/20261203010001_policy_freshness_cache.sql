-- Issue 13 item 6: `GET /v1/policies/{id}` reads a policy's freshness instead
-- of computing it (the freshness query costs ~1-10 ms of PostgreSQL a policy).
-- The cache is exact: a row is served only while no write it did not see has
-- touched what the freshness query reads, and only before the instant its
-- time-dependent parts change (see DESIGN.md, Freshness: the cache).

-- A policy's freshness as the query computed it at `computed_at` from the
-- snapshot `as_of` (the statement's own), valid for instants in
-- [computed_at, valid_until) unless a change row of the policy is not visible in `as_of`.
create table policy_freshness_cache (
    policy_id            uuid primary key references policy (policy_id) on delete cascade,
    last_run_at          timestamptz,
    last_success_at      timestamptz,
    stale_resources      bigint not null,
    orphaned_resources   bigint not null,
    unverified_resources bigint not null,
    computed_at          timestamptz not null,
    valid_until          timestamptz not null,
    as_of                pg_snapshot not null
);

-- Every write that can change a policy's freshness appends a row here, in its
-- own transaction (`xid`). Append-only and without a unique constraint, so
-- inserts never wait on each other (no shared row is updated by a trigger:
-- such metric triggers once deadlocked the engine). No foreign key either: it
-- would lock the policy row (key share) from every run, job and snapshot write.
-- The engine's `freshness` task deletes the rows every cache row has seen.
create table freshness_change (
    policy_id uuid not null,
    xid       xid8 not null default pg_current_xact_id()
);
create index freshness_change_policy_idx on freshness_change (policy_id);

-- Whether snapshot `newer` sees every transaction `older` sees: a cache row is
-- replaced only by a computation that saw at least what it saw, so a slow
-- reader with an old snapshot never overwrites a fresher value (and a change
-- row a cache row has seen stays seen by every later one, which lets the
-- garbage collection delete it).
create function freshness_snapshot_covers(newer pg_snapshot, older pg_snapshot) returns boolean as $$
    select pg_snapshot_xmax(older) <= pg_snapshot_xmax(newer)
       and not exists (select 1 from pg_snapshot_xip(newer) x where pg_visible_in_snapshot(x, older));
$$ language sql immutable;

-- Statement-level on insert and delete (transition tables, one change row per
-- distinct policy); row-level with a WHEN clause on update, because a trigger
-- with a column list cannot have transition tables and the engine updates jobs,
-- runs and snapshots constantly in ways freshness does not read: the WHEN
-- clause is evaluated without calling a function.
create function freshness_changed_rows() returns trigger as $$
begin
    if tg_op = 'INSERT' then
        insert into freshness_change (policy_id)
        select distinct policy_id from new_rows where policy_id is not null;
    else
        insert into freshness_change (policy_id)
        select distinct policy_id from old_rows where policy_id is not null;
    end if;
    return null;
end;
$$ language plpgsql;

-- The policy of a job is its run's (a job's own `policy_id` is informational).
create function freshness_changed_jobs() returns trigger as $$
begin
    if tg_op = 'INSERT' then
        insert into freshness_change (policy_id)
        select distinct r.policy_id from new_rows n join run r using (run_id) where r.policy_id is not null
        union
        select distinct n.policy_id from new_rows n where n.policy_id is not null;
    else
        insert into freshness_change (policy_id)
        select distinct r.policy_id from old_rows o join run r using (run_id) where r.policy_id is not null
        union
        select distinct o.policy_id from old_rows o where o.policy_id is not null;
    end if;
    return null;
end;
$$ language plpgsql;

create function freshness_changed_row() returns trigger as $$
begin
    insert into freshness_change (policy_id)
    select distinct id from (values (old.policy_id), (new.policy_id)) v(id) where id is not null;
    return null;
end;
$$ language plpgsql;

create function freshness_changed_job_row() returns trigger as $$
begin
    insert into freshness_change (policy_id)
    select distinct r.policy_id from run r where r.run_id in (old.run_id, new.run_id) and r.policy_id is not null;
    return null;
end;
$$ language plpgsql;

-- policy: what the `p` CTE reads (project_id, enabled, resource_type, targets,
-- rpo_seconds, options' verify cadence). Insert needs nothing: a new policy has
-- no cache row; delete removes the cache row.
create trigger policy_freshness_change after update on policy
    for each row
    when (old.project_id is distinct from new.project_id or old.enabled is distinct from new.enabled
          or old.resource_type is distinct from new.resource_type or old.targets is distinct from new.targets
          or old.rpo_seconds is distinct from new.rpo_seconds or old.options is distinct from new.options)
    execute function freshness_changed_row();

-- run: policy_id, trigger, status, resolved_at, error, scheduled_for, finished_at.
create trigger run_freshness_insert after insert on run referencing new table as new_rows
    for each statement execute function freshness_changed_rows();
create trigger run_freshness_delete after delete on run referencing old table as old_rows
    for each statement execute function freshness_changed_rows();
create trigger run_freshness_update after update on run
    for each row
    when (old.policy_id is distinct from new.policy_id or old.trigger is distinct from new.trigger
          or old.status is distinct from new.status or old.resolved_at is distinct from new.resolved_at
          or old.error is distinct from new.error or old.scheduled_for is distinct from new.scheduled_for
          or old.finished_at is distinct from new.finished_at)
    execute function freshness_changed_row();

-- job: run_id, resource_type, resource_id, resource_name (targets; a failed
-- run counts as resolved when it has jobs).
create trigger job_freshness_insert after insert on job referencing new table as new_rows
    for each statement execute function freshness_changed_jobs();
create trigger job_freshness_delete after delete on job referencing old table as old_rows
    for each statement execute function freshness_changed_jobs();
create trigger job_freshness_update after update on job
    for each row
    when (old.run_id is distinct from new.run_id or old.resource_type is distinct from new.resource_type
          or old.resource_id is distinct from new.resource_id
          or old.resource_name is distinct from new.resource_name)
    execute function freshness_changed_job_row();

-- snapshot: policy_id, resource_type, resource_id, resource_name, state,
-- complete, taken_at, verified_at, verify_error.
create trigger snapshot_freshness_insert after insert on snapshot referencing new table as new_rows
    for each statement execute function freshness_changed_rows();
create trigger snapshot_freshness_delete after delete on snapshot referencing old table as old_rows
    for each statement execute function freshness_changed_rows();
create trigger snapshot_freshness_update after update on snapshot
    for each row
    when (old.policy_id is distinct from new.policy_id or old.resource_type is distinct from new.resource_type
          or old.resource_id is distinct from new.resource_id
          or old.resource_name is distinct from new.resource_name or old.state is distinct from new.state
          or old.complete is distinct from new.complete or old.taken_at is distinct from new.taken_at
          or old.verified_at is distinct from new.verified_at
          or old.verify_error is distinct from new.verify_error)
    execute function freshness_changed_row();
