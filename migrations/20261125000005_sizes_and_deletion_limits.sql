-- Sizes as the APIs report them: Glance in bytes, Cinder in GiB.
alter table job add column image_size_bytes bigint;
alter table snapshot add column image_size_bytes bigint;
-- When the first delete request went out: deletions in progress count against the in-flight limit.
alter table snapshot add column delete_started_at timestamptz;
create index snapshot_deleting_started_idx on snapshot (not_before)
    where state in ('deleting', 'delete_failed') and delete_started_at is not null;
