-- Deletions that cannot loop: a piece Cinder keeps because volumes were made
-- from it is `delete_blocked` (retried daily, naming the dependants), and a
-- wait on pieces that do not move has a deadline.
alter table snapshot drop constraint snapshot_state_check;
alter table snapshot add constraint snapshot_state_check
    check (state in ('available', 'deleting', 'deleted', 'delete_failed', 'delete_blocked'));

-- [{"volume_snapshot_id": .., "volume_id": .., "volume_name": ..}] while `delete_blocked`.
alter table snapshot add column delete_blocked_by jsonb;
-- Since when the deletion has only been waiting (nothing sent, nothing changed):
-- the wait's deadline runs from here, and a long wait no longer counts as in flight.
alter table snapshot add column delete_waiting_since timestamptz;

-- The deleter claims blocked snapshots too.
drop index snapshot_deleting_idx;
create index snapshot_deleting_idx on snapshot (not_before)
    where state in ('deleting', 'delete_failed', 'delete_blocked');
drop index snapshot_deleting_started_idx;
create index snapshot_deleting_started_idx on snapshot (not_before)
    where state in ('deleting', 'delete_failed', 'delete_blocked') and delete_started_at is not null;
