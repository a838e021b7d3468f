-- Keystone trusts: a policy acts with the authority of the user who made it
-- (a trust from that user to the service user); a one-off run with its
-- caller's token while it lasts, then with a trust made at submission.

-- Every trust the service made, until it is deleted in Keystone. A trust is
-- deleted once nothing refers to it any more (see store::trusts).
create table trust (
    trust_id     text primary key,
    project_id   text not null,
    created_at   timestamptz not null,
    -- Deleting it in Keystone failed: when to try again, and why.
    not_before   timestamptz not null,
    attempts     integer not null default 0,
    last_error   text
);

-- The trust a policy's runs act with (null: the service's own credentials,
-- as with `--auth none`).
alter table policy add column trust_id text;

-- The authority a run's jobs act with: the policy's trust when the run was
-- made, or for a one-off run a trust made at submission and the caller's own
-- token (kept only until the run ends).
alter table run add column trust_id text;
alter table run add column user_token text;
alter table run add column user_token_expires_at timestamptz;
-- The run acts for a caller (a trust or a token): the service's own
-- credentials never start its jobs, even once the token is gone.
alter table run add column delegated boolean not null default false;

create index run_trust_idx on run (trust_id) where trust_id is not null;
create index policy_trust_idx on policy (trust_id) where trust_id is not null;
