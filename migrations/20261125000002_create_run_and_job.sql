-- One firing of a policy (or a one-off snapshot request).
create table run (
    run_id          uuid primary key,
    project_id      text not null,
    -- Null for ad hoc runs, and once the policy is deleted (the history stays).
    policy_id       uuid references policy (policy_id) on delete set null,
    policy_name     text,
    trigger         text not null,
    scheduled_for   timestamptz not null,
    status          text not null default 'running',
    -- The policy spec at fire time: a run acts on the policy as it was when it fired.
    spec            jsonb not null,
    -- Set once the targets were resolved into jobs.
    resolved_at     timestamptz,
    not_before      timestamptz not null default now(),
    lease_owner     uuid,
    lease_expires_at timestamptz,
    error           jsonb,
    started_at      timestamptz,
    finished_at     timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint run_trigger_check check (trigger in ('schedule', 'manual', 'adhoc')),
    constraint run_status_check check (status in ('running', 'succeeded', 'partially_failed', 'failed', 'missed'))
);

-- A scheduled instant fires once, however many replicas race for it.
create unique index run_scheduled_once_idx on run (policy_id, scheduled_for) where trigger = 'schedule';
-- Runs whose targets still need resolving.
create index run_unresolved_idx on run (not_before) where resolved_at is null and status = 'running';
create index run_project_list_idx on run (project_id, run_id);
create index run_policy_idx on run (policy_id, run_id);

create trigger run_set_updated_at before update on run
    for each row execute function set_updated_at();

-- One resource within a run.
create table job (
    job_id           uuid primary key,
    run_id           uuid not null references run (run_id) on delete cascade,
    project_id       text not null,
    policy_id        uuid,
    resource_type    text not null,
    resource_id      text not null,
    resource_name    text,
    status           text not null default 'pending',
    -- How many times the create request was (about to be) sent; set before sending.
    attempt          integer not null default 0,
    -- Name, metadata, consistency, timeout and start window, fixed when the job was made.
    options          jsonb not null,
    image_id         text,
    volume_snapshots jsonb not null default '[]',
    consistency      text,
    error            jsonb,
    timeline         jsonb not null default '[]',
    openstack_calls  integer not null default 0,
    -- When the job should next be worked on (start, retry or poll).
    not_before       timestamptz not null default now(),
    -- The job may not start after this (start window) ...
    start_by         timestamptz not null,
    -- ... and must finish by this (timeout, from its start).
    deadline         timestamptz,
    lease_owner      uuid,
    lease_expires_at timestamptz,
    cancel_requested boolean not null default false,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz not null default now(),
    constraint job_resource_type_check check (resource_type in ('server', 'volume')),
    constraint job_status_check check (status in
        ('pending', 'creating', 'tracking', 'succeeded', 'failed', 'timed_out', 'cancelled')),
    constraint job_consistency_check check (consistency in ('quiesced', 'crash_consistent', 'unknown'))
);

-- Nova does not stop two overlapping snapshots of a volume-backed server: this index does.
create unique index job_one_in_flight_per_resource_idx on job (resource_type, resource_id)
    where status in ('creating', 'tracking');
-- Workers claim due jobs by not_before.
create index job_due_idx on job (not_before) where status in ('pending', 'creating', 'tracking');
create index job_run_idx on job (run_id, job_id);
create index job_project_list_idx on job (project_id, job_id);
create index job_policy_active_idx on job (policy_id) where status in ('creating', 'tracking');

create trigger job_set_updated_at before update on job
    for each row execute function set_updated_at();

-- Wakes schedulers and workers early. Only a shortcut: both also poll, so the
-- engine stays correct behind a pooler that drops LISTEN. The payload is
-- constant so PostgreSQL folds the notices of one transaction into one.
create or replace function notify_channel() returns trigger as $$
begin
    perform pg_notify(tg_argv[0], '');
    return null;
end;
$$ language plpgsql;

create trigger policy_notify after insert or update of enabled, schedules on policy
    for each statement execute function notify_channel('stacksnap_policy');
create trigger run_notify after insert on run
    for each statement execute function notify_channel('stacksnap_work');
create trigger job_notify after insert on job
    for each statement execute function notify_channel('stacksnap_work');

-- A policy's updated_at tells when a person changed it, not when the scheduler advanced it.
drop trigger policy_set_updated_at on policy;
create trigger policy_set_updated_at before update on policy
    for each row when (old.version is distinct from new.version)
    execute function set_updated_at();
