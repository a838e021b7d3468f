-- Shared trigger: every table keeps updated_at current without each query remembering to.
create or replace function set_updated_at() returns trigger as $$
begin
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;

create table policy (
    policy_id     uuid primary key,
    project_id    text not null,
    name          text not null,
    description   text not null default '',
    enabled       boolean not null default true,
    resource_type text not null,
    -- Nested parts of the spec are stored as the API shows them; the domain validates them.
    targets       jsonb not null,
    schedules     jsonb not null,
    retention     jsonb not null,
    options       jsonb not null,
    next_run_at   timestamptz,
    version       bigint not null default 1,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint policy_project_name_key unique (project_id, name),
    constraint policy_resource_type_check check (resource_type in ('server', 'volume')),
    constraint policy_version_check check (version > 0)
);

-- The scheduler's due query: only enabled policies with a next run are candidates.
create index policy_due_idx on policy (next_run_at) where enabled and next_run_at is not null;

-- Listing walks a project's policies in id order (ids are UUIDv7, so creation order).
create index policy_project_list_idx on policy (project_id, policy_id);

create trigger policy_set_updated_at before update on policy
    for each row execute function set_updated_at();
