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

    /// A token for `user` / `password` in `project` (e.g. a reader's).
    pub async fn token_of(&self, user: &str, password: &str, project: &str) -> String {
        user_token(&self.http, &self.sim, user, password, project).await
    }

    /// A Keystone call with `token`: the status and the JSON body (`Null`
    /// when there is none).
    pub async fn keystone(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self
            .call_as(token, method, &format!("/identity/v3{path}"), None, body)
            .await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v3/auth/tokens` of `subject` with `caller`'s token.
    pub async fn validate(&self, caller: &str, subject: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}/auth/tokens", self.sim.auth_url()))
            .header("x-auth-token", caller)
            .header("x-subject-token", subject)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The id of the user named `name`.
    pub fn user_id(&self, name: &str) -> String {
        self.sim.user_id(name).expect("a configured user")
    }

    /// The id of the project named `name`.
    pub fn project(&self, name: &str) -> String {
        self.sim
            .project_id_named(name)
            .expect("a configured project")
    }

    /// `POST /v3/OS-TRUST/trusts` with `token`: `trustor` delegates `roles`
    /// on `project` (names) to `trustee` (user names), impersonating.
    pub async fn create_trust(
        &self,
        token: &str,
        trustor: &str,
        trustee: &str,
        project: &str,
        roles: &[&str],
    ) -> (StatusCode, Value) {
        let roles: Vec<Value> = roles.iter().map(|r| json!({ "name": r })).collect();
        let body = json!({"trust": {
            "trustor_user_id": self.user_id(trustor), "trustee_user_id": self.user_id(trustee),
            "project_id": self.project(project), "roles": roles, "impersonation": true,
        }});
        self.keystone(token, Method::POST, "/OS-TRUST/trusts", Some(body))
            .await
    }

    /// `demo` trusts the admin user with `member` on project `demo`: the trust id.
    pub async fn demo_trust(&self) -> String {
        let demo = self.demo_token().await;
        let (status, body) = self
            .create_trust(&demo, "demo", "admin", "demo", &["member"])
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["trust"]["id"].as_str().unwrap().to_owned()
    }

    /// Authenticates `user` / `password` scoped to `trust`: the status, the
    /// token (empty when refused) and the body.
    pub async fn trust_token(
        &self,
        user: &str,
        password: &str,
        trust: &str,
    ) -> (StatusCode, String, Value) {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"OS-TRUST:trust": {"id": trust}},
        }});
        let r = self
            .http
            .post(format!("{}/auth/tokens", self.sim.auth_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let token = r
            .headers()
            .get("x-subject-token")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, token, r.json().await.unwrap_or(Value::Null))
    }

    /// A server of project `demo` made by `demo` through Nova, `ACTIVE`:
    /// image-backed, or booted from a new 1 GiB volume.
    pub async fn demo_server(&self, demo: &str, volume_backed: bool) -> String {
        let mut server = json!({"name": "demo-srv", "flavorRef": "1", "networks": "none"});
        if volume_backed {
            server["block_device_mapping_v2"] = json!([{"source_type": "blank",
                "destination_type": "volume", "boot_index": 0, "volume_size": 1}]);
        } else {
            let image = self.sim.create_image(&stacksnap_sim::ImageSeed {
                name: "cirros".into(),
                ..stacksnap_sim::ImageSeed::default()
            });
            server["imageRef"] = json!(image);
        }
        let r = self
            .call_as(
                demo,
                Method::POST,
                "/compute/v2.1/servers",
                Some("compute 2.96"),
                Some(json!({ "server": server })),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let id = r.json::<Value>().await.unwrap()["server"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        eventually(Duration::from_secs(5), || async {
            (self.server(&id).await["status"] == "ACTIVE").then_some(())
        })
        .await;
        id
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
