//! PostgreSQL access: connecting, migrating, and one module per table group.
//!
//! Functions here run SQL and map rows; they make no decisions.

pub mod database;
pub mod events;
pub mod freshness;
pub mod history;
pub mod jobs;
pub mod joins;
pub mod lifecycle;
pub mod metrics;
pub mod notices;
pub mod orphans;
pub mod policies;
pub mod policy_runs;
pub mod row;
pub mod runs;
pub mod snapshots;
pub mod summary;
pub mod trusts;
pub mod verify;
pub mod webhooks;

pub use database::{MIGRATOR, connect, migrations_applied};

/// Which projects a query of the API reaches: one project, or (for an admin)
/// every project. Every query that reads or changes what a project owns takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Project(&'a str),
    AllProjects,
}

impl<'a> Scope<'a> {
    /// The project to filter on, bound as `$n` in `($n::text is null or project_id = $n)`;
    /// `None` reaches every project.
    pub fn project(self) -> Option<&'a str> {
        match self {
            Self::Project(project) => Some(project),
            Self::AllProjects => None,
        }
    }
}

impl<'a> From<&'a str> for Scope<'a> {
    fn from(project: &'a str) -> Self {
        Self::Project(project)
    }
}

impl<'a> From<&'a String> for Scope<'a> {
    fn from(project: &'a String) -> Self {
        Self::Project(project)
    }
}
