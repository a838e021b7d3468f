-- Webhook subscriptions and their recent delivery attempts.
--
-- A subscription reads the event outbox in read order (store::events) from
-- its cursor: the position of the last event it delivered or gave up on. The
-- cursor moves only after a 2xx (or after giving up on an event a day later),
-- so delivery is at least once and in order. One replica at a time delivers a
-- subscription: it holds the lease (`lease_owner`, `lease_until`), taken with
-- FOR UPDATE SKIP LOCKED.
create table webhook (
    webhook_id      uuid primary key,
    project_id      text not null,
    url             text not null,
    -- Kinds (`job.failed`) and prefixes (`job.`).
    events          text[] not null,
    -- Chosen by the caller and needed to sign every delivery, so kept as given;
    -- never returned by the API.
    secret          text not null,
    created_at      timestamptz not null default now(),
    created_by      text,
    -- The position (`event.position`) of the last event delivered or given up on.
    cursor_position bigint not null,
    -- Failed attempts at the event after the cursor, and when the first failed.
    attempt         integer not null default 0,
    failing_since   timestamptz,
    next_attempt_at timestamptz not null default now(),
    lease_owner     uuid,
    lease_until     timestamptz
);

create index webhook_project_idx on webhook (project_id, webhook_id);
create index webhook_due_idx on webhook (next_attempt_at);

create table webhook_delivery (
    delivery_id bigint generated always as identity primary key,
    webhook_id  uuid not null references webhook on delete cascade,
    event_id    uuid not null,
    kind        text not null,
    attempt     integer not null,
    status_code integer,
    error       text,
    -- `delivered`, `failed` (to be retried) or `gave_up`.
    outcome     text not null check (outcome in ('delivered', 'failed', 'gave_up')),
    at          timestamptz not null default now()
);

create index webhook_delivery_recent_idx on webhook_delivery (webhook_id, delivery_id desc);
