//! Settings from flags and environment variables.

use std::{convert::Infallible, fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};

use crate::{domain::duration::HumanDuration, redact};

/// How the service listens and where it keeps its state.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "STACKSNAP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve HTTPS with this certificate chain (PEM, the server's certificate
    /// first); needs `--tls-key`. For deployments without a TLS-terminating proxy.
    #[arg(long, env = "STACKSNAP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "STACKSNAP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Serve `GET /metrics` on this address (plain HTTP, no token) instead of on
    /// `--listen`: it carries policy ids, so keep it off the public network.
    #[arg(long, env = "STACKSNAP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// PostgreSQL URL. Without it, the local server on 127.0.0.1:5432 (user
    /// `postgres`, database `stacksnap`, created when missing).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,

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

    /// Longest time a client may take to send a request's head (request line
    /// and headers), e.g. `30s`; an idle keep-alive connection is closed after
    /// it too. A client that sends part of a head and stops holds nothing longer.
    #[arg(long, env = "STACKSNAP_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "STACKSNAP_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Serve the API only: no scheduler, no workers, no OpenStack credentials needed.
    #[arg(long, env = "STACKSNAP_NO_ENGINE")]
    pub no_engine: bool,

    /// Refuse webhook URLs that name, or resolve to, a loopback, private, link-local
    /// or unique-local address (checked at creation for a literal address, and at
    /// every delivery after DNS resolution). Off by default; turn it on unless
    /// webhooks must reach internal receivers.
    #[arg(long, env = "STACKSNAP_WEBHOOK_DENY_PRIVATE")]
    pub webhook_deny_private: bool,

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

/// A PostgreSQL URL as given. Printed (`Debug`, `Display`) with its password
/// `[redacted]`, e.g. `postgres://user:[redacted]@host/db`; only
/// [`DatabaseUrl::expose`] gives the URL itself, for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL with its password, to connect with. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatabaseUrl {
    type Err = Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(Self(url.to_owned()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact::url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact::url(&self.0))
    }
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn a_database_url_prints_its_password_redacted() {
        let url: DatabaseUrl = "postgres://stacksnap:hunter2@db:5432/stacksnap"
            .parse()
            .unwrap();
        assert_eq!(
            url.expose(),
            "postgres://stacksnap:hunter2@db:5432/stacksnap"
        );
        assert_eq!(
            url.to_string(),
            "postgres://stacksnap:[redacted]@db:5432/stacksnap"
        );
        assert_eq!(
            format!("{url:?}"),
            "\"postgres://stacksnap:[redacted]@db:5432/stacksnap\""
        );
    }

    #[test]
    fn settings_debug_output_shows_no_database_password() {
        let command = Command::try_parse_from([
            "serve",
            "--database-url",
            "postgres://stacksnap:hunter2@db/stacksnap?password=hunter3",
        ])
        .unwrap();
        let printed = format!("{command:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("hunter3"), "{printed}");
        assert!(printed.contains("stacksnap:[redacted]@db"), "{printed}");
    }

    #[test]
    fn help_never_shows_the_database_url_from_the_environment() {
        // `hide_env_values`: clap would otherwise print `[env: DATABASE_URL=...]`.
        let database_url = Command::command()
            .get_arguments()
            .find(|a| a.get_id() == "database_url")
            .map(|a| a.is_hide_env_values_set());
        assert_eq!(database_url, Some(true));
    }

    #[test]
    fn tls_files_are_read_from_their_flags() {
        let command = Command::try_parse_from([
            "serve",
            "--tls-cert",
            "/etc/stacksnap/cert.pem",
            "--tls-key",
            "/etc/stacksnap/key.pem",
        ])
        .unwrap();
        assert_eq!(
            command.settings.tls_cert.as_deref(),
            Some(std::path::Path::new("/etc/stacksnap/cert.pem"))
        );
        assert_eq!(
            command.settings.tls_key.as_deref(),
            Some(std::path::Path::new("/etc/stacksnap/key.pem"))
        );
    }
}
