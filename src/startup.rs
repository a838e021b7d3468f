//! Starting the service from its settings and dependencies: the HTTP app on its
//! listener and the engine's tasks under a supervisor. `stacksnap serve`,
//! `stacksnap demo` and the tests all start it through [`start`].

pub mod connections;
pub mod supervisor;
pub mod tls;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use self::{
    connections::ConnectionLimits,
    supervisor::Supervisor,
    tls::{TlsFiles, TlsListener},
};
use crate::{
    clock::Clock,
    config::{AuthMode, Settings},
    engine::{Engine, EngineConfig, EngineHealth, JobEvents, job_events},
    http::{self, AppState, auth::Authenticator, health::AUTH_OFF_WARNING, metrics::MetricsSource},
    openstack::{OpenStack, config::AuthMethod},
};

/// How long a stop waits for connections beyond the request timeout (by which
/// every request in flight has been answered) before it drops them.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// What the service runs against, made outside so that tests can pass their own.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// The database, migrated.
    pub db: PgPool,
    /// The clock the API and the engine read.
    pub clock: Arc<dyn Clock>,
    /// The cloud; without one (`--no-engine`) the API is served alone.
    pub cloud: Option<OpenStack>,
    /// Who may call the API ([`authenticator`] makes it from the settings).
    pub auth: Authenticator,
}

/// The authenticator `--auth` asks for: Keystone validates tokens with the
/// service's own credentials on `cloud`.
///
/// # Errors
/// `--auth keystone` without a cloud, or with a cloud whose credentials are
/// not a password: every policy acts with a Keystone trust, and Keystone scopes
/// only a password login to a trust (with an application credential, policies
/// would be made and then fail at every run).
pub fn authenticator(
    settings: &Settings,
    cloud: Option<&OpenStack>,
) -> anyhow::Result<Authenticator> {
    match (settings.auth, cloud) {
        (AuthMode::None, _) => Ok(Authenticator::Disabled),
        (AuthMode::Keystone, Some(cloud)) => {
            anyhow::ensure!(
                matches!(
                    cloud.service_session().config().auth,
                    AuthMethod::Password { .. }
                ),
                "--auth keystone acts for each tenant's policies with a Keystone trust, and \
                 Keystone scopes only a password login to a trust: the service's own credentials \
                 must be a user's password (OS_USERNAME and OS_PASSWORD, or auth.password in \
                 clouds.yaml), not an application credential (or --auth none for development)"
            );
            Ok(Authenticator::keystone(
                cloud.clone(),
                settings.token_cache_ttl,
            ))
        }
        (AuthMode::Keystone, None) => anyhow::bail!(
            "--auth keystone validates tokens with the service's own OpenStack credentials, and \
             there are none (set OS_CLOUD or OS_*, or --auth none for development)"
        ),
    }
}

/// The engine's settings for `stacksnap serve`: the defaults with the flags applied.
pub fn engine_config(settings: &Settings) -> EngineConfig {
    EngineConfig {
        workers: settings.workers.max(1),
        max_in_flight: settings.max_in_flight.max(1),
        history_retention: chrono::TimeDelta::from_std(settings.history_retention)
            .unwrap_or(chrono::TimeDelta::MAX),
        requires_delegation: settings.auth == AuthMode::Keystone,
        webhooks: crate::engine::webhooks::WebhookSettings {
            deny_private: settings.webhook_deny_private,
            ..Default::default()
        },
        ..EngineConfig::default()
    }
}

/// Binds the listen address, serves the API (over TLS when `settings` name a
/// certificate and key), and unless `settings.no_engine` starts the engine's
/// tasks under a supervisor. Both run until the returned service's shutdown
/// token is cancelled (or it is dropped).
///
/// # Errors
/// The address cannot be bound, the TLS files are unusable, or the engine is
/// wanted but there is no cloud.
pub async fn start(
    settings: &Settings,
    deps: Dependencies,
    engine: EngineConfig,
) -> anyhow::Result<RunningService> {
    anyhow::ensure!(
        settings.no_engine || deps.cloud.is_some(),
        "the engine needs a cloud (serve with --no-engine to run the API alone)"
    );
    let tls = TlsFiles::from_options(settings.tls_cert.as_deref(), settings.tls_key.as_deref())?
        .map(|files| files.acceptor())
        .transpose()?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener
        .local_addr()
        .context("the listener has no local address")?;
    let metrics_listener = match settings.metrics_listen {
        Some(metrics_addr) => Some(
            TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("cannot listen on {metrics_addr} for /metrics"))?,
        ),
        None => None,
    };
    crate::telemetry::metrics::install();
    let shutdown = CancellationToken::new();
    let job_events = JobEvents::default();
    let supervisor = match (&deps.cloud, settings.no_engine) {
        (Some(cloud), false) => {
            let engine = Engine::new(deps.db.clone(), cloud.clone(), deps.clock.clone(), engine)
                .with_job_events(job_events.clone());
            Some(Supervisor::start_engine(engine, shutdown.clone()))
        }
        _ => None,
    };
    let api_db = api_pool(&deps.db, settings.api_db_max_connections);
    // Wakes this replica's waiting requests when another replica ends their job.
    let listening = tokio::spawn(job_events::listen(
        api_db.clone(),
        job_events.clone(),
        shutdown.clone(),
    ));
    let engine = supervisor.as_ref().map(Supervisor::health);
    // Handed to handlers so that long waits end when the server stops.
    let requests_stopping = CancellationToken::new();
    let state = AppState {
        db: api_db.clone(),
        clock: deps.clock,
        cloud: deps.cloud,
        engine: engine.clone(),
        body_limit: settings.body_limit,
        shutdown: requests_stopping.clone(),
        orphan_grace: chrono::TimeDelta::from_std(settings.orphan_grace)
            .unwrap_or(chrono::TimeDelta::MAX),
        wait_poll_interval: settings.wait_poll_interval,
        job_events,
        auth: deps.auth,
        webhook_deny_private: settings.webhook_deny_private,
        metrics: MetricsSource {
            db: api_db.clone(),
            pools: vec![deps.db.clone(), api_db.clone()],
        },
    };
    let metrics_source = state.metrics.clone();
    if state.auth.mode() == AuthMode::None {
        tracing::warn!("{AUTH_OFF_WARNING}");
    }
    let router = http::router(state, settings.request_timeout, metrics_listener.is_none());
    let server_tls = tls.is_some();
    let shutdown_for_server = shutdown.clone();
    let stopping = async move {
        shutdown_for_server.cancelled().await;
        requests_stopping.cancel();
    };
    let limits = ConnectionLimits {
        header_read: settings.header_read_timeout,
        drain: settings.request_timeout + DRAIN_MARGIN,
    };
    let server = match tls {
        None => tokio::spawn(connections::serve(listener, router, limits, stopping)),
        Some(acceptor) => tokio::spawn(connections::serve(
            TlsListener::new(listener, acceptor),
            router,
            limits,
            stopping,
        )),
    };
    let (metrics_server, metrics_addr) =
        serve_metrics(metrics_listener, metrics_source, limits, &shutdown)?;
    tracing::info!(%addr, tls = server_tls, engine = engine.is_some(), "listening");
    Ok(RunningService {
        addr,
        shutdown,
        engine,
        server: Some(server),
        supervisor,
        listening: Some(listening),
        api_db,
        metrics_server,
        metrics_addr,
    })
}

/// Serves `/metrics` alone on its own listener (`--metrics-listen`), if one was bound.
fn serve_metrics(
    listener: Option<TcpListener>,
    source: MetricsSource,
    limits: ConnectionLimits,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Option<JoinHandle<()>>, Option<SocketAddr>)> {
    let Some(listener) = listener else {
        return Ok((None, None));
    };
    let addr = listener
        .local_addr()
        .context("the metrics listener has no local address")?;
    let stop = shutdown.clone();
    let server = tokio::spawn(connections::serve(
        listener,
        http::metrics::router(source),
        limits,
        async move { stop.cancelled().await },
    ));
    tracing::info!(%addr, "serving /metrics on its own listener");
    Ok((Some(server), Some(addr)))
}

/// The API's own pool on the engine's database, so that requests (a burst of
/// `?wait=`, a slow listing) cannot take the connections the engine needs, nor
/// the engine theirs. One connection more than `max_connections` is for the
/// LISTEN that wakes waiting requests. Connections open when first needed.
fn api_pool(engine_db: &PgPool, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1) + 1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(engine_db.connect_options().as_ref().clone())
}

/// The service started by [`start`]. Dropping it cancels its shutdown token.
#[must_use = "dropping the service stops it"]
pub struct RunningService {
    addr: SocketAddr,
    shutdown: CancellationToken,
    engine: Option<EngineHealth>,
    server: Option<JoinHandle<()>>,
    supervisor: Option<Supervisor>,
    /// The LISTEN for ended jobs; it ends with the shutdown token.
    listening: Option<JoinHandle<()>>,
    api_db: PgPool,
    /// `/metrics` on its own listener (`--metrics-listen`).
    metrics_server: Option<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
}

impl RunningService {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on alone (`--metrics-listen`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Cancel it to stop the service: the server stops accepting, requests in
    /// flight finish (connections still open a second after the request
    /// timeout are dropped), the engine drains.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The engine's tasks: which are up, how often each was restarted. `None`
    /// when the API is served alone.
    pub fn engine_health(&self) -> Option<&EngineHealth> {
        self.engine.as_ref()
    }

    /// Waits until the service has stopped: after the shutdown token is
    /// cancelled, or at once if the server task fails (then the engine is
    /// stopped too).
    ///
    /// # Errors
    /// The HTTP server task failed (panicked).
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        let served = match self.server.take() {
            Some(server) => server.await,
            None => Ok(()),
        };
        self.shutdown.cancel();
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.stopped().await;
        }
        if let Some(listening) = self.listening.take() {
            listening.await.ok();
        }
        if let Some(metrics_server) = self.metrics_server.take() {
            metrics_server.await.ok();
        }
        self.api_db.close().await;
        served.context("the HTTP server task failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
