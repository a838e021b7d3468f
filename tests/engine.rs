//! The snapshot engine against the simulator: real PostgreSQL, one database per
//! test, an injected clock, and steps driven one at a time.

mod api;
mod clock;
mod creates;
mod database_outage;
mod deletion;
mod events;
mod freshness;
mod freshness_cache;
mod history;
mod joins;
mod logs;
mod metrics;
mod moves;
mod orphans;
mod poison;
mod policies;
mod restore;
mod retention;
mod scheduling;
mod secrets;
mod snapshots;
mod supervision;
mod tenant;
mod trusts;
mod verify;
mod waiting;
mod webhooks;
