//! The snapshot engine against the simulator: real PostgreSQL, one database per
//! test, an injected clock, and steps driven one at a time.

mod api;
mod creates;
mod retention;
mod scheduling;
mod snapshots;
mod supervision;
