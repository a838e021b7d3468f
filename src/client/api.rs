//! The HTTP side of the client: one method per call of the service's API,
//! answers as JSON values (printed as they came), failures as [`ClientError`].
//! The token goes only into the `X-Auth-Token` header, never into a message.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use super::error::ClientError;

/// Time for the service to answer on top of any wait it was asked for.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// The longest wait the service takes in one request (`?wait=`).
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

/// A client of one service, with one token.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

/// What a call answered: its status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Api {
    /// A client of the service at `base` (e.g. `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(base: &str, token: SecretString) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("stacksnap-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn request(&self, method: Method, path: &str, wait: Duration) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .timeout(wait + ANSWER_MARGIN)
            .header("X-Auth-Token", self.token.expose_secret())
    }

    async fn send(&self, request: RequestBuilder) -> Result<Answer, ClientError> {
        let response = request.send().await.map_err(|e| {
            ClientError::Unreachable(format!("cannot reach {}: {}", self.base, without_url(&e)))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            ClientError::Unreachable(format!("the answer was cut off: {}", without_url(&e)))
        })?;
        if !status.is_success() {
            return Err(ClientError::Refused { status, body: text });
        }
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| ClientError::Decode(format!("unreadable answer ({status}): {e}")))?
        };
        Ok(Answer { status, body })
    }

    /// `POST /v1/snapshots[?wait=]`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn create_snapshot(
        &self,
        body: &Value,
        wait: Option<Duration>,
    ) -> Result<Answer, ClientError> {
        let path = match wait {
            Some(wait) => format!("/v1/snapshots?wait={}s", wait.as_secs()),
            None => "/v1/snapshots".to_owned(),
        };
        let request = self.request(Method::POST, &path, wait.unwrap_or_default());
        self.send(request.json(body)).await
    }

    /// `GET /v1/jobs/{id}[?wait=]`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn get_job(&self, id: &str, wait: Option<Duration>) -> Result<Answer, ClientError> {
        let id = segment(id)?;
        let path = match wait {
            Some(wait) => format!("/v1/jobs/{id}?wait={}s", wait.as_secs()),
            None => format!("/v1/jobs/{id}"),
        };
        self.send(self.request(Method::GET, &path, wait.unwrap_or_default()))
            .await
    }

    /// Every policy, following `next_cursor` to the last page.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn list_policies(&self, all_projects: bool) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "1000".to_owned())];
            if all_projects {
                query.push(("all_projects", "true".to_owned()));
            }
            if let Some(cursor) = cursor.take() {
                query.push(("cursor", cursor));
            }
            let request = self
                .request(Method::GET, "/v1/policies", Duration::ZERO)
                .query(&query);
            let page = self.send(request).await?.body;
            if let Some(page_items) = page["items"].as_array() {
                items.extend(page_items.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// `GET /v1/policies/{id}`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn get_policy(&self, id: &str) -> Result<Answer, ClientError> {
        let path = format!("/v1/policies/{}", segment(id)?);
        self.send(self.request(Method::GET, &path, Duration::ZERO))
            .await
    }

    /// `POST /v1/policies`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn create_policy(&self, body: &Value) -> Result<Answer, ClientError> {
        let request = self.request(Method::POST, "/v1/policies", Duration::ZERO);
        self.send(request.json(body)).await
    }

    /// `DELETE /v1/policies/{id}?snapshots=`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn delete_policy(&self, id: &str, snapshots: &str) -> Result<Answer, ClientError> {
        let path = format!("/v1/policies/{}", segment(id)?);
        let request = self
            .request(Method::DELETE, &path, Duration::ZERO)
            .query(&[("snapshots", snapshots)]);
        self.send(request).await
    }

    /// `POST /v1/policies/{id}/run`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn run_policy(&self, id: &str) -> Result<Answer, ClientError> {
        let path = format!("/v1/policies/{}/run", segment(id)?);
        self.send(self.request(Method::POST, &path, Duration::ZERO))
            .await
    }

    /// `GET /v1/status[?all_projects=true]`.
    ///
    /// # Errors
    /// The service refuses or cannot be reached.
    pub async fn status(&self, all_projects: bool) -> Result<Answer, ClientError> {
        let mut request = self.request(Method::GET, "/v1/status", Duration::ZERO);
        if all_projects {
            request = request.query(&[("all_projects", "true")]);
        }
        self.send(request).await
    }
}

/// What an id keeps unencoded in a path: the unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An id as one path segment: percent-encoded, and never empty, `.` or `..`.
fn segment(id: &str) -> Result<String, ClientError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(ClientError::Usage(format!("{id:?} is not an id")));
    }
    Ok(percent_encoding::utf8_percent_encode(id, SEGMENT).to_string())
}

/// reqwest's message without the URL it may repeat (the base is named already).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_encoded_path_segment() {
        assert_eq!(segment("ab-1").unwrap(), "ab-1");
        assert_eq!(segment("a/../b?c").unwrap(), "a%2F..%2Fb%3Fc");
        assert!(segment("..").is_err());
        assert!(segment("").is_err());
    }
}
