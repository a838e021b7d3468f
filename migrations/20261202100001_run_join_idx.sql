-- The join runs since a policy's newest resolved run (its targets, in
-- `store::freshness`): without an index of their own, every freshness query
-- read the whole `run` table (any run after the baseline matched the join),
-- a page of `GET /v1/policies` 36 ms -> 105 ms with 300,000 runs.
create index run_join_idx on run (policy_id, run_id) where trigger = 'join';
