-- Why the scheduler set a policy aside ({"code", "message"}): its stored form could
-- not be read or no longer passes validation. Null again once the policy is written.
alter table policy add column broken_error jsonb;

-- The job's policy was deleted with snapshots=delete while the job was in flight:
-- the snapshot it makes is deleted as soon as it is recorded, not kept without a policy.
alter table job add column delete_on_record boolean not null default false;
