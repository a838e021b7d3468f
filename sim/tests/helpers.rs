//! `TestSim`: a simulator on a free port, a reqwest client with a token,
//! and small helpers to call each service and poll for states.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use stacksnap_sim::{Durations, SimConfig, SimHandle, Simulator};

/// A running simulator and an authenticated client.
pub struct TestSim {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub token: String,
}

/// Transitions slow enough to observe every state by polling.
pub fn observable_durations() -> Durations {
    let ms = Duration::from_millis;
    Durations {
        image_snapshot_pending: ms(250),
        image_snapshot: ms(250),
        image_pending_upload: ms(250),
        image_uploading: ms(250),
        snapshot_create: ms(500),
        ..Durations::fast()
    }
}

/// Starts a simulator with `config` on 127.0.0.1:0 and authenticates.
pub async fn spawn_with(config: SimConfig) -> TestSim {
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).expect("simulator starts");
    let http = reqwest::Client::new();
    let token = password_token(&http, &sim).await;
    TestSim { sim, http, token }
}

/// Starts a simulator with observable durations.
pub async fn spawn() -> TestSim {
    spawn_with(SimConfig::default().with_durations(observable_durations())).await
}

/// A token for the admin user.
pub async fn password_token(http: &reqwest::Client, sim: &SimHandle) -> String {
    user_token(http, sim, "admin", "secret", "admin").await
}

/// A project-scoped token for `user` in `project`.
pub async fn user_token(
    http: &reqwest::Client,
    sim: &SimHandle,
    user: &str,
    password: &str,
    project: &str,
) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
    }});
    let r = http
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.headers()["x-subject-token"].to_str().unwrap().to_owned()
}

/// A token for the member user `member` (roles `member` and `reader`, no
/// `admin`), in the admin's project.
pub async fn member_token(http: &reqwest::Client, sim: &SimHandle) -> String {
    let member = sim
        .config()
        .members
        .iter()
        .find(|m| m.username == "member")
        .expect("the default members include `member`")
        .clone();
    user_token(
        http,
        sim,
        &member.username,
        &member.password,
        &member.project_name,
    )
    .await
}

impl TestSim {
    /// Sends a GET with `token` instead of the admin's, at microversion `mv`.
    pub async fn get_with(&self, token: &str, path: &str, mv: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.sim.base_url()))
            .header("x-auth-token", token)
            .header("openstack-api-version", mv)
            .send()
            .await
            .unwrap()
    }

    /// Sends a request to `path` under the base URL, with the token and an
    /// optional `OpenStack-API-Version` header.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        mv: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .header("x-auth-token", &self.token);
        if let Some(mv) = mv {
            req = req.header("openstack-api-version", mv);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// Sends a request with another token (e.g. a project member's).
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        mv: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .header("x-auth-token", token);
        if let Some(mv) = mv {
            req = req.header("openstack-api-version", mv);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// A token for the member `demo` (project `demo`).
    pub async fn demo_token(&self) -> String {
        user_token(&self.http, &self.sim, "demo", "demo", "demo").await
    }

    /// A token for the member `alt` (project `alt`).
    pub async fn alt_token(&self) -> String {
        user_token(&self.http, &self.sim, "alt", "alt", "alt").await
    }

    pub async fn get_json(&self, path: &str, mv: Option<&str>) -> Value {
        let r = self.call(Method::GET, path, mv, None).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    pub async fn server(&self, id: &str) -> Value {
        self.get_json(&format!("/compute/v2.1/servers/{id}"), Some("compute 2.96"))
            .await["server"]
            .clone()
    }

    /// The image, or `None` on 404.
    pub async fn image(&self, id: &str) -> Option<Value> {
        let r = self
            .call(Method::GET, &format!("/image/v2/images/{id}"), None, None)
            .await;
        match r.status() {
            StatusCode::NOT_FOUND => None,
            StatusCode::OK => Some(r.json().await.unwrap()),
            other => panic!("GET image answered {other}"),
        }
    }

    pub async fn snapshot(&self, id: &str) -> Value {
        self.get_json(&format!("/volume/v3/snapshots/{id}"), Some("volume 3.65"))
            .await["snapshot"]
            .clone()
    }

    pub async fn volume(&self, id: &str) -> Value {
        self.get_json(&format!("/volume/v3/volumes/{id}"), Some("volume 3.65"))
            .await["volume"]
            .clone()
    }

    /// POSTs createImage at microversion `mv`.
    pub async fn create_image(
        &self,
        server_id: &str,
        name: &str,
        mv: &str,
        metadata: Value,
    ) -> Response {
        self.call(
            Method::POST,
            &format!("/compute/v2.1/servers/{server_id}/action"),
            Some(&format!("compute {mv}")),
            Some(json!({"createImage": {"name": name, "metadata": metadata}})),
        )
        .await
    }

    /// createImage at 2.45 that must succeed; returns the image id.
    pub async fn create_image_ok(&self, server_id: &str, name: &str) -> String {
        let r = self.create_image(server_id, name, "2.45", json!({})).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: Value = r.json().await.unwrap();
        body["image_id"].as_str().unwrap().to_owned()
    }

    /// Creates a Cinder snapshot at microversion `mv`.
    pub async fn create_snapshot(&self, body: Value, mv: &str) -> Response {
        self.call(
            Method::POST,
            "/volume/v3/snapshots",
            Some(&format!("volume {mv}")),
            Some(json!({"snapshot": body})),
        )
        .await
    }
}

/// Polls `probe` every 5 ms until it gives `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Appends `value` to `seen` unless it repeats the last entry.
pub fn record(seen: &mut Vec<Value>, value: Value) {
    if seen.last() != Some(&value) {
        seen.push(value);
    }
}
