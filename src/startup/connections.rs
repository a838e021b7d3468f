//! Serving the API's connections, plain or TLS, in place of `axum::serve`:
//! axum 0.8 builds hyper's connections without a timer, so hyper's header-read
//! deadline is off and a client that sends half a request head holds its
//! connection, and a graceful stop, for ever. Here every connection must send
//! each request head within a deadline, and a stop waits a bounded time for the
//! connections still open before it drops them.

use std::{pin::pin, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long connections may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request head (request line and headers) must arrive within this,
    /// counted from when the connection starts waiting for it (idle keep-alive
    /// connections are closed after it too).
    pub header_read: Duration,
    /// After a stop, connections still open this long are dropped: requests in
    /// flight have had their time, and a silent client holds nothing.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `stopping` ends; then stops accepting,
/// lets requests in flight finish, and drops what is still open after
/// `limits.drain`.
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: ConnectionLimits,
    stopping: impl Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let stop_connections = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut stopping = pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            (io, peer) = listener.accept() => {
                let connection = builder
                    .serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()))
                    .into_owned();
                let stop = stop_connections.clone();
                connections.spawn(async move {
                    let mut connection = pin!(connection);
                    // After a stop, the connection ends once its request in flight is answered.
                    let result = tokio::select! {
                        result = connection.as_mut() => result,
                        () = stop.cancelled() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(error) = result {
                        // A client that went away, or sent no head in time: nothing to act on.
                        tracing::debug!(?peer, error = %error, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    stop_connections.cancel();
    let drained = tokio::time::timeout(limits.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            drain_ms = limits.drain.as_millis() as u64,
            "closing connections still open after the drain"
        );
        connections.shutdown().await;
    }
}
