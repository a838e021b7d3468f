-- Events are read in the order a single writer, the sequencer, gives them
-- (store::events::sequence_events), not by transaction id against the reading
-- snapshot's xmin: xmin is cluster-wide, so any write transaction open on the
-- server, in any database, held every event back for as long as it was open.
--
-- The triggers insert events with no position. The sequencer, under one
-- transaction-level advisory lock, numbers the committed unpositioned events
-- from event_head (in insertion order, `seq`) and commits; a pass that commits
-- later always hands out larger numbers, so a reader paging by position never
-- misses an event that committed late: it simply gets a later position.
alter table event add column position bigint;

-- Existing events keep the order they were read in.
with ordered as (
    select event_id, row_number() over (order by xact_id, seq) as n from event
)
update event e set position = o.n from ordered o where e.event_id = o.event_id;

-- The last position handed out. Kept apart from the events so that purging the
-- newest ones can never make a position be handed out twice.
create table event_head (
    singleton     boolean primary key default true check (singleton),
    last_position bigint not null
);
insert into event_head (last_position) select coalesce(max(position), 0) from event;

drop index event_order_idx;
drop index event_project_order_idx;
drop index event_policy_idx;
drop index event_job_idx;
alter table event drop column xact_id;

create unique index event_position_idx on event (position);
create index event_project_position_idx on event (project_id, position)
    where position is not null;
create index event_policy_idx on event (policy_id, position)
    where policy_id is not null and position is not null;
create index event_job_idx on event (job_id, position)
    where job_id is not null and position is not null;
-- What the sequencer has left to number: empty, in the steady state.
create index event_unpositioned_idx on event (seq) where position is null;
