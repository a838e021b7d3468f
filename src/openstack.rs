//! Thin async clients for the OpenStack APIs stacksnap uses: Keystone, Nova,
//! Glance and Cinder, over one authenticated [`Session`].
//!
//! Only the dozen calls the engine needs, typed; errors are [`OpenStackError`].

pub mod authority;
pub mod cinder;
pub mod config;
pub mod error;
pub mod glance;
pub mod keystone;
pub mod nova;
pub mod retry;
pub mod session;
pub mod version;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::de::DeserializeOwned;

pub use authority::{Authority, TrustId};
pub use config::CloudConfig;
pub use error::{ErrorKind, OpenStackError};
pub use session::{Session, SessionOptions};

use self::{
    cinder::Cinder,
    glance::Glance,
    nova::Nova,
    session::{Call, Reply},
};

/// One cloud: a shared session and the three service clients on it.
///
/// Cloning is cheap. [`OpenStack::acting_as`] gives a client on the same
/// cloud that acts with a user's delegated authority.
#[derive(Clone)]
pub struct OpenStack {
    /// The session calls are made with.
    session: Arc<Session>,
    /// The service's own session (the same as `session` unless delegated).
    service: Arc<Session>,
    /// Trust-scoped sessions, kept so that each trust authenticates once per token.
    trusts: Arc<Mutex<TrustSessions>>,
}

impl std::fmt::Debug for OpenStack {
    /// Without the trust sessions' keys: they are trust ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.trusts.lock().map_or(0, |t| t.len());
        f.debug_struct("OpenStack")
            .field("session", &self.session)
            .field("trust_sessions", &cached)
            .finish_non_exhaustive()
    }
}

/// Each trust's session and when it was last used, by trust id.
type TrustSessions = HashMap<String, (Arc<Session>, Instant)>;

/// A trust's session unused this long is dropped (its token would need renewing anyway).
const TRUST_SESSION_IDLE: Duration = Duration::from_secs(3600);

impl OpenStack {
    /// A client for the cloud described by `config`.
    ///
    /// # Errors
    /// The TLS settings cannot be used.
    pub fn new(config: CloudConfig, options: SessionOptions) -> Result<Self, OpenStackError> {
        let session = Arc::new(Session::new(config, options)?);
        Ok(Self {
            service: session.clone(),
            session,
            trusts: Arc::default(),
        })
    }

    /// A client on the same cloud acting with `authority`.
    pub fn acting_as(&self, authority: &Authority) -> Self {
        let session = match authority {
            Authority::Service => self.service.clone(),
            Authority::Trust(trust) => {
                let now = Instant::now();
                let mut trusts = self.trusts.lock().unwrap_or_else(|e| e.into_inner());
                trusts.retain(|_, (_, used)| now.duration_since(*used) < TRUST_SESSION_IDLE);
                let (session, used) =
                    trusts.entry(trust.expose().to_owned()).or_insert_with(|| {
                        (
                            Arc::new(Session::acting_as(&self.service, authority.clone())),
                            now,
                        )
                    });
                *used = now;
                session.clone()
            }
            Authority::UserToken { .. } => {
                Arc::new(Session::acting_as(&self.service, authority.clone()))
            }
        };
        Self {
            session,
            service: self.service.clone(),
            trusts: self.trusts.clone(),
        }
    }

    /// The service's own session (Keystone calls made with the service's authority).
    pub(crate) fn service_session(&self) -> &Session {
        &self.service
    }

    /// The compute API.
    pub fn nova(&self) -> Nova<'_> {
        Nova(&self.session)
    }

    /// The image API.
    pub fn glance(&self) -> Glance<'_> {
        Glance(&self.session)
    }

    /// The block-storage API.
    pub fn cinder(&self) -> Cinder<'_> {
        Cinder(&self.session)
    }

    /// The shared session (token, endpoints, call count).
    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// A link in a Nova or Cinder list answer (`servers_links`, `snapshots_links`, ...).
#[derive(Debug, Clone, serde::Deserialize)]
struct Link {
    #[serde(default)]
    rel: String,
}

/// Whether a list goes on after a page: a full page, or a `next` link. A cloud
/// caps pages at its own `max_limit`, which may be below the size we asked for,
/// and then says so with the link.
fn more_pages(page_len: usize, asked: usize, links: &[Link]) -> bool {
    page_len > 0 && (page_len >= asked || links.iter().any(|l| l.rel == "next"))
}

/// The characters an id keeps as they are in a URL path: RFC 3986's unreserved set.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id (read from an answer, or given by a user) as one URL path segment:
/// percent-encoded, so that `/`, `?` or `#` in it cannot change which resource
/// a call reaches. An id that is empty, `.` or `..` is still no segment: the
/// session refuses to send a path holding one.
pub(crate) fn segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// Reads a JSON answer into `T`.
fn decode<T: DeserializeOwned>(call: &Call, reply: &Reply) -> Result<T, OpenStackError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        let mut error = OpenStackError::new(
            ErrorKind::Decode,
            call.service.name(),
            call.operation,
            format!("unreadable answer: {e}"),
        );
        error.status = Some(reply.status);
        error.request_id = reply.request_id.clone();
        error
    })
}

/// Timestamps as OpenStack writes them: RFC 3339, or (Cinder, Nova) without an
/// offset, which means UTC.
pub(crate) mod timestamp {
    use chrono::{DateTime, NaiveDateTime, Utc};
    use serde::{Deserialize, Deserializer};

    /// Parses one timestamp.
    pub fn parse(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|t| t.and_utc())
            })
    }

    /// Deserialises an optional timestamp, treating unreadable ones as absent.
    pub fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?
            .as_deref()
            .and_then(parse))
    }
}
