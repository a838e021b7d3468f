-- Every stored state is text with a CHECK constraint that the code's enums mirror.
-- The snapshot's resource_type was the one column without one.
alter table snapshot add constraint snapshot_resource_type_check
    check (resource_type in ('server', 'volume', 'volume_group'));
