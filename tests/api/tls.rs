//! The listener over TLS (`--tls-cert`, `--tls-key`): HTTPS with the given
//! certificate, the health probe over TLS, a clean stop, and start-up refusing
//! unusable files with an error that names them. Certificates are made at test
//! time with the `openssl` command.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use clap::Parser as _;
use sqlx::{PgPool, postgres::PgPoolOptions};
use stacksnap::{
    cli::Cli,
    clock::SystemClock,
    config::Settings,
    engine::EngineConfig,
    startup::{self, Dependencies},
};

use crate::helpers::{start_service_with, test_settings};

/// A fresh folder for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("stacksnap-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Writes a self-signed P-256 certificate for `localhost` and 127.0.0.1 (not a
/// CA: webpki refuses a CA certificate as a server's own) and its key.
fn self_signed(dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.path(&format!("{name}-cert.pem"));
    let key = dir.path(&format!("{name}-key.pem"));
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command makes the test certificate (apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (cert, key)
}

fn tls_settings(cert: &Path, key: &Path) -> Settings {
    Settings {
        tls_cert: Some(cert.to_owned()),
        tls_key: Some(key.to_owned()),
        ..test_settings()
    }
}

/// A client that trusts only `cert`.
fn client_trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[sqlx::test]
async fn the_listener_serves_https_with_the_given_certificate(pool: PgPool) {
    // Arrange
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir, "server");
    let service = start_service_with(
        tls_settings(&cert, &key),
        pool,
        Arc::new(SystemClock),
        None,
        EngineConfig::default(),
    )
    .await;
    let addr = service.local_addr();

    // Act
    let response = client_trusting(&cert)
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .expect("an HTTPS request with the served certificate trusted");

    // Assert
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be answered on the TLS port: {plain:?}"
    );
    let (other_cert, _) = self_signed(&dir, "other");
    let stranger = client_trusting(&other_cert)
        .get(format!("https://{addr}/healthz"))
        .send()
        .await;
    assert!(
        stranger.is_err(),
        "a client that does not trust the certificate is refused"
    );
}

#[sqlx::test]
async fn the_health_probe_speaks_tls_when_a_certificate_is_set(pool: PgPool) {
    // Arrange
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir, "server");
    let service = start_service_with(
        tls_settings(&cert, &key),
        pool,
        Arc::new(SystemClock),
        None,
        EngineConfig::default(),
    )
    .await;
    let listen = service.local_addr().to_string();
    let probe = |with_cert: bool| {
        let mut args = vec!["stacksnap", "healthcheck", "--listen", &listen];
        if with_cert {
            args.extend(["--tls-cert", cert.to_str().unwrap()]);
        }
        Cli::try_parse_from(args).unwrap()
    };

    // Act
    let over_tls = probe(true).run().await;
    let over_plain_http = probe(false).run().await;

    // Assert
    assert!(over_tls.is_ok(), "{over_tls:?}");
    assert!(
        over_plain_http.is_err(),
        "a plain probe of a TLS port fails"
    );
}

#[sqlx::test]
async fn a_tls_service_stops_cleanly_when_asked(pool: PgPool) {
    // Arrange
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir, "server");
    let service = start_service_with(
        tls_settings(&cert, &key),
        pool,
        Arc::new(SystemClock),
        None,
        EngineConfig::default(),
    )
    .await;
    let addr = service.local_addr();
    let client = client_trusting(&cert);
    let url = format!("https://{addr}/healthz");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // Act
    service.shutdown_token().cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), service.stopped()).await;

    // Assert
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "stopped within 10s: {stopped:?}"
    );
    let after = client_trusting(&cert).get(&url).send().await;
    assert!(after.is_err(), "nothing listens after the stop");
}

/// Starts the service with `settings` and returns why it refused; no database is
/// reached, since the TLS files are read first.
async fn start_up_error(settings: Settings) -> String {
    let pool = PgPoolOptions::new()
        .connect_lazy("postgres://stacksnap@127.0.0.1:1/unused")
        .unwrap();
    let deps = Dependencies {
        db: pool,
        clock: Arc::new(SystemClock),
        cloud: None,
        auth: stacksnap::http::auth::Authenticator::Disabled,
    };
    let settings = Settings {
        no_engine: true,
        ..settings
    };
    match startup::start(&settings, deps, EngineConfig::default()).await {
        Ok(_) => panic!("the service started with unusable TLS settings"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_missing_key_file_stops_start_up_with_an_error_naming_it() {
    let dir = TempDir::new();
    let (cert, _) = self_signed(&dir, "server");
    let missing = dir.path("no-such-key.pem");

    let error = start_up_error(tls_settings(&cert, &missing)).await;

    assert!(
        error.starts_with(&format!(
            "cannot read the TLS private key {}: ",
            missing.display()
        )),
        "{error}"
    );
    assert!(error.contains("No such file"), "{error}");
}

#[tokio::test]
async fn a_key_file_without_a_key_or_with_the_wrong_key_is_refused() {
    let dir = TempDir::new();
    let (cert, _) = self_signed(&dir, "server");
    let (_, other_key) = self_signed(&dir, "other");

    let no_key = start_up_error(tls_settings(&cert, &cert)).await;
    let wrong_key = start_up_error(tls_settings(&cert, &other_key)).await;

    assert_eq!(
        no_key,
        format!(
            "cannot read the TLS private key {}: no PEM private key in it",
            cert.display()
        )
    );
    assert!(
        wrong_key.starts_with(&format!(
            "cannot serve TLS with the certificate {} and the key {}: ",
            cert.display(),
            other_key.display()
        )),
        "{wrong_key}"
    );
    let key_text = std::fs::read_to_string(&other_key).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(
        !wrong_key.contains(key_body),
        "never the key itself: {wrong_key}"
    );
}

#[tokio::test]
async fn a_certificate_without_its_key_stops_start_up() {
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir, "server");

    let only_cert = start_up_error(Settings {
        tls_cert: Some(cert),
        ..test_settings()
    })
    .await;
    let only_key = start_up_error(Settings {
        tls_key: Some(key),
        ..test_settings()
    })
    .await;

    assert_eq!(
        only_cert,
        "--tls-cert (STACKSNAP_TLS_CERT) is set but --tls-key (STACKSNAP_TLS_KEY) is not: give both, or neither to serve plain HTTP"
    );
    assert!(
        only_key.starts_with("--tls-key (STACKSNAP_TLS_KEY) is set but --tls-cert"),
        "{only_key}"
    );
}

#[sqlx::test]
async fn a_tls_client_that_never_finishes_its_request_head_is_closed_within_the_deadline(
    pool: PgPool,
) {
    use tokio::io::AsyncWriteExt as _;
    use tokio_rustls::{
        TlsConnector,
        rustls::{
            ClientConfig, RootCertStore,
            crypto::aws_lc_rs,
            pki_types::{CertificateDer, ServerName, pem::PemObject as _},
        },
    };

    // Arrange
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir, "server");
    let service = start_service_with(
        Settings {
            header_read_timeout: Duration::from_secs(1),
            ..tls_settings(&cert, &key)
        },
        pool,
        Arc::new(SystemClock),
        None,
        EngineConfig::default(),
    )
    .await;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(service.local_addr())
        .await
        .unwrap();

    // Act: a whole handshake, then half a request head.
    let mut stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake");
    stream
        .write_all(crate::api::connections::HALF_A_HEAD)
        .await
        .unwrap();
    stream.flush().await.unwrap();

    // Assert
    assert!(
        crate::api::connections::closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "a half-sent request head held its TLS connection past the deadline"
    );
}
