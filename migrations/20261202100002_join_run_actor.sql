-- A `join` run (`options.snapshot_on_join`) is fired by the engine on its own,
-- like a scheduled run: its `run.fired` event names the scheduler, not `api`.
create or replace function run_event() returns trigger as $$
declare
    kind text;
    actor text;
begin
    if tg_op = 'INSERT' then
        kind := case when new.status = 'running' then 'run.fired' else 'run.' || new.status end;
        actor := case when new.trigger in ('schedule', 'join') then event_actor('scheduler')
                      else event_actor(coalesce(new.created_by, 'api')) end;
    else
        kind := 'run.' || new.status;
        actor := event_actor(case when new.status = 'missed' then 'scheduler' else 'engine' end);
    end if;
    insert into event (kind, project_id, policy_id, run_id, actor, data)
    values (kind, new.project_id, new.policy_id, new.run_id, actor,
            event_data(jsonb_build_object('trigger', new.trigger, 'scheduled_for', new.scheduled_for,
                                          'policy_name', new.policy_name, 'error', new.error)));
    return null;
end;
$$ language plpgsql;
