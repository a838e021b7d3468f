//! The command line: `serve`, `demo`, `migrate`, `openapi`, `healthcheck`, `client`.

use std::{io::IsTerminal as _, net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    clock::{Clock, SystemClock, replica_clock},
    config::{AuthMode, DatabaseUrl, LogFormat, Settings},
    openstack::{CloudConfig, OpenStack, SessionOptions},
    startup::{self, Dependencies, cancel_on_signal},
    store, telemetry,
};

/// Scheduled, retention-managed snapshots of OpenStack servers and volumes.
#[derive(Debug, Parser)]
#[command(name = "stacksnap", version, about)]
pub struct Cli {
    /// Log format; default `pretty` on a terminal, `json` otherwise.
    #[arg(long, env = "STACKSNAP_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations and serve the API.
    Serve(Settings),
    /// Serve against the built-in OpenStack simulator, with sample policies, for a first look.
    Demo(Settings),
    /// Apply pending migrations and exit.
    Migrate(Settings),
    /// Print the OpenAPI document.
    Openapi,
    /// Serve the in-process OpenStack simulator (Keystone, Nova, Glance, Cinder).
    Sim(stacksnap_sim::SimArgs),
    /// Exit 0 when the local service answers /healthz (for container health checks).
    Healthcheck {
        /// The address the service listens on.
        #[arg(long, env = "STACKSNAP_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// When set the service serves HTTPS, and the probe speaks TLS.
        #[arg(long, env = "STACKSNAP_TLS_CERT")]
        tls_cert: Option<std::path::PathBuf>,
    },
    /// Talk to a running service: one-off snapshots for pipelines, policies, jobs, status.
    ///
    /// The token comes from `STACKSNAP_TOKEN`, else from Keystone with the
    /// credentials of `OS_CLOUD` (a clouds.yaml) or the `OS_*` variables. Exit
    /// codes: 0 done (or a fresh snapshot reused), 1 the job failed, timed out or
    /// was cancelled (or the service could not be reached), 2 bad usage, 3
    /// `--wait` ran out first, 4 the service (or Keystone) refused the request.
    Client(crate::client::args::ClientArgs),
}

impl Cli {
    /// Runs the chosen subcommand; the client says its own exit code.
    ///
    /// # Errors
    /// Whatever stopped the command, with context for a one-line message.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let format = self
            .log_format
            .unwrap_or(if std::io::stderr().is_terminal() {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            });
        let done = match self.command {
            // No telemetry: a pipeline reads the client's stderr.
            Command::Client(args) => return Ok(crate::client::run(args).await),
            Command::Openapi => {
                print!("{}", crate::http::docs::openapi_json());
                Ok(())
            }
            Command::Healthcheck { listen, tls_cert } => match tls_cert {
                None => healthcheck(listen).await,
                Some(_) => healthcheck_tls(listen).await,
            },
            Command::Sim(args) => {
                telemetry::init(format);
                let token = tokio_util::sync::CancellationToken::new();
                tokio::spawn(crate::startup::cancel_on_signal(token.clone()));
                stacksnap_sim::run(args, token.cancelled_owned()).await
            }
            Command::Migrate(settings) => {
                telemetry::init(format);
                let pool =
                    store::connect(settings.database_url.as_ref().map(DatabaseUrl::expose), 2)
                        .await?;
                migrate(&pool).await
            }
            Command::Serve(settings) => {
                telemetry::init(format);
                serve(settings, false).await
            }
            Command::Demo(settings) => {
                telemetry::init(format);
                serve(settings, true).await
            }
        };
        done.map(|()| ExitCode::SUCCESS)
    }
}

async fn migrate(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    store::MIGRATOR
        .run(pool)
        .await
        .context("cannot apply database migrations")?;
    tracing::info!("database migrations applied");
    // Policies written before the RPO was stored get theirs (freshness needs it).
    let filled = store::policies::fill_missing_rpo(pool, chrono::Utc::now())
        .await
        .context("cannot fill in the RPO of older policies")?;
    if filled > 0 {
        tracing::info!(
            policies = filled,
            "RPO worked out for policies stored without one"
        );
    }
    Ok(())
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !demo || (settings.tls_cert.is_none() && settings.tls_key.is_none()),
        "the demo serves plain HTTP on a local port: --tls-cert and --tls-key are for `serve`"
    );
    // Every worker may hold a connection; the listener holds one; the API needs some.
    let connections = settings.db_max_connections.max(settings.workers as u32 + 5);
    let pool = store::connect(
        settings.database_url.as_ref().map(DatabaseUrl::expose),
        connections,
    )
    .await?;
    migrate(&pool).await?;
    // Leases and deadlines are compared across replicas: read the database's clock.
    let clock: Arc<dyn Clock> = replica_clock(&pool, Arc::new(SystemClock))
        .await
        .context("cannot read the database's clock")?;
    let demo_cloud = if demo {
        let cloud = crate::demo::start_cloud(settings.auth)?;
        crate::demo::seed(&pool, &cloud, settings.auth, clock.now()).await?;
        Some(cloud)
    } else {
        None
    };
    // Keystone mode validates tokens with the service's own credentials, even
    // on a replica that runs no engine.
    let cloud = match &demo_cloud {
        Some(demo) => Some(demo.cloud.clone()),
        None if !settings.no_engine || settings.auth == AuthMode::Keystone => {
            let config = CloudConfig::from_env().context(
                "cannot find OpenStack credentials (the engine and --auth keystone need them; \
                 pass --no-engine --auth none to serve the API alone, for development)",
            )?;
            Some(OpenStack::new(config, SessionOptions::default())?)
        }
        None => None,
    };
    let auth = startup::authenticator(&settings, cloud.as_ref())?;
    // An API-only replica keeps the cloud: policies made here need trusts.
    if settings.no_engine {
        tracing::warn!("--no-engine: serving the API only; no policy fires from this replica");
    }
    let running = startup::start(
        &settings,
        Dependencies {
            db: pool,
            clock,
            cloud,
            auth,
        },
        startup::engine_config(&settings),
    )
    .await?;
    if let Some(demo) = &demo_cloud {
        crate::demo::print_welcome(running.local_addr(), demo, settings.auth).await;
    }
    tokio::spawn(cancel_on_signal(running.shutdown_token()));
    let stopped = running.stopped().await;
    if let Some(demo) = demo_cloud {
        demo.sim.shutdown().await;
    }
    stopped?;
    Ok(())
}

/// The address to probe: a wildcard listen address is reached on loopback.
fn probe_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// Asks `/healthz` on the local service over HTTPS. The certificate is not
/// checked: this probes our own port for liveness and sends no credential, and a
/// certificate rarely names the loopback address.
async fn healthcheck_tls(listen: SocketAddr) -> anyhow::Result<()> {
    let addr = probe_address(listen);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(3))
        .build()
        .context("cannot build the HTTPS client")?;
    let response = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .with_context(|| format!("cannot reach {addr} over HTTPS"))?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::OK,
        "/healthz on {addr} answered {}",
        response.status()
    );
    Ok(())
}

/// Asks `/healthz` on the local service with a bare HTTP/1.1 request.
async fn healthcheck(listen: SocketAddr) -> anyhow::Result<()> {
    let addr = probe_address(listen);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = vec![0; 64];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let head = tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .with_context(|| format!("no answer from {addr} within 3s"))?
        .with_context(|| format!("cannot reach {addr}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "/healthz on {addr} answered {:?}",
        head.lines().next().unwrap_or("")
    );
    Ok(())
}
