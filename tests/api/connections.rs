//! Connections that never finish a request: a client that sends half a request
//! head is closed within `--header-read-timeout`, and a stop does not wait for
//! it. (Over TLS: `tls.rs`.)

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock, config::Settings, engine::EngineConfig, startup::RunningService,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::helpers::{start_service_with, test_settings};

/// A request line and one header, but never the blank line that ends the head.
pub const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

async fn start(pool: PgPool, settings: Settings) -> RunningService {
    start_service_with(
        settings,
        pool,
        Arc::new(SystemClock),
        None,
        EngineConfig::default(),
    )
    .await
}

async fn half_a_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(HALF_A_HEAD).await.unwrap();
    stream
}

/// Reads until the server closes the connection (end of stream or reset);
/// `None` when it is still open after `within`.
pub async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<()> {
    tokio::time::timeout(within, async {
        let mut buffer = [0_u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[sqlx::test]
async fn a_client_that_never_finishes_its_request_head_is_closed_within_the_deadline(pool: PgPool) {
    // Arrange
    let service = start(
        pool,
        Settings {
            header_read_timeout: Duration::from_secs(1),
            ..test_settings()
        },
    )
    .await;

    // Act
    let mut stream = half_a_request(service.local_addr()).await;

    // Assert
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "a half-sent request head held its connection past the deadline"
    );
    let healthy = reqwest::get(format!("http://{}/healthz", service.local_addr()))
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "whole requests are still served");
}

#[sqlx::test]
async fn a_stop_does_not_wait_for_a_client_that_never_finishes_its_request_head(pool: PgPool) {
    // Arrange: a deadline far off, so only the stop's bounded drain can end it.
    let service = start(
        pool,
        Settings {
            header_read_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(1),
            ..test_settings()
        },
    )
    .await;
    let mut stream = half_a_request(service.local_addr()).await;
    assert!(
        closed_within(&mut stream, Duration::from_millis(200))
            .await
            .is_none(),
        "the connection is open before the stop"
    );

    // Act
    service.shutdown_token().cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), service.stopped()).await;

    // Assert
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "stopped within 10s with the connection open: {stopped:?}"
    );
    assert!(
        closed_within(&mut stream, Duration::from_secs(1))
            .await
            .is_some(),
        "the connection was closed by the stop"
    );
}
