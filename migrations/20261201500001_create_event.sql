-- Events: every change of state of a policy, run, job and snapshot, written by
-- triggers in the transaction that makes the change (an outbox). Whatever code
-- path changes a row, its event commits with it or not at all.
--
-- Read order is (xact_id, seq): the id of the writing transaction, then the
-- order of writing. Ids are not in commit order, so a reader only takes events
-- of transactions older than its snapshot's xmin (every one of them has ended,
-- and any transaction that writes later gets a larger id): what it has paged
-- past can never gain an event. See store::events.
create table event (
    event_id    uuid primary key default gen_random_uuid(),
    xact_id     bigint not null default (pg_current_xact_id()::text::bigint),
    seq         bigint generated always as identity,
    kind        text not null,
    at          timestamptz not null default now(),
    project_id  text not null,
    policy_id   uuid,
    run_id      uuid,
    job_id      uuid,
    snapshot_id uuid,
    -- A Keystone user id, `api` (a request with no known user: `--auth none`),
    -- or `scheduler` / `engine` for the service's own transitions.
    actor       text not null,
    data        jsonb not null default '{}',
    constraint event_kind_check check (kind in (
        'policy.created', 'policy.updated', 'policy.deleted', 'policy.broken',
        'run.fired', 'run.missed', 'run.succeeded', 'run.partially_failed', 'run.failed',
        'job.started', 'job.succeeded', 'job.failed', 'job.timed_out', 'job.cancelled',
        'snapshot.created', 'snapshot.deleted', 'snapshot.delete_failed', 'snapshot.delete_blocked'))
);

create unique index event_order_idx on event (xact_id, seq);
create index event_project_order_idx on event (project_id, xact_id, seq);
create index event_policy_idx on event (policy_id, xact_id, seq) where policy_id is not null;
create index event_job_idx on event (job_id, xact_id, seq) where job_id is not null;
create index event_at_idx on event (at);

-- Who made the change: what the transaction set (`set_config('stacksnap.actor', .., true)`,
-- the API's writes), else `fallback`. Unset, the setting reads as '' or null.
create function event_actor(fallback text) returns text as $$
    select coalesce(nullif(current_setting('stacksnap.actor', true), ''), fallback);
$$ language sql stable;

-- Drops null members, so `data` names only what is known.
create function event_data(data jsonb) returns jsonb as $$
    select jsonb_strip_nulls(data);
$$ language sql immutable;

create function policy_event() returns trigger as $$
begin
    if tg_op = 'INSERT' then
        insert into event (kind, project_id, policy_id, actor, data)
        values ('policy.created', new.project_id, new.policy_id,
                event_actor(coalesce(new.created_by, 'api')),
                event_data(jsonb_build_object('name', new.name, 'version', new.version,
                                              'enabled', new.enabled)));
        return null;
    end if;
    if tg_op = 'DELETE' then
        insert into event (kind, project_id, policy_id, actor, data)
        values ('policy.deleted', old.project_id, old.policy_id, event_actor('api'),
                event_data(jsonb_build_object('name', old.name, 'version', old.version)));
        return null;
    end if;
    if new.version is distinct from old.version then
        insert into event (kind, project_id, policy_id, actor, data)
        values ('policy.updated', new.project_id, new.policy_id,
                event_actor(coalesce(new.updated_by, 'api')),
                event_data(jsonb_build_object('name', new.name, 'version', new.version,
                                              'enabled', new.enabled)));
    end if;
    if new.broken_error is not null and new.broken_error is distinct from old.broken_error then
        insert into event (kind, project_id, policy_id, actor, data)
        values ('policy.broken', new.project_id, new.policy_id, event_actor('scheduler'),
                event_data(jsonb_build_object('name', new.name, 'error', new.broken_error)));
    end if;
    return null;
end;
$$ language plpgsql;

create trigger policy_event_insert after insert on policy
    for each row execute function policy_event();
create trigger policy_event_delete after delete on policy
    for each row execute function policy_event();
-- The scheduler moves next_run_at often: only these columns can make an event.
create trigger policy_event_update after update of version, broken_error on policy
    for each row
    when (old.version is distinct from new.version
          or (new.broken_error is not null and old.broken_error is distinct from new.broken_error))
    execute function policy_event();

create function run_event() returns trigger as $$
declare
    kind text;
    actor text;
begin
    if tg_op = 'INSERT' then
        kind := case when new.status = 'running' then 'run.fired' else 'run.' || new.status end;
        actor := case when new.trigger = 'schedule' then event_actor('scheduler')
                      else event_actor(coalesce(new.created_by, 'api')) end;
    else
        kind := 'run.' || new.status;
        actor := event_actor(case when new.status = 'missed' then 'scheduler' else 'engine' end);
    end if;
    insert into event (kind, project_id, policy_id, run_id, actor, data)
    values (kind, new.project_id, new.policy_id, new.run_id, actor,
            event_data(jsonb_build_object('trigger', new.trigger, 'scheduled_for', new.scheduled_for,
                                          'policy_name', new.policy_name, 'error', new.error)));
    return null;
end;
$$ language plpgsql;

create trigger run_event_insert after insert on run
    for each row execute function run_event();
create trigger run_event_update after update of status on run
    for each row when (old.status = 'running' and new.status <> 'running')
    execute function run_event();

create function job_event() returns trigger as $$
begin
    if old.started_at is null and new.started_at is not null then
        insert into event (kind, project_id, policy_id, run_id, job_id, actor, data)
        values ('job.started', new.project_id, new.policy_id, new.run_id, new.job_id, event_actor('engine'),
                event_data(jsonb_build_object('resource_type', new.resource_type,
                                              'resource_id', new.resource_id,
                                              'resource_name', new.resource_name,
                                              'attempt', new.attempt)));
    end if;
    if old.status in ('pending', 'creating', 'tracking')
       and new.status in ('succeeded', 'failed', 'timed_out', 'cancelled') then
        insert into event (kind, project_id, policy_id, run_id, job_id, actor, data)
        values ('job.' || new.status, new.project_id, new.policy_id, new.run_id, new.job_id,
                event_actor('engine'),
                event_data(jsonb_build_object('resource_type', new.resource_type,
                                              'resource_id', new.resource_id,
                                              'resource_name', new.resource_name,
                                              'image_id', new.image_id,
                                              'consistency', new.consistency,
                                              'error', new.error)));
    end if;
    return null;
end;
$$ language plpgsql;

create trigger job_event_update after update of status, started_at on job
    for each row
    when ((old.started_at is null and new.started_at is not null)
          or (old.status in ('pending', 'creating', 'tracking')
              and new.status in ('succeeded', 'failed', 'timed_out', 'cancelled')))
    execute function job_event();

create function snapshot_event() returns trigger as $$
begin
    insert into event (kind, project_id, policy_id, run_id, job_id, snapshot_id, actor, data)
    values (case when tg_op = 'INSERT' then 'snapshot.created' else 'snapshot.' || new.state end,
            new.project_id, new.policy_id, new.run_id, new.job_id, new.snapshot_id, event_actor('engine'),
            event_data(jsonb_build_object(
                'resource_type', new.resource_type, 'resource_id', new.resource_id,
                'resource_name', new.resource_name, 'image_id', new.image_id,
                'group_snapshot_id', new.group_snapshot_id,
                'volume_snapshot_ids', (select jsonb_agg(piece -> 'snapshot_id')
                                        from jsonb_array_elements(new.volume_snapshots) as piece),
                'complete', new.complete, 'duplicate', new.duplicate,
                'error', case when tg_op = 'UPDATE' and new.state <> 'deleted' then new.delete_error end,
                'blocked_by', case when tg_op = 'UPDATE' and new.state = 'delete_blocked'
                                   then new.delete_blocked_by end)));
    return null;
end;
$$ language plpgsql;

create trigger snapshot_event_insert after insert on snapshot
    for each row execute function snapshot_event();
create trigger snapshot_event_update after update of state on snapshot
    for each row
    when (old.state is distinct from new.state
          and new.state in ('deleted', 'delete_failed', 'delete_blocked'))
    execute function snapshot_event();
