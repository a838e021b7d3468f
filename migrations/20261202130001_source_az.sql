-- Issue 12, item 2 (moves): the availability zone of what a snapshot was taken
-- of, as Nova (`OS-EXT-AZ:availability_zone`) or Cinder showed it. Cinder keeps
-- a volume made from a snapshot in the snapshot's zone by default
-- (`cloned_volume_same_az`), so a restore of a volume or of a volume-backed
-- server into another zone is refused up front. Null for snapshots taken
-- before this, for which the cloud decides.
alter table job add column source_az text;
alter table snapshot add column source_az text;
