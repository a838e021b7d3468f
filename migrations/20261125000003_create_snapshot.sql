-- A managed snapshot: what a job produced, followed until it is deleted.
create table snapshot (
    snapshot_id       uuid primary key,
    project_id        text not null,
    policy_id         uuid references policy (policy_id) on delete set null,
    run_id            uuid,
    job_id            uuid not null,
    resource_type     text not null,
    resource_id       text not null,
    resource_name     text,
    image_id          text,
    -- [{"snapshot_id": .., "volume_id": .., "device": ..}, ...]
    volume_snapshots  jsonb not null default '[]',
    size_gb           bigint,
    -- False for the artefacts of a job that failed or timed out: they are cleaned up, never kept.
    complete          boolean not null,
    state             text not null default 'available',
    taken_at          timestamptz not null,
    delete_attempts   integer not null default 0,
    delete_error      jsonb,
    not_before        timestamptz not null default now(),
    lease_owner       uuid,
    lease_expires_at  timestamptz,
    deleted_at        timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint snapshot_job_key unique (job_id),
    constraint snapshot_state_check check (state in ('available', 'deleting', 'deleted', 'delete_failed'))
);

-- Retention walks one policy's live snapshots resource by resource.
create index snapshot_policy_live_idx on snapshot (policy_id, resource_id, taken_at) where state = 'available';
-- The deleter claims snapshots being deleted by when they are due.
create index snapshot_deleting_idx on snapshot (not_before) where state in ('deleting', 'delete_failed');
create index snapshot_project_list_idx on snapshot (project_id, snapshot_id);

create trigger snapshot_set_updated_at before update on snapshot
    for each row execute function set_updated_at();

-- When each policy was last pruned, so the periodic pass visits the stalest first.
alter table policy add column pruned_at timestamptz;

-- Workers claim in-flight jobs first (finishing work frees capacity), then pending ones.
create index job_in_flight_due_idx on job (not_before) where status in ('creating', 'tracking');
create index job_pending_due_idx on job (not_before) where status = 'pending';
drop index job_due_idx;
-- Whether a run still has open jobs, checked each time one of its jobs ends.
create index job_run_open_idx on job (run_id) where status in ('pending', 'creating', 'tracking');
