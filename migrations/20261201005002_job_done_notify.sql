-- Wakes requests waiting on a job (`POST /v1/snapshots?wait=`) in every replica:
-- the transaction that ends a job notifies `stacksnap_job_done` with its id,
-- delivered when it commits. Only a shortcut: a waiting request also polls.
create or replace function notify_job_done() returns trigger as $$
begin
    perform pg_notify('stacksnap_job_done', new.job_id::text);
    return null;
end;
$$ language plpgsql;

create trigger job_done_notify after update of status on job
    for each row
    when (old.status in ('pending', 'creating', 'tracking')
          and new.status not in ('pending', 'creating', 'tracking'))
    execute function notify_job_done();
