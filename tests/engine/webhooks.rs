//! The webhook dispatcher against receivers in the test: signed deliveries in
//! order, retries after a failure, a hanging receiver that slows nothing, and
//! `--webhook-deny-private` refusing a loopback receiver at delivery.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock,
    engine::{EngineConfig, webhooks::WebhookSettings},
    startup::RunningService,
};
use stacksnap_sim::{SimConfig, SimHandle, Simulator};

use crate::helpers::{
    Captured, capture_logs, cloud_for, engine_config, policy_body, start_service,
};

const SECRET: &str = "receiver-secret-1";

/// What a receiver got: headers and body of each POST.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Received {
    fn all(&self) -> Vec<(HeaderMap, Bytes)> {
        self.0.lock().unwrap().clone()
    }
}

/// How a receiver answers the n-th POST (0-based).
type Answer = fn(usize) -> Option<StatusCode>;

/// A receiver on 127.0.0.1:0 that records each POST and answers with `answer`
/// (`None`: it never answers).
async fn receiver(answer: Answer) -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((received, answer)): State<(Received, Answer)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let n = {
                        let mut all = received.0.lock().unwrap();
                        all.push((headers, body));
                        all.len() - 1
                    };
                    match answer(n) {
                        Some(status) => status,
                        None => std::future::pending().await,
                    }
                },
            ),
        )
        .with_state((received.clone(), answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), received)
}

struct Live {
    base: String,
    http: reqwest::Client,
    sim: SimHandle,
    _service: RunningService,
}

async fn live(pool: PgPool, deny_private: bool) -> Live {
    live_with(pool, deny_private, chrono::TimeDelta::days(1)).await
}

async fn live_with(pool: PgPool, deny_private: bool, give_up_after: chrono::TimeDelta) -> Live {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let config = EngineConfig {
        prune_interval: Duration::from_secs(3600),
        webhooks: WebhookSettings {
            request_timeout: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            idle_look: chrono::TimeDelta::milliseconds(50),
            tick: Duration::from_millis(50),
            deny_private,
            give_up_after,
            ..WebhookSettings::default()
        },
        ..engine_config()
    };
    let service = start_service(pool, Arc::new(SystemClock), Some(cloud_for(&sim)), config).await;
    Live {
        base: format!("http://{}", service.local_addr()),
        http: reqwest::Client::new(),
        sim,
        _service: service,
    }
}

impl Live {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn subscribe(&self, url: &str, events: Value) -> String {
        let response = self
            .post(
                "/v1/webhooks",
                json!({"url": url, "events": events, "secret": SECRET}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    async fn deliveries(&self, id: &str) -> Vec<Value> {
        let page: Value = self
            .http
            .get(format!("{}/v1/webhooks/{id}/deliveries", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["items"].as_array().unwrap().clone()
    }
}

/// Waits up to 20 s for `done`.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting");
}

/// Checks a delivery's signature the way a receiver would.
fn verify(headers: &HeaderMap, body: &[u8]) {
    let header = headers["stacksnap-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "{header}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "the signature verifies");
}

#[sqlx::test]
async fn deliveries_are_signed_carry_the_event_and_come_in_order(pool: PgPool) {
    let live = live(pool, false).await;
    let (url, received) = receiver(|_| Some(StatusCode::OK)).await;
    let id = live.subscribe(&url, json!(["policy.created"])).await;

    for (name, project) in [
        ("first", "default"),
        ("elsewhere", "another-project"),
        ("second", "default"),
        ("third", "default"),
    ] {
        let mut body = policy_body(name);
        body["project_id"] = json!(project);
        let created = live.post("/v1/policies", body).await;
        assert_eq!(created.status(), 201);
    }
    until(|| received.all().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let all = received.all();
    assert_eq!(all.len(), 3, "each event of its project once");
    let mut names = Vec::new();
    for (headers, body) in &all {
        verify(headers, body);
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(headers["stacksnap-event-id"], event["id"].as_str().unwrap());
        assert_eq!(headers["stacksnap-event-kind"], "policy.created");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(event["kind"], "policy.created");
        assert!(event["project_id"].is_string() && event["at"].is_string());
        names.push(event["data"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["first", "second", "third"]);
    let feed: Value = live
        .http
        .get(format!("{}/v1/events?kind=policy.created", live.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bodies: Vec<Value> = all
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    let own: Vec<Value> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["project_id"] == "default")
        .cloned()
        .collect();
    assert_eq!(
        bodies, own,
        "the body is the event as GET /v1/events shows it"
    );
    let deliveries = live.deliveries(&id).await;
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries
            .iter()
            .all(|d| d["outcome"] == "delivered" && d["status_code"] == 200)
    );
}

#[sqlx::test]
async fn a_failing_receiver_gets_the_event_again_until_it_takes_it(pool: PgPool) {
    let live = live(pool, false).await;
    let (url, received) = receiver(|n| {
        Some(if n == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        })
    })
    .await;
    let id = live.subscribe(&url, json!(["policy."])).await;

    live.post("/v1/policies", policy_body("retried")).await;
    live.post("/v1/policies", policy_body("after")).await;
    until(|| received.all().len() >= 3).await;

    let all = received.all();
    let ids: Vec<_> = all
        .iter()
        .map(|(h, _)| h["stacksnap-event-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], ids[1], "the failed event is sent again first");
    assert_ne!(ids[1], ids[2]);
    let names: Vec<_> = all
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["data"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("retried"), json!("retried"), json!("after")]);
    let deliveries = live.deliveries(&id).await;
    let seen: Vec<_> = deliveries
        .iter()
        .rev()
        .map(|d| {
            (
                d["attempt"].clone(),
                d["status_code"].clone(),
                d["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen[..2],
        [
            (json!(1), json!(500), json!("failed")),
            (json!(2), json!(204), json!("delivered")),
        ]
    );
}

#[sqlx::test]
async fn a_hanging_receiver_does_not_hold_up_a_snapshot(pool: PgPool) {
    let live = live(pool, false).await;
    let (url, received) = receiver(|_| None).await;
    live.subscribe(&url, json!(["job.", "run.", "snapshot."]))
        .await;
    let server = live.sim.create_volume_backed_server("web", 1, false);

    let job: Value = live
        .post(
            "/v1/snapshots?wait=30s",
            json!({"resource_type": "server", "resource_id": server}),
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(job["status"], "succeeded", "{job}");
    until(|| !received.all().is_empty()).await;
}

#[sqlx::test]
async fn deny_private_refuses_a_loopback_receiver_at_delivery(pool: PgPool) {
    let live = live(pool, true).await;
    let (url, received) = receiver(|_| Some(StatusCode::OK)).await;
    // A name, not a literal address: accepted at creation, refused once resolved.
    let url = url.replace("127.0.0.1", "localhost");
    let id = live.subscribe(&url, json!(["policy."])).await;

    live.post("/v1/policies", policy_body("kept-inside")).await;
    let mut deliveries = Vec::new();
    for _ in 0..400 {
        deliveries = live.deliveries(&id).await;
        if !deliveries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(!deliveries.is_empty());
    assert_eq!(deliveries[0]["outcome"], "failed");
    assert_eq!(deliveries[0]["status_code"], Value::Null);
    assert!(
        deliveries[0]["error"]
            .as_str()
            .unwrap()
            .contains("--webhook-deny-private"),
        "{}",
        deliveries[0]
    );
    assert!(received.all().is_empty(), "nothing reached the receiver");
}

#[sqlx::test]
async fn an_event_failing_past_the_retry_window_is_given_up_and_the_next_one_sent(pool: PgPool) {
    let live = live_with(pool, false, chrono::TimeDelta::milliseconds(250)).await;
    let (url, received) = receiver(|n| {
        Some(if n < 3 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        })
    })
    .await;
    let id = live.subscribe(&url, json!(["policy.created"])).await;

    live.post("/v1/policies", policy_body("doomed")).await;
    live.post("/v1/policies", policy_body("next")).await;
    until(|| {
        received
            .all()
            .iter()
            .any(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["data"]["name"] == "next")
    })
    .await;

    let deliveries = live.deliveries(&id).await;
    let outcomes: Vec<_> = deliveries
        .iter()
        .rev()
        .map(|d| d["outcome"].clone())
        .collect();
    assert_eq!(outcomes.first(), Some(&json!("failed")));
    assert!(outcomes.contains(&json!("gave_up")), "{outcomes:?}");
    assert_eq!(outcomes.last(), Some(&json!("delivered")));
    let gave_up = deliveries
        .iter()
        .find(|d| d["outcome"] == "gave_up")
        .unwrap();
    let delivered = &deliveries[0];
    assert_ne!(gave_up["event_id"], delivered["event_id"]);
}

#[sqlx::test]
async fn one_replica_at_a_time_holds_a_subscription(pool: PgPool) {
    use stacksnap::store::{events, webhooks};
    let start = events::horizon(&pool).await.unwrap();
    let created = webhooks::insert_webhook(
        &pool,
        &webhooks::NewWebhook {
            project_id: "default",
            url: "https://hooks.example.com/",
            events: &["job.".to_owned()],
            secret: SECRET,
            created_by: None,
            start,
        },
    )
    .await
    .unwrap();
    let lease = chrono::TimeDelta::seconds(60);
    let (one, two) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());

    let first = webhooks::claim_due(&pool, one, lease, &[]).await.unwrap();
    let second = webhooks::claim_due(&pool, two, lease, &[]).await.unwrap();
    let renewed_by_other = webhooks::renew_lease(&pool, created.webhook_id, two, lease)
        .await
        .unwrap();

    assert_eq!(first.unwrap().webhook_id, created.webhook_id);
    assert!(
        second.is_none(),
        "a leased subscription is not claimed again"
    );
    assert!(!renewed_by_other);
    assert!(
        !format!("{created:?}").contains(SECRET),
        "Debug hides the secret"
    );
}

#[sqlx::test]
async fn the_secret_is_never_logged(pool: PgPool) {
    let captured = Captured::default();
    let _guard = capture_logs(&captured);
    let live = live(pool, false).await;
    let (url, received) = receiver(|n| {
        Some(if n == 0 {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        })
    })
    .await;
    live.subscribe(&url, json!(["policy."])).await;
    let refused = live
        .post(
            "/v1/webhooks",
            json!({"url": "gopher://x/", "events": ["job."], "secret": SECRET}),
        )
        .await;
    assert_eq!(refused.status(), 422);

    live.post("/v1/policies", policy_body("logged")).await;
    until(|| received.all().len() >= 2).await;

    let text = captured.text();
    assert!(
        text.contains("webhook delivery attempt"),
        "the attempts were logged"
    );
    assert!(!text.contains(SECRET), "the secret appears in the logs");
}

#[sqlx::test]
async fn hanging_receivers_of_one_project_leave_slots_for_the_others(pool: PgPool) {
    // Arrange: one project with more hanging receivers than the dispatcher
    // has slots, another with a receiver that answers.
    let live = live(pool, false).await;
    let (hanging_url, hanging) = receiver(|_| None).await;
    for _ in 0..WebhookSettings::default().concurrency + 2 {
        let created = live
            .post(
                "/v1/webhooks",
                json!({"url": hanging_url, "events": ["policy."], "secret": SECRET,
                       "project_id": "noisy"}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let (url, received) = receiver(|_| Some(StatusCode::OK)).await;
    live.subscribe(&url, json!(["policy."])).await;
    let mut noisy = policy_body("noisy");
    noisy["project_id"] = json!("noisy");
    assert_eq!(live.post("/v1/policies", noisy).await.status(), 201);
    until(|| hanging.all().len() >= 2).await;

    // Act
    let started = std::time::Instant::now();
    live.post("/v1/policies", policy_body("quiet")).await;
    until(|| !received.all().is_empty()).await;

    // Assert: well within one hanging request (2 s here).
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the quiet project's event waited {:?} behind the other's hanging receivers",
        started.elapsed()
    );
}
