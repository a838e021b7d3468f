//! PostgreSQL access: connecting, migrating, and one module per table group.
//!
//! Functions here run SQL and map rows; they make no decisions.

pub mod database;
pub mod history;
pub mod jobs;
pub mod lifecycle;
pub mod notices;
pub mod orphans;
pub mod policies;
pub mod row;
pub mod runs;
pub mod snapshots;
pub mod trusts;

pub use database::{MIGRATOR, connect, migrations_applied};
