-- The stale-resource count of each enabled policy, recomputed by the engine's
-- `freshness` task (one replica per pass): `/metrics` reads this small table
-- instead of running the freshness query on every scrape. A disabled policy
-- has no row: its targets going stale is expected.
create table policy_freshness (
    policy_id       uuid primary key references policy (policy_id) on delete cascade,
    stale_resources bigint not null,
    computed_at     timestamptz not null
);
