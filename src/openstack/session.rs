//! An authenticated session: token cache and renewal, endpoint and microversion
//! discovery, timeouts, bounded retries, one re-authentication on 401.
//!
//! Over 400 lines: the request path (token, endpoint, microversion, retry,
//! re-auth) is one sequence whose steps share the session's cached state.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use reqwest::{Method, header::HeaderMap};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{
    authority::Authority,
    config::CloudConfig,
    error::{ErrorKind, OpenStackError, classify, error_message},
    keystone::{self, Token},
    retry::{RetryPolicy, parse_retry_after},
    version::{Microversion, negotiate, offered_range},
};
use crate::telemetry::metrics;

/// Renew a token this long before Keystone says it expires.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The OpenStack services stacksnap calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Compute,
    Image,
    Volume,
    /// Keystone, for what the service asks of it besides its own token
    /// (validating the tokens of callers).
    Identity,
}

impl Service {
    /// Name used in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Compute => "nova",
            Self::Image => "glance",
            Self::Volume => "cinder",
            Self::Identity => "keystone",
        }
    }

    fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Self::Compute => &["compute"],
            Self::Image => &["image"],
            Self::Volume => &["block-storage", "volumev3", "volume"],
            Self::Identity => &["identity"],
        }
    }

    /// `(major version id, microversion header service name, highest version we speak)`.
    fn microversions(self) -> Option<(&'static str, &'static str, Microversion)> {
        match self {
            Self::Compute => Some(("v2.1", "compute", Microversion(2, 96))),
            Self::Volume => Some(("v3", "volume", Microversion(3, 71))),
            Self::Image | Self::Identity => None,
        }
    }
}

/// Timeouts and retries of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct Call {
    pub service: Service,
    pub operation: &'static str,
    pub method: Method,
    /// Joined to the endpoint URL; starts with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Sent as `X-Subject-Token`: the token Keystone is asked about. A secret,
    /// so that it never shows in `Debug` output or logs.
    pub subject_token: Option<SecretString>,
}

impl Call {
    /// A call with no query and no body.
    pub fn new(
        service: Service,
        operation: &'static str,
        method: Method,
        path: impl Into<String>,
    ) -> Self {
        Self {
            service,
            operation,
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            subject_token: None,
        }
    }

    /// Adds the `X-Subject-Token` header.
    pub fn subject_token(mut self, token: SecretString) -> Self {
        self.subject_token = Some(token);
        self
    }

    /// Adds a JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Adds query parameters.
    pub fn query(mut self, query: Vec<(String, String)>) -> Self {
        self.query = query;
        self
    }

    /// A path segment that cannot stand for an id: empty, `.` or `..` (which a
    /// URL parser would fold into the path around it, reaching another resource).
    fn unusable_segment(&self) -> Option<&str> {
        let path = self.path.split('?').next().unwrap_or_default();
        path.strip_prefix('/')
            .unwrap_or(path)
            .split('/')
            .find(|s| matches!(*s, "" | "." | ".."))
    }

    /// Safe to repeat after a failure whose effect is unknown (a timeout, a 5xx).
    fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET | Method::HEAD | Method::DELETE | Method::PUT
        )
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: Option<String>,
    /// The microversion the call was made at, if the service has them.
    pub microversion: Option<Microversion>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    microversion: Option<Microversion>,
}

/// An authenticated connection to one cloud, shared by all clients.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    config: CloudConfig,
    options: SessionOptions,
    /// Whose authority the calls carry.
    authority: Authority,
    /// The service's own session, whose endpoints a user-token session uses
    /// (a user's token comes without a catalog).
    parent: Option<Arc<Session>>,
    token: Mutex<Option<Token>>,
    endpoints: Mutex<HashMap<Service, Endpoint>>,
    calls: AtomicU64,
}

/// The HTTP client for a cloud: its CA bundle, its TLS checks, our timeouts.
///
/// # Errors
/// The CA bundle cannot be read or the client cannot be built.
pub fn http_client(
    config: &CloudConfig,
    options: &SessionOptions,
) -> Result<reqwest::Client, OpenStackError> {
    let fail = |m: String| OpenStackError::new(ErrorKind::Config, "keystone", "configure", m);
    let mut builder = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .connect_timeout(options.connect_timeout)
        .user_agent(concat!("stacksnap/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.cacert {
        let pem = std::fs::read(path)
            .map_err(|e| fail(format!("cannot read cacert {}: {e}", path.display())))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| fail(format!("bad cacert: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if config.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))
}

impl Session {
    /// Builds a session; nothing is sent until the first call.
    ///
    /// # Errors
    /// The CA bundle cannot be read or the HTTP client cannot be built.
    pub fn new(config: CloudConfig, options: SessionOptions) -> Result<Self, OpenStackError> {
        let http = http_client(&config, &options)?;
        Ok(Self {
            http,
            config,
            options,
            authority: Authority::Service,
            parent: None,
            token: Mutex::new(None),
            endpoints: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        })
    }

    /// A session on the same cloud acting with another authority. It shares
    /// the HTTP client; a user-token session also shares the endpoints.
    pub fn acting_as(service: &Arc<Self>, authority: Authority) -> Self {
        Self {
            http: service.http.clone(),
            config: service.config.clone(),
            options: service.options,
            parent: matches!(authority, Authority::UserToken { .. }).then(|| service.clone()),
            authority,
            token: Mutex::new(None),
            endpoints: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// The configured cloud.
    pub(crate) fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// The HTTP client, for the few Keystone calls outside [`Session::send`].
    pub(crate) fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Drops the cached token: the next call logs in afresh. A trust whose
    /// trustor lost its roles stays usable in a cached token's eyes (the
    /// services' middleware answers 503, not 401); a fresh login tells.
    pub(crate) async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// This session's token, authenticating when needed.
    ///
    /// # Errors
    /// Authentication fails.
    pub(crate) async fn current_token(&self) -> Result<Token, OpenStackError> {
        self.token().await
    }

    /// The Keystone URL the session authenticates with.
    pub fn auth_url(&self) -> &str {
        &self.config.auth_url
    }

    /// How many HTTP requests this session has sent to OpenStack services (Keystone included).
    pub fn call_count(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The project the token is scoped to.
    ///
    /// # Errors
    /// Authentication fails.
    pub async fn project_id(&self) -> Result<Option<String>, OpenStackError> {
        Ok(self.token().await?.project_id)
    }

    /// The microversion calls to `service` are made at.
    ///
    /// # Errors
    /// Authentication or discovery fails.
    pub async fn microversion(
        &self,
        service: Service,
    ) -> Result<Option<Microversion>, OpenStackError> {
        Ok(self.endpoint(service).await?.microversion)
    }

    /// Sends `call`, retrying what is safe to retry and re-authenticating once on 401.
    ///
    /// # Errors
    /// The typed failure of the last attempt.
    pub async fn send(&self, call: &Call) -> Result<Reply, OpenStackError> {
        if let Some(segment) = call.unusable_segment() {
            return Err(OpenStackError::new(
                ErrorKind::BadRequest,
                call.service.name(),
                call.operation,
                format!(
                    "refusing to send {}: {segment:?} is no usable id",
                    call.path
                ),
            ));
        }
        let mut attempt = 1;
        let mut reauthenticated = false;
        loop {
            let token = self.token().await?;
            let endpoint = self.endpoint(call.service).await?;
            match self.send_once(call, &token, &endpoint).await {
                Ok(reply) => return Ok(reply),
                Err(error)
                    if error.kind == ErrorKind::Unauthorized
                        && !reauthenticated
                        && !matches!(self.authority, Authority::UserToken { .. }) =>
                {
                    // The token was revoked or expired early: get a new one, once.
                    tracing::info!(
                        service = call.service.name(),
                        "token refused; authenticating again"
                    );
                    reauthenticated = true;
                    // Another task may have renewed it meanwhile: drop only the refused one.
                    let mut cached = self.token.lock().await;
                    let refused = token.value.expose_secret();
                    if cached
                        .as_ref()
                        .is_some_and(|t| t.value.expose_secret() == refused)
                    {
                        *cached = None;
                    }
                }
                Err(error)
                    if attempt < self.options.retry.max_attempts && should_retry(call, &error) =>
                {
                    let delay =
                        self.options
                            .retry
                            .delay(attempt, error.retry_after, fastrand::f64());
                    tracing::warn!(
                        service = call.service.name(),
                        operation = call.operation,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "retrying OpenStack call"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn send_once(
        &self,
        call: &Call,
        token: &Token,
        endpoint: &Endpoint,
    ) -> Result<Reply, OpenStackError> {
        let url = format!("{}{}", endpoint.url, call.path);
        let mut request = self
            .http
            .request(call.method.clone(), &url)
            .header("X-Auth-Token", token.value.expose_secret())
            .header("Accept", "application/json");
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let (Some(version), Some((_, header_service, _))) =
            (endpoint.microversion, call.service.microversions())
        {
            request = request.header(
                "OpenStack-API-Version",
                format!("{header_service} {version}"),
            );
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        if let Some(subject) = &call.subject_token {
            request = request.header("X-Subject-Token", subject.expose_secret());
        }
        let started = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                metrics::openstack_request(
                    call.service.name(),
                    call.operation,
                    None,
                    started.elapsed(),
                );
                return Err(transport_error(call, &e));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = headers
            .get("x-openstack-request-id")
            .or_else(|| headers.get("x-compute-request-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await;
        // Counted with its status once the body is in (or failed to come).
        metrics::openstack_request(
            call.service.name(),
            call.operation,
            body.is_ok().then_some(status),
            started.elapsed(),
        );
        let body = body.map_err(|e| transport_error(call, &e))?;
        tracing::debug!(
            service = call.service.name(),
            operation = call.operation,
            method = %call.method,
            path = %call.path,
            status,
            request_id = request_id.as_deref().unwrap_or("-"),
            latency_ms = started.elapsed().as_millis() as u64,
            "OpenStack call"
        );
        if (200..400).contains(&status) {
            return Ok(Reply {
                status,
                headers,
                body,
                request_id,
                microversion: endpoint.microversion,
            });
        }
        // A service that echoes a token it was sent (as Keystone's "Could not
        // find token: ..." does) must not carry it into logs (the retry's warning
        // among them) or errors: scrubbed before the message is cut short, so
        // no part of one is left either.
        let subject = call.subject_token.as_ref().map(|t| t.expose_secret());
        let body = crate::redact::scrub(
            &String::from_utf8_lossy(&body),
            [Some(token.value.expose_secret()), subject]
                .into_iter()
                .flatten(),
        );
        let message = error_message(&body);
        let retry_after = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        Err(OpenStackError {
            kind: classify(status, &message, retry_after.is_some()),
            service: call.service.name(),
            operation: call.operation,
            status: Some(status),
            request_id,
            message,
            retry_after,
        })
    }

    /// A token valid for at least a few more minutes, authenticating when needed.
    async fn token(&self) -> Result<Token, OpenStackError> {
        let mut cached = self.token.lock().await;
        // Renew five minutes early, or halfway through a token that lives shorter.
        let fresh = |t: &&Token| {
            t.expires_at - chrono::Utc::now() > RENEW_BEFORE.min((t.expires_at - t.issued_at) / 2)
        };
        if let Some(token) = cached.as_ref().filter(fresh) {
            return Ok(token.clone());
        }
        let token = match &self.authority {
            Authority::Service => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                keystone::authenticate(&self.http, &self.config).await?
            }
            Authority::Trust(trust) => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                keystone::authenticate_with_trust(&self.http, &self.config, trust.expose()).await?
            }
            Authority::UserToken {
                token,
                project_id,
                expires_at,
            } => {
                if *expires_at <= chrono::Utc::now() {
                    return Err(OpenStackError::new(
                        ErrorKind::Unauthorized,
                        "keystone",
                        "authenticate",
                        "the caller's token has expired",
                    ));
                }
                // Used as it is until it expires: never "renewed".
                return Ok(Token {
                    value: token.clone(),
                    issued_at: chrono::Utc::now() - (*expires_at - chrono::Utc::now()),
                    expires_at: *expires_at,
                    project_id: Some(project_id.clone()),
                    user_id: None,
                    catalog: Vec::new(),
                });
            }
        };
        tracing::info!(expires_at = %token.expires_at, delegated = self.authority.is_delegated(), "authenticated to Keystone");
        *cached = Some(token.clone());
        Ok(token)
    }

    /// The endpoint of `service` and the microversion negotiated with it, discovered once.
    async fn endpoint(&self, service: Service) -> Result<Endpoint, OpenStackError> {
        if let Some(endpoint) = self.endpoints.lock().await.get(&service) {
            return Ok(endpoint.clone());
        }
        if let (Some(parent), Authority::UserToken { project_id, .. }) =
            (&self.parent, &self.authority)
        {
            let mut endpoint = Box::pin(parent.endpoint(service)).await?;
            // A catalog URL may hold the service's own project (`/v3/<project>`).
            if let Some(own) = parent.token().await?.project_id {
                endpoint.url = replace_project_segment(&endpoint.url, &own, project_id);
            }
            self.endpoints
                .lock()
                .await
                .insert(service, endpoint.clone());
            return Ok(endpoint);
        }
        let token = self.token().await?;
        let url = keystone::endpoint_url(
            &token.catalog,
            service.catalog_types(),
            &self.config.interface,
            self.config.region_name.as_deref(),
        )
        // Keystone answers at the URL the service authenticates with even when
        // the catalog does not list it.
        .or_else(|| (service == Service::Identity).then(|| self.config.auth_url.clone()))
        // Identity paths carry their version (`/v3/...`): catalogs list Keystone
        // with or without it.
        .map(|url| match service {
            Service::Identity => identity_root(&url),
            _ => url,
        })
        .ok_or_else(|| {
            OpenStackError::new(
                ErrorKind::Config,
                service.name(),
                "discover",
                format!(
                    "the catalog has no {} endpoint for interface {}{}",
                    service.catalog_types().join("/"),
                    self.config.interface,
                    self.config
                        .region_name
                        .as_ref()
                        .map(|r| format!(" in region {r}"))
                        .unwrap_or_default()
                ),
            )
        })?;
        let microversion = match service.microversions() {
            None => None,
            Some((major, _, wanted)) => {
                let document = self.version_document(service, &url, &token).await?;
                let offered = offered_range(&document, major);
                // A service without microversions speaks its base version.
                offered.map_or(Some(base_version(major)), |range| {
                    negotiate(Some(range), wanted)
                })
            }
        };
        tracing::info!(service = service.name(), %url, microversion = ?microversion.map(|v| v.to_string()), "discovered endpoint");
        let endpoint = Endpoint { url, microversion };
        self.endpoints
            .lock()
            .await
            .insert(service, endpoint.clone());
        Ok(endpoint)
    }

    async fn version_document(
        &self,
        service: Service,
        url: &str,
        token: &Token,
    ) -> Result<String, OpenStackError> {
        let root = service_root(url);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let fail = |kind, m: String| OpenStackError::new(kind, service.name(), "discover", m);
        let response = self
            .http
            .get(&root)
            .header("X-Auth-Token", token.value.expose_secret())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                fail(
                    ErrorKind::Transport,
                    format!("cannot read the version document at {root}: {e}"),
                )
            })?;
        let status = response.status();
        if !(status.is_success() || status == reqwest::StatusCode::MULTIPLE_CHOICES) {
            // Not cached: a transient failure must not pin the oldest microversion for good.
            let kind = if status.is_server_error() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Config
            };
            return Err(fail(
                kind,
                format!("the version document at {root} answered {status}"),
            ));
        }
        response.text().await.map_err(|e| {
            fail(
                ErrorKind::Transport,
                format!("cannot read the version document at {root}: {e}"),
            )
        })
    }
}

/// Keystone's URL without its version segment: `http://k/identity/v3/` → `http://k/identity`.
fn identity_root(url: &str) -> String {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v3").unwrap_or(url).to_owned()
}

fn base_version(major: &str) -> Microversion {
    Microversion::parse(major.trim_start_matches('v'))
        .unwrap_or(Microversion(major.len() as u32, 0))
}

fn should_retry(call: &Call, error: &OpenStackError) -> bool {
    if !call.is_idempotent() {
        // A POST creates: after a 503 (a proxy's, even with `Retry-After`), a
        // timeout or a 5xx it may have been carried out, and only the engine,
        // after looking the artefact up, may send it again. A 429 was refused
        // before it was processed.
        return error.status == Some(429);
    }
    matches!(
        error.kind,
        ErrorKind::RateLimited
            | ErrorKind::Unavailable
            | ErrorKind::ServerError
            | ErrorKind::Timeout
            | ErrorKind::Transport
    )
}

fn transport_error(call: &Call, error: &reqwest::Error) -> OpenStackError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    OpenStackError::new(kind, call.service.name(), call.operation, error.to_string())
}

/// `url` with a path segment equal to `from` (a project id in a catalog URL)
/// replaced by `to`.
fn replace_project_segment(url: &str, from: &str, to: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let replaced: Vec<&str> = rest
        .split('/')
        .enumerate()
        .map(|(i, s)| if i > 0 && s == from { to } else { s })
        .collect();
    format!("{scheme}://{}", replaced.join("/"))
}

/// The URL of a service's version list: the endpoint up to its version segment
/// (`http://h:8774/v2.1/abc` → `http://h:8774/`).
pub fn service_root(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let mut segments: Vec<&str> = rest.split('/').collect();
    if let Some(position) = segments.iter().skip(1).position(|s| is_version_segment(s)) {
        segments.truncate(position + 1);
    }
    format!("{scheme}://{}/", segments.join("/").trim_end_matches('/'))
}

fn is_version_segment(segment: &str) -> bool {
    segment.strip_prefix('v').is_some_and(|rest| {
        !rest.is_empty()
            && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
            && rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: ErrorKind, status: Option<u16>) -> OpenStackError {
        let mut error = OpenStackError::new(kind, "nova", "x", "failed");
        error.status = status;
        error
    }

    #[test]
    fn a_post_is_repeated_only_after_a_429() {
        let post = Call::new(
            Service::Compute,
            "create_image",
            Method::POST,
            "/servers/s/action",
        );
        let get = Call::new(Service::Compute, "get_server", Method::GET, "/servers/s");
        for unclear in [
            failure(ErrorKind::Unavailable, Some(503)),
            failure(ErrorKind::RateLimited, Some(503)),
            failure(ErrorKind::ServerError, Some(500)),
            failure(ErrorKind::Timeout, None),
            failure(ErrorKind::Transport, None),
        ] {
            assert!(!should_retry(&post, &unclear), "{unclear}");
            assert!(should_retry(&get, &unclear), "{unclear}");
        }
        assert!(should_retry(
            &post,
            &failure(ErrorKind::RateLimited, Some(429))
        ));
        assert!(!should_retry(
            &get,
            &failure(ErrorKind::Conflict, Some(409))
        ));
    }

    #[test]
    fn paths_with_an_empty_or_dot_segment_are_unusable() {
        let call = |path: &str| Call::new(Service::Image, "x", Method::GET, path);
        assert_eq!(call("/v2/images/..").unusable_segment(), Some(".."));
        assert_eq!(call("/v2/images/").unusable_segment(), Some(""));
        assert_eq!(call("/v2/images/./x").unusable_segment(), Some("."));
        assert_eq!(call("/v2/images/a%2F..").unusable_segment(), None);
        assert_eq!(call("/v2/images?marker=..").unusable_segment(), None);
    }

    #[test]
    fn a_project_in_a_catalog_url_is_replaced_by_the_callers() {
        assert_eq!(
            replace_project_segment("http://h:8776/v3/adminp", "adminp", "demop"),
            "http://h:8776/v3/demop"
        );
        assert_eq!(
            replace_project_segment("http://adminp/v3", "adminp", "demop"),
            "http://adminp/v3"
        );
    }

    #[test]
    fn identity_urls_lose_their_version_segment() {
        assert_eq!(identity_root("http://k/identity/v3/"), "http://k/identity");
        assert_eq!(identity_root("http://k:5000/v3"), "http://k:5000");
        assert_eq!(identity_root("http://k/identity"), "http://k/identity");
    }

    #[test]
    fn service_roots_strip_the_version_and_project() {
        assert_eq!(service_root("http://h:8774/v2.1"), "http://h:8774/");
        assert_eq!(service_root("http://h:8776/v3/0f2d"), "http://h:8776/");
        assert_eq!(service_root("http://h/compute/v2.1"), "http://h/compute/");
        assert_eq!(service_root("https://h/volume/v3/abc"), "https://h/volume/");
        assert_eq!(service_root("http://h:9292"), "http://h:9292/");
    }
}
