//! Settings from flags and environment variables.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

use crate::domain::duration::HumanDuration;

/// How the service listens and where it keeps its state.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "STACKSNAP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL URL. Without it, the local server on 127.0.0.1:5432 (user
    /// `postgres`, database `stacksnap`, created when missing).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Largest number of PostgreSQL connections in the engine's pool (at least
    /// one per worker, plus five).
    #[arg(long, env = "STACKSNAP_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Largest number of PostgreSQL connections in the API's own pool (one more
    /// is held for LISTEN): requests cannot starve the engine, nor it them.
    #[arg(long, env = "STACKSNAP_API_DB_MAX_CONNECTIONS", default_value_t = 5)]
    pub api_db_max_connections: u32,

    /// Longest time one HTTP request may take, e.g. `30s` or `2m`.
    #[arg(long, env = "STACKSNAP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "STACKSNAP_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Serve the API only: no scheduler, no workers, no OpenStack credentials needed.
    #[arg(long, env = "STACKSNAP_NO_ENGINE")]
    pub no_engine: bool,

    /// Concurrent engine workers in this replica.
    #[arg(long, env = "STACKSNAP_WORKERS", default_value_t = 16)]
    pub workers: usize,

    /// Most snapshots in flight at once across all replicas (protects the cloud's control plane).
    #[arg(long, env = "STACKSNAP_MAX_IN_FLIGHT", default_value_t = 50)]
    pub max_in_flight: i64,

    /// The orphan finder never looks at a Cinder snapshot younger than this, e.g. `1h`.
    #[arg(long, env = "STACKSNAP_ORPHAN_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub orphan_grace: Duration,

    /// Finished runs with their jobs, and the rows of deleted snapshots, are purged
    /// once older than this, e.g. `90d`.
    #[arg(long, env = "STACKSNAP_HISTORY_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub history_retention: Duration,

    /// How often a waiting `POST /v1/snapshots?wait=` reads its job when nothing
    /// wakes it: the engine of this replica wakes it at once, LISTEN/NOTIFY when
    /// another replica ends the job; this is the fallback behind a pooler that
    /// drops LISTEN.
    #[arg(long, env = "STACKSNAP_WAIT_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub wait_poll_interval: Duration,

    /// Who may call the API: `keystone` (a Keystone token in `X-Auth-Token`,
    /// validated with the service's own credentials) or `none` (no
    /// authentication: every request acts as an admin of project `default`; for
    /// development only).
    #[arg(long, env = "STACKSNAP_AUTH", value_enum, default_value_t = AuthMode::Keystone)]
    pub auth: AuthMode,

    /// How long a validated token is trusted without asking Keystone again (at
    /// most until it expires), e.g. `5m`. A revoked token keeps working this long.
    #[arg(long, env = "STACKSNAP_TOKEN_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub token_cache_ttl: Duration,
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Keystone tokens in `X-Auth-Token`; roles and projects as OpenStack's defaults mean them.
    Keystone,
    /// No authentication: every request is an admin of project `default` (development only).
    None,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<HumanDuration>()
        .map(|d| d.as_std())
        .map_err(|e| format!("{e}"))
}
