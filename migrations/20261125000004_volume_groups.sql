-- Cinder volume groups, snapshotted with one group snapshot (crash-consistent across their volumes).
alter table policy drop constraint policy_resource_type_check;
alter table policy add constraint policy_resource_type_check
    check (resource_type in ('server', 'volume', 'volume_group'));
alter table job drop constraint job_resource_type_check;
alter table job add constraint job_resource_type_check
    check (resource_type in ('server', 'volume', 'volume_group'));
alter table job add column group_snapshot_id text;
alter table snapshot add column group_snapshot_id text;
