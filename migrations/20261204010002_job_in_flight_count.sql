-- Issue 13 item 7: a job's start checks `--max-in-flight` under one advisory
-- lock (starts are serialised across replicas so the limit holds). Counting
-- the jobs in flight there cost a scan of all of them per start: at 6,000 in
-- flight starts fell to ~25 a second, and 100,000 were never reached.
--
-- The count is kept instead: `job_in_flight_count.n` is the jobs in flight as
-- of the last fold, and every job entering or leaving flight since appends
-- +1 or -1 to `job_in_flight_change` (append-only, so writers never wait on
-- each other, as with `freshness_change`). A start, under the lock, folds the
-- committed changes into the count (the only writer of both, so they are
-- exact): what `count(*)` over the jobs would give.
create table job_in_flight_count (
    only_row boolean primary key default true check (only_row),
    n        bigint not null
);

create table job_in_flight_change (
    n integer not null
);

create function job_in_flight_changed_rows() returns trigger as $$
begin
    if tg_op = 'INSERT' then
        insert into job_in_flight_change (n)
        select count(*) from new_rows where status in ('creating', 'tracking') having count(*) > 0;
    else
        insert into job_in_flight_change (n)
        select -count(*) from old_rows where status in ('creating', 'tracking') having count(*) > 0;
    end if;
    return null;
end;
$$ language plpgsql;

create function job_in_flight_changed_row() returns trigger as $$
begin
    insert into job_in_flight_change (n)
    values (case when new.status in ('creating', 'tracking') then 1 else -1 end);
    return null;
end;
$$ language plpgsql;

create trigger job_in_flight_insert after insert on job referencing new table as new_rows
    for each statement execute function job_in_flight_changed_rows();
create trigger job_in_flight_delete after delete on job referencing old table as old_rows
    for each statement execute function job_in_flight_changed_rows();
-- Row-level with a WHEN clause: the engine updates jobs constantly without
-- moving them in or out of flight, and the clause is evaluated without a call.
create trigger job_in_flight_update after update of status on job
    for each row
    when ((old.status in ('creating', 'tracking')) is distinct from (new.status in ('creating', 'tracking')))
    execute function job_in_flight_changed_row();
-- TRUNCATE fires no row trigger: it appends what cancels the count. No row
-- is locked, so a start folding meanwhile cannot deadlock with it (the start
-- then finds its job gone); TRUNCATE itself waits for every writer of `job`.
create function job_in_flight_truncated() returns trigger as $$
begin
    insert into job_in_flight_change (n)
    select -(coalesce((select n from job_in_flight_count), 0)
             + coalesce((select sum(n) from job_in_flight_change), 0))::integer;
    return null;
end;
$$ language plpgsql;
create trigger job_in_flight_truncate after truncate on job
    for each statement execute function job_in_flight_truncated();

-- Rows without a key are deleted (folded, collected) all the time: a
-- publication of every table (logical replication) would refuse those
-- deletes without a replica identity, and stop every start.
alter table job_in_flight_change replica identity full;
alter table freshness_change replica identity full;

-- Counted after the triggers exist: creating them waited for every writer of
-- `job` in progress, and later writers wait for this migration to commit.
insert into job_in_flight_count (n)
select count(*) from job where status in ('creating', 'tracking');
