-- `options.snapshot_on_join`: runs of the resources that joined a policy.
alter table run drop constraint run_trigger_check;
alter table run add constraint run_trigger_check
    check (trigger in ('schedule', 'manual', 'adhoc', 'join'));

-- When the engine last compared each joining policy's targets with the cloud;
-- replicas claim the policies due a look, so each is listed once per interval.
create table policy_join_watch (
    policy_id  uuid primary key references policy (policy_id) on delete cascade,
    checked_at timestamptz not null
);
