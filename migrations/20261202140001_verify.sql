-- Issue 12 item 3: restore tests on a schedule (`options.verify`).
--
-- A snapshot records its last passing restore test (`verified_at`) and the
-- last failing one (`verify_error`: {code, message, at}); a pass clears the
-- error, a failure keeps the old `verified_at`.
alter table snapshot
    add column verified_at timestamptz,
    add column verify_error jsonb;

-- When the engine last looked at each verifying policy; replicas claim the
-- policies due a look (as `policy_join_watch`), so each is read once per interval.
create table policy_verify_watch (
    policy_id  uuid primary key references policy (policy_id) on delete cascade,
    checked_at timestamptz not null
);

-- The restore tests of a policy's target, newest first: whether one started
-- within the cadence, read under the policy's lock before another is queued.
create index job_verify_idx on job (policy_id, resource_type, resource_id, created_at)
    where kind = 'verify';

-- The cadence of `options.verify.every` in seconds (a duration as the API
-- validated it: `7d`, `1h30m`; units s, m, h, d, w), null without `verify`.
create function policy_verify_seconds(p_options jsonb) returns bigint as $$
    select sum(m[1]::bigint * case m[2] when 's' then 1 when 'm' then 60 when 'h' then 3600
                                        when 'd' then 86400 when 'w' then 604800 end)::bigint
    from regexp_matches(p_options -> 'verify' ->> 'every', '([0-9]+)([smhdw])', 'g') as m;
$$ language sql immutable;

alter table event drop constraint event_kind_check;
alter table event add constraint event_kind_check check (kind in (
    'policy.created', 'policy.updated', 'policy.deleted', 'policy.broken',
    'run.fired', 'run.missed', 'run.succeeded', 'run.partially_failed', 'run.failed',
    'job.started', 'job.succeeded', 'job.failed', 'job.timed_out', 'job.cancelled',
    'snapshot.created', 'snapshot.deleted', 'snapshot.delete_failed', 'snapshot.delete_blocked',
    'snapshot.verified', 'snapshot.verify_failed'));

-- Each restore test's result: an event in the transaction that records it,
-- and `stacksnap_snapshot_verifications_total{status}` (passed | failed).
create function snapshot_verify_event() returns trigger as $$
declare
    passed boolean := new.verified_at is distinct from old.verified_at and new.verify_error is null;
begin
    insert into event (kind, project_id, policy_id, run_id, job_id, snapshot_id, actor, data)
    values (case when passed then 'snapshot.verified' else 'snapshot.verify_failed' end,
            new.project_id, new.policy_id, new.run_id, new.job_id, new.snapshot_id, event_actor('engine'),
            event_data(jsonb_build_object(
                'resource_type', new.resource_type, 'resource_id', new.resource_id,
                'resource_name', new.resource_name, 'verified_at', new.verified_at,
                'error', new.verify_error)));
    insert into metric_delta (family, labels, value)
    values ('stacksnap_snapshot_verifications_total',
            jsonb_build_object('status', case when passed then 'passed' else 'failed' end), 1);
    return null;
end;
$$ language plpgsql;

create trigger snapshot_verify_event after update of verified_at, verify_error on snapshot
    for each row
    when (old.verified_at is distinct from new.verified_at
          or old.verify_error is distinct from new.verify_error and new.verify_error is not null)
    execute function snapshot_verify_event();

-- A restore test's run is the engine's own doing, like a scheduled run.
create or replace function run_event() returns trigger as $$
declare
    kind text;
    actor text;
begin
    if tg_op = 'INSERT' then
        kind := case when new.status = 'running' then 'run.fired' else 'run.' || new.status end;
        actor := case when new.trigger in ('schedule', 'join', 'verify') then event_actor('scheduler')
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

-- A restore test's run is no backup run: it counts neither in
-- `stacksnap_runs_total` (whose failures page) nor as the policy's last success.
create or replace function metric_run_inserted() returns trigger as $$
begin
    perform metric_run_ended(coalesce((
        select jsonb_agg(jsonb_build_object('status', n.status, 'policy_id', n.policy_id,
                                            'at', coalesce(n.finished_at, now())))
        from new_rows n where n.status <> 'running' and n.trigger <> 'verify'), '[]'));
    return null;
end;
$$ language plpgsql;

create or replace function metric_run_updated() returns trigger as $$
begin
    perform metric_run_ended(coalesce((
        select jsonb_agg(jsonb_build_object('status', n.status, 'policy_id', n.policy_id,
                                            'at', coalesce(n.finished_at, now())))
        from old_rows o join new_rows n using (run_id)
        where o.status = 'running' and n.status <> 'running' and n.trigger <> 'verify'), '[]'));
    return null;
end;
$$ language plpgsql;
