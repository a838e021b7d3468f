-- Who did it: the Keystone user id of whoever created a policy and of whoever
-- changed it last, and of whoever started a run by hand (`POST
-- /v1/policies/{id}/run`) or asked for a one-off snapshot. Null where no user is
-- known: scheduled runs, rows written before this column, and a service running
-- with `--auth none`.
alter table policy
    add column created_by text,
    add column updated_by text;

alter table run
    add column created_by text;
