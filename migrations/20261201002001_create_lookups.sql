-- When the last create request of a job whose outcome is unknown was sent: a timeout, a 5xx,
-- a lost answer, or a worker that may have died while sending (set before every send, put
-- back when the send's outcome is known). While it is set the job never returns to
-- `pending`: every further create is preceded by a look-up, and a look-up that finds
-- nothing is believed only a while after it (a volume-backed createImage makes its image last).
alter table job add column create_unclear_at timestamptz;

-- A second image that an earlier create of a job made (a duplicate) is recorded as a row
-- of its own and deleted at once: such a job has its snapshot and one row per duplicate.
alter table snapshot add column duplicate boolean not null default false;
alter table snapshot drop constraint snapshot_job_key;
create unique index snapshot_job_key on snapshot (job_id) where not duplicate;
create unique index snapshot_duplicate_key on snapshot (job_id, image_id) where duplicate;
