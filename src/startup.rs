//! Building and running the service from its settings and dependencies.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::Clock,
    config::Settings,
    http::{self, AppState},
    openstack::OpenStack,
};

/// A bound listener and the router that will serve it.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// Handed to handlers so that long waits end when the server stops.
    requests_stopping: CancellationToken,
}

impl Application {
    /// Binds the listen address and assembles the router. Dependencies come in
    /// from outside so tests can pass their own database and clock.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn build(
        settings: &Settings,
        db: PgPool,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::build_with_cloud(settings, db, clock, None).await
    }

    /// As [`Application::build`], with the cloud the API reads directly (the orphan finder).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn build_with_cloud(
        settings: &Settings,
        db: PgPool,
        clock: Arc<dyn Clock>,
        cloud: Option<OpenStack>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let requests_stopping = CancellationToken::new();
        let state = AppState {
            db,
            clock,
            cloud,
            body_limit: settings.body_limit,
            shutdown: requests_stopping.clone(),
        };
        Ok(Self {
            listener,
            router: http::router(state, settings.request_timeout),
            requests_stopping,
        })
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    ///
    /// # Errors
    /// The server fails to accept connections.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let requests_stopping = self.requests_stopping;
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                requests_stopping.cancel();
            })
            .await
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
