-- The freshness cache stays exact when a table its query reads is truncated:
-- TRUNCATE fires no row or statement-level insert/delete triggers, so without
-- this a cached value would be served after `truncate snapshot` until its
-- `valid_until`. A truncation logs a change for every policy, as a delete of
-- every row would have (a computation that read the rows before the
-- truncation has a snapshot that does not see it, so it is never served).
create function freshness_changed_all() returns trigger as $$
begin
    insert into freshness_change (policy_id) select policy_id from policy;
    return null;
end;
$$ language plpgsql;

create trigger run_freshness_truncate after truncate on run
    for each statement execute function freshness_changed_all();
create trigger job_freshness_truncate after truncate on job
    for each statement execute function freshness_changed_all();
create trigger snapshot_freshness_truncate after truncate on snapshot
    for each statement execute function freshness_changed_all();
