//! Optional TLS for the listener, for deployments without a TLS-terminating
//! proxy: the certificate and key files (`--tls-cert`, `--tls-key`) read into a
//! rustls server configuration, and a listener that hands the server only
//! connections whose handshake is done, so serving (its header-read deadline
//! and graceful shutdown, see `connections`) is the same with TLS as without.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        crypto::aws_lc_rs,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    },
    server::TlsStream,
};

/// A client has this long to finish its handshake, so a silent one holds no task for longer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key to serve HTTPS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates, the server's own first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the listener cannot serve TLS. Names the files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "--tls-cert (STACKSNAP_TLS_CERT) is set but --tls-key (STACKSNAP_TLS_KEY) is not: give both, or neither to serve plain HTTP"
    )]
    KeyMissing,
    #[error(
        "--tls-key (STACKSNAP_TLS_KEY) is set but --tls-cert (STACKSNAP_TLS_CERT) is not: give both, or neither to serve plain HTTP"
    )]
    CertMissing,
    #[error("cannot read the TLS certificate {}: {reason}", .path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read the TLS private key {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("cannot serve TLS with the certificate {} and the key {}: {reason}", .cert.display(), .key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsFiles {
    /// The files to serve TLS with: both given, or neither (plain HTTP).
    ///
    /// # Errors
    /// Only one of the two is given.
    pub fn from_options(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::KeyMissing),
            (None, Some(_)) => Err(TlsError::CertMissing),
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })),
        }
    }

    /// Reads both files into an acceptor that speaks HTTP/1.1 over TLS 1.2 or 1.3.
    ///
    /// # Errors
    /// A file cannot be read, holds no PEM item of its kind, or the key does not
    /// fit the certificate.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let cert_error = |reason: String| TlsError::Cert {
            path: self.cert.clone(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| cert_error(pem_reason(e, "certificate")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_error(pem_reason(e, "certificate")))?;
        if certs.is_empty() {
            return Err(cert_error("no PEM certificate in it".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Key {
            path: self.key.clone(),
            reason: pem_reason(e, "private key"),
        })?;
        let unusable = |reason: String| TlsError::Unusable {
            cert: self.cert.clone(),
            key: self.key.clone(),
            reason,
        };
        // The provider reqwest and sqlx already use: one crypto library in the binary.
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| unusable(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| unusable(e.to_string()))?;
        // axum serves HTTP/1 here (hyper's http2 is not built).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// What went wrong with a PEM file, in words that never quote its contents.
fn pem_reason(error: tokio_rustls::rustls::pki_types::pem::Error, what: &str) -> String {
    use tokio_rustls::rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => format!("no PEM {what} in it"),
        _ => format!("not a valid PEM {what} file"),
    }
}

/// A TCP listener that yields connections after their TLS handshake. Each
/// handshake runs in its own task, so a slow client delays no one else; one that
/// fails or times out is dropped with a debug line.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Serves TLS with `acceptor` on the bound `tcp` listener.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        self.handshakes.spawn(handshake(self.acceptor.clone(), stream, peer));
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some((tls, peer)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// As axum's own TCP listener does: a dropped connection is nothing; anything
/// else (out of file descriptors) is logged and waited out.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_files_or_neither() {
        let cert = Path::new("cert.pem");
        let key = Path::new("key.pem");
        assert_eq!(TlsFiles::from_options(None, None).unwrap(), None);
        assert_eq!(
            TlsFiles::from_options(Some(cert), Some(key)).unwrap(),
            Some(TlsFiles {
                cert: cert.into(),
                key: key.into()
            })
        );
        let only_cert = TlsFiles::from_options(Some(cert), None).unwrap_err();
        assert!(matches!(only_cert, TlsError::KeyMissing));
        assert!(
            only_cert.to_string().contains("STACKSNAP_TLS_KEY"),
            "{only_cert}"
        );
        let only_key = TlsFiles::from_options(None, Some(key)).unwrap_err();
        assert!(matches!(only_key, TlsError::CertMissing));
        assert!(only_key.to_string().contains("--tls-cert"), "{only_key}");
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let files = TlsFiles {
            cert: "/nonexistent/stacksnap-cert.pem".into(),
            key: "/nonexistent/stacksnap-key.pem".into(),
        };
        let Err(error) = files.acceptor() else {
            panic!("a missing file was accepted")
        };
        let error = error.to_string();
        assert!(
            error.starts_with("cannot read the TLS certificate /nonexistent/stacksnap-cert.pem: "),
            "{error}"
        );
    }
}
