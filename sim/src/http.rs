//! The simulator's HTTP front: one axum fallback that splits the path into
//! service and operation, applies injected faults, checks the token and the
//! microversion, calls the service, and stamps `x-openstack-request-id` and
//! the microversion headers on the answer before logging it.
//!
//! It owns no cloud state; the services in `keystone`, `nova`, `glance` and
//! `cinder` do the work.
//!
//! Over 400 lines: the routing table of four services in one match, so that
//! every path the simulator answers can be read in one place.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse as _, Response},
};
use chrono::Utc;
use serde::de::DeserializeOwned;

pub(crate) use super::reply::{empty, fault_body, html_error, insert, json};
use super::{
    admin, cinder, faults, glance, keystone,
    log::LoggedRequest,
    nova,
    state::{Fail, Shared},
    tenancy::Caller,
};

/// The most requests the log keeps; the older half goes when it is full.
const LOG_LIMIT: usize = 200_000;

/// The largest request body (image uploads included).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

/// The simulator's router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// The four simulated services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Keystone,
    Nova,
    Glance,
    Cinder,
}

impl Service {
    fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "identity" => Some(Self::Keystone),
            "compute" => Some(Self::Nova),
            "image" => Some(Self::Glance),
            "volume" => Some(Self::Cinder),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Keystone => "keystone",
            Self::Nova => "nova",
            Self::Glance => "glance",
            Self::Cinder => "cinder",
        }
    }
}

/// A microversion `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mv(pub u16, pub u16);

impl Mv {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Self(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for Mv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a handler tells the request log about a request (response extension).
#[derive(Clone, Debug)]
pub(crate) struct Notes(pub Vec<String>);

/// One request, parsed.
pub(crate) struct Ctx {
    pub method: Method,
    /// Path segments after the service prefix.
    pub segs: Vec<String>,
    pub query: Vec<(String, String)>,
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The negotiated microversion (Nova and Cinder; `0.0` elsewhere).
    pub mv: Mv,
    pub now: Instant,
    pub base: String,
    /// Who the token stands for (the default, no one, where none is needed).
    pub caller: Caller,
}

impl Ctx {
    /// The first value of a query parameter.
    pub(crate) fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, Fail> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Fail::bad_request(format!("Invalid JSON in request body: {e}")))
    }

    pub(crate) fn seg(&self, i: usize) -> &str {
        self.segs.get(i).map_or("", String::as_str)
    }
}

/// Serves one request in a task of its own: a client that gives up (a
/// timeout) does not stop the call, which is carried out, answered into the
/// void and logged, as a real service does.
async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    tokio::spawn(serve_request(shared, request))
        .await
        .unwrap_or_else(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the simulator failed: {e}"),
            )
                .into_response()
        })
}

async fn serve_request(shared: Arc<Shared>, request: Request) -> Response {
    let started = Instant::now();
    let at = Utc::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let prefix = if segs.is_empty() {
        String::new()
    } else {
        segs.remove(0)
    };
    if prefix == "_sim" {
        let body = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .unwrap_or_default();
        return admin::handle(&shared, &parts.method, &segs, &body);
    }
    let Some(service) = Service::from_prefix(&prefix) else {
        return log_and_finish(
            &shared,
            "unknown",
            "unknown",
            (&parts.method, &path, &raw_query, None),
            not_found_plain(),
            (at, started, Vec::new()),
        );
    };
    let body = match body_bytes(body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let operation = operation(service, &parts.method, &segs, &body);
    let mv_header = microversion_header(service, &parts.headers);
    let decision = {
        let mut st = shared.lock();
        let st = &mut *st;
        faults::decide(&mut st.faults, &mut st.rng, operation)
    };
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let response = {
        {
            let query = form_urlencoded::parse(raw_query.as_bytes())
                .into_owned()
                .collect();
            let ctx = Ctx {
                method: parts.method.clone(),
                segs,
                query,
                raw_query: raw_query.clone(),
                headers: parts.headers.clone(),
                body,
                mv: Mv(0, 0),
                now: Instant::now(),
                base: shared.base_url.clone(),
                caller: Caller::default(),
            };
            match decision.error {
                Some((status, retry_after, message)) => {
                    injected_error(service, &shared.base_url, status, retry_after, message)
                }
                None => {
                    let served = serve(&shared, service, operation, ctx).await;
                    lose_reply(&shared, service, served, decision.lost_reply).await
                }
            }
        }
    };
    log_and_finish(
        &shared,
        service.name(),
        operation,
        (&parts.method, &path, &raw_query, mv_header),
        response,
        (
            at,
            started,
            decision
                .fired
                .iter()
                .map(|f| format!("fault: {f}"))
                .collect(),
        ),
    )
}

async fn body_bytes(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response())
}

/// Authenticates, negotiates the microversion and calls the service.
async fn serve(shared: &Shared, service: Service, operation: &str, mut ctx: Ctx) -> Response {
    match keystone::authenticate(shared, &ctx.headers) {
        Ok(caller) => ctx.caller = caller,
        Err(_) if !needs_token(operation) => {}
        // Keystone answered the validation with 403: keystonemiddleware
        // reports it as Keystone being unavailable; Keystone itself refuses.
        Err(keystone::Rejected::Forbidden) if service == Service::Keystone => {
            return keystone::generic_forbidden();
        }
        Err(keystone::Rejected::Forbidden) => {
            return html_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The Keystone service is temporarily unavailable.",
            );
        }
        Err(keystone::Rejected::NotFound(_)) => return unauthorized(service, &shared.base_url),
    }
    match service {
        Service::Keystone => keystone::handle(shared, operation, &ctx),
        Service::Glance => glance::handle(shared, operation, &ctx),
        Service::Nova => {
            let max = Mv::parse(&shared.config.nova_max_microversion).unwrap_or(Mv(2, 96));
            match negotiate(&ctx.headers, "compute", Mv(2, 1), max) {
                Ok(mv) => ctx.mv = mv,
                Err(fail) => return with_mv(nova::error(&fail), service, Mv(2, 1)),
            }
            let mv = ctx.mv;
            with_mv(nova::handle(shared, operation, &ctx).await, service, mv)
        }
        Service::Cinder => {
            let max = Mv::parse(&shared.config.cinder_max_microversion).unwrap_or(Mv(3, 71));
            match negotiate(&ctx.headers, "volume", Mv(3, 0), max) {
                Ok(mv) => ctx.mv = mv,
                Err(fail) => return with_mv(cinder::error(&fail), service, Mv(3, 0)),
            }
            let mv = ctx.mv;
            with_mv(cinder::handle(shared, operation, &ctx), service, mv)
        }
    }
}

/// Operations that answer without a token (version discovery, authentication).
fn needs_token(operation: &str) -> bool {
    !matches!(
        operation,
        "nova.versions"
            | "nova.version"
            | "glance.versions"
            | "cinder.versions"
            | "keystone.versions"
            | "keystone.version"
            | "keystone.create_token"
    )
}

fn operation(service: Service, method: &Method, segs: &[String], body: &[u8]) -> &'static str {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match service {
        Service::Keystone => keystone::operation(method, &segs),
        Service::Nova => nova::operation(method, &segs, body),
        Service::Glance => glance::operation(method, &segs),
        Service::Cinder => cinder::operation(method, &segs),
    }
}

/// The microversion header as the client sent it, for the log.
fn microversion_header(service: Service, headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match service {
        Service::Nova => {
            get("openstack-api-version").or_else(|| get("x-openstack-nova-api-version"))
        }
        Service::Cinder => get("openstack-api-version"),
        _ => None,
    }
}

/// Picks the microversion from `OpenStack-API-Version: <service> X` (or
/// Nova's legacy header), `latest` meaning the maximum.
fn negotiate(headers: &HeaderMap, service_type: &str, min: Mv, max: Mv) -> Result<Mv, Fail> {
    let mut requested = None;
    for value in headers.get_all("openstack-api-version") {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut words = item.split_whitespace();
            if words.next() == Some(service_type) {
                requested = words.next().map(str::to_owned);
            }
        }
    }
    if requested.is_none() && service_type == "compute" {
        requested = headers
            .get("x-openstack-nova-api-version")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned());
    }
    let Some(requested) = requested else {
        return Ok(min);
    };
    if requested == "latest" {
        return Ok(max);
    }
    let mv = Mv::parse(&requested).ok_or_else(|| {
        Fail::bad_request(format!(
            "API Version String {requested} is of invalid format. Must be of format MajorNum.MinorNum."
        ))
    })?;
    if mv < min || mv > max {
        return Err(Fail::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {mv} is not supported by the API. Minimum is {min} and maximum is {max}."
            ),
        ));
    }
    Ok(mv)
}

/// Echoes the microversion used, as Nova and Cinder do.
fn with_mv(mut response: Response, service: Service, mv: Mv) -> Response {
    let h = response.headers_mut();
    match service {
        Service::Nova => {
            insert(h, "openstack-api-version", &format!("compute {mv}"));
            insert(h, "x-openstack-nova-api-version", &mv.to_string());
            insert(
                h,
                "vary",
                "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
            );
        }
        Service::Cinder => {
            insert(h, "openstack-api-version", &format!("volume {mv}"));
            insert(h, "vary", "OpenStack-API-Version");
        }
        _ => {}
    }
    response
}

fn log_and_finish(
    shared: &Shared,
    service: &str,
    operation: &str,
    (method, path, query, microversion): (&Method, &str, &str, Option<String>),
    mut response: Response,
    (at, started, mut notes): (chrono::DateTime<Utc>, Instant, Vec<String>),
) -> Response {
    if let Some(Notes(more)) = response.extensions_mut().remove::<Notes>() {
        notes.extend(more);
    }
    let mut st = shared.lock();
    let request_id = format!("req-{}", st.uuid());
    insert(
        response.headers_mut(),
        "x-openstack-request-id",
        &request_id,
    );
    if matches!(service, "nova" | "cinder") {
        insert(response.headers_mut(), "x-compute-request-id", &request_id);
    }
    let seq = st.log.last().map_or(0, |r| r.seq + 1);
    if st.log.len() >= LOG_LIMIT {
        st.log.drain(..LOG_LIMIT / 2);
    }
    st.log.push(LoggedRequest {
        seq,
        service: service.into(),
        operation: operation.into(),
        method: method.to_string(),
        path: path.into(),
        query: query.into(),
        microversion,
        status: response.status().as_u16(),
        at,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        request_id,
        notes,
    });
    st.collect_garbage(Instant::now());
    response
}

fn not_found_plain() -> Response {
    html_error(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// keystonemiddleware's 401, as every service but Glance answers it.
fn unauthorized(service: Service, base: &str) -> Response {
    let mut r = if service == Service::Glance {
        html_error(
            StatusCode::UNAUTHORIZED,
            "This server could not verify that you are authorized to access the document you requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand how to supply the credentials required.",
        )
    } else {
        keystone::error(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        )
    };
    insert(
        r.headers_mut(),
        "www-authenticate",
        &format!("Keystone uri=\"{base}/identity\""),
    );
    r
}

/// The answer of an injected error fault, in the service's error shape.
fn injected_error(
    service: Service,
    base: &str,
    status: u16,
    retry_after: Option<u64>,
    message: Option<String>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::UNAUTHORIZED {
        return unauthorized(service, base);
    }
    let message = message.unwrap_or_else(|| match status.as_u16() {
        429 => "Rate limit exceeded: too many requests.".into(),
        503 => "The server is currently unavailable. Please try again at a later time.".into(),
        _ => format!("Injected fault: {status}"),
    });
    let mut r = match service {
        Service::Nova | Service::Cinder => fault_body(status, &message, retry_after),
        Service::Glance => html_error(status, &message),
        Service::Keystone => keystone::error(status, &message),
    };
    if let Some(secs) = retry_after {
        insert(r.headers_mut(), "retry-after", &secs.to_string());
    }
    r
}

/// The answer of a call that was carried out, as the client gets it when the
/// way back fails: replaced by a proxy's status, or held back past its timeout.
async fn lose_reply(
    shared: &Shared,
    service: Service,
    served: Response,
    lost: Option<faults::LostReply>,
) -> Response {
    match lost {
        None => served,
        Some(faults::LostReply::Status(status)) => {
            injected_error(service, &shared.base_url, status, None, None)
        }
        Some(faults::LostReply::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            served
        }
    }
}

/// Decodes `%XX` escapes in one path segment.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let Some(b) = decoded {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long to hold a call (e.g. Nova's volume-backed createImage).
pub(crate) async fn hold(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn negotiate_reads_the_standard_and_the_legacy_header() {
        let (min, max) = (Mv(2, 1), Mv(2, 96));
        assert_eq!(
            negotiate(&HeaderMap::new(), "compute", min, max).unwrap(),
            min
        );
        let h = headers(&[("openstack-api-version", "compute 2.45")]);
        assert_eq!(negotiate(&h, "compute", min, max).unwrap(), Mv(2, 45));
        let h = headers(&[("x-openstack-nova-api-version", "2.60")]);
        assert_eq!(negotiate(&h, "compute", min, max).unwrap(), Mv(2, 60));
        let h = headers(&[("openstack-api-version", "compute latest")]);
        assert_eq!(negotiate(&h, "compute", min, max).unwrap(), max);
        let h = headers(&[("openstack-api-version", "compute 2.100")]);
        assert_eq!(
            negotiate(&h, "compute", min, max).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn microversions_compare_numerically() {
        assert!(Mv::parse("2.100").unwrap() > Mv::parse("2.96").unwrap());
        assert!(Mv::parse("3.66").unwrap() > Mv::parse("3.7").unwrap());
    }

    #[test]
    fn percent_decode_handles_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
