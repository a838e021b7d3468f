//! `stacksnap client snapshot create` and `job wait`: the exit code says how
//! the job ended (0 succeeded or reused, 1 failed, 3 the wait ran out first).

use serde_json::Value;
use sqlx::PgPool;
use stacksnap_sim::{Fault, FaultRule};

use super::{Auth, rig};
use crate::helpers::sim_token;

#[sqlx::test]
async fn a_snapshot_that_succeeds_exits_0_with_the_job_as_json_and_a_token_from_keystone(
    pool: PgPool,
) {
    // Arrange
    let rig = rig(pool).await;
    let server = rig.demo_server("web-1");

    // Act: the client asks the simulator's Keystone for demo's token itself.
    let run = rig
        .client(
            Auth::Cloud("stacksnap-sim-demo"),
            &[
                "snapshot", "create", "--server", &server, "--wait", "60s", "--json",
            ],
        )
        .await;

    // Assert
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["resource_id"], server.as_str());
    assert_eq!(job["reused"], false);
    assert!(job["image_id"].is_string(), "{job}");
    assert!(
        run.stderr.contains(&format!("server {server}: job")),
        "progress on stderr: {run:?}"
    );
    assert_eq!(rig.sim.count("nova.create_image"), 1);
}

#[sqlx::test]
async fn a_snapshot_whose_create_image_fails_exits_1_with_the_error_on_stderr(pool: PgPool) {
    // Arrange
    let rig = rig(pool).await;
    let server = rig.demo_server("web-2");
    rig.sim
        .inject(FaultRule::new("nova.create_image", Fault::ImageKilled));
    let token = sim_token(&rig.sim, "demo").await;

    // Act
    let run = rig
        .client(
            Auth::Token(&token.value),
            &["snapshot", "create", "--server", &server, "--wait", "60s"],
        )
        .await;

    // Assert: the human view on stdout, the failure on stderr, no token anywhere.
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("status:") && run.stdout.contains("failed"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("failed: image_failed:"),
        "the error on stderr: {run:?}"
    );
    assert!(!run.stdout.contains(&token.value) && !run.stderr.contains(&token.value));
}

#[sqlx::test]
async fn a_wait_that_runs_out_before_the_job_ends_exits_3(pool: PgPool) {
    // Arrange: the volume's snapshot stays `creating`, so the job stays busy.
    let rig = rig(pool).await;
    let volume = rig.demo_volume("data");
    rig.sim.inject(FaultRule::new(
        "cinder.create_snapshot",
        Fault::SnapshotStuck,
    ));
    let token = sim_token(&rig.sim, "demo").await;

    // Act
    let started = std::time::Instant::now();
    let create = rig
        .client(
            Auth::Token(&token.value),
            &[
                "snapshot", "create", "--volume", &volume, "--wait", "3s", "--json",
            ],
        )
        .await;
    let job = create.json();
    let id = job["id"].as_str().expect("the job is printed").to_owned();
    let wait = rig
        .client(
            Auth::Token(&token.value),
            &["job", "wait", &id, "--wait", "2s"],
        )
        .await;

    // Assert: both gave up at their own deadline, the job still under way.
    assert_eq!(create.code, 3, "{create:?}");
    assert_ne!(job["status"], "succeeded");
    assert!(create.stderr.contains("is still"), "{create:?}");
    assert_eq!(wait.code, 3, "{wait:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "long polls end at the deadline: {:?}",
        started.elapsed()
    );
    let get = rig
        .client(Auth::Token(&token.value), &["job", "get", &id, "--json"])
        .await;
    assert_eq!(get.code, 0, "{get:?}");
    assert!(
        ["creating", "tracking"].contains(&get.json()["status"].as_str().unwrap()),
        "{get:?}"
    );
}

#[sqlx::test]
async fn a_snapshot_younger_than_if_older_than_is_reused_and_exits_0(pool: PgPool) {
    // Arrange: a first snapshot, taken and finished.
    let rig = rig(pool).await;
    let server = rig.demo_server("web-3");
    let token = sim_token(&rig.sim, "demo").await;
    let auth = || Auth::Token(&token.value);
    let first = rig
        .client(
            auth(),
            &[
                "snapshot", "create", "--server", &server, "--wait", "60s", "--json",
            ],
        )
        .await;
    assert_eq!(first.code, 0, "{first:?}");

    // Act
    let again = rig
        .client(
            auth(),
            &[
                "snapshot",
                "create",
                "--server",
                &server,
                "--if-older-than",
                "6h",
                "--wait",
                "60s",
                "--json",
            ],
        )
        .await;

    // Assert: the same job, reused, and no second createImage.
    assert_eq!(again.code, 0, "{again:?}");
    let job: Value = again.json();
    assert_eq!(job["reused"], true, "{job}");
    assert_eq!(job["id"], first.json()["id"]);
    assert!(again.stderr.contains("reused job"), "{again:?}");
    assert_eq!(rig.sim.count("nova.create_image"), 1);
}

#[sqlx::test]
async fn a_snapshot_being_deleted_or_older_than_asked_is_not_reused(pool: PgPool) {
    // Arrange: a first snapshot, then a second one whose snapshot is being deleted.
    let rig = rig(pool).await;
    let server = rig.demo_server("web-7");
    let token = sim_token(&rig.sim, "demo").await;
    let create = |age: &'static str| {
        let server = server.clone();
        let token = token.value.clone();
        let rig = &rig;
        async move {
            let args = [
                "snapshot",
                "create",
                "--server",
                &server,
                "--if-older-than",
                age,
                "--wait",
                "60s",
                "--json",
            ];
            rig.client(Auth::Token(&token), &args).await
        }
    };
    let first = create("1s").await;
    assert_eq!(first.code, 0, "{first:?}");
    let first_job = first.json()["id"].as_str().unwrap().to_owned();
    let snapshots: Value = reqwest::Client::new()
        .get(format!("{}/v1/snapshots?resource_id={server}", rig.url))
        .header("X-Auth-Token", &token.value)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let snapshot = snapshots["items"][0]["id"].as_str().unwrap().to_owned();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/snapshots/{snapshot}", rig.url))
        .header("X-Auth-Token", &token.value)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);

    // Act: within the window, but the only snapshot is being deleted; then,
    // two seconds on, a window of one second.
    let after_delete = create("6h").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let too_old = create("1s").await;

    // Assert: each took a new snapshot.
    for run in [&after_delete, &too_old] {
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.json()["reused"], false, "{run:?}");
        assert_ne!(run.json()["id"], first_job.as_str());
    }
    assert_ne!(after_delete.json()["id"], too_old.json()["id"]);
    assert_eq!(rig.sim.count("nova.create_image"), 3);
}

#[sqlx::test]
async fn a_bad_if_older_than_is_a_422_naming_the_field(pool: PgPool) {
    // Arrange
    let rig = rig(pool).await;
    let server = rig.demo_server("web-4");
    let token = sim_token(&rig.sim, "demo").await;

    // Act: straight to the API, since the client refuses it itself (exit 2).
    let response = reqwest::Client::new()
        .post(format!("{}/v1/snapshots", rig.url))
        .header("X-Auth-Token", &token.value)
        .json(&serde_json::json!({"resource_type": "server", "resource_id": server, "if_older_than": "soon"}))
        .send()
        .await
        .unwrap();
    let client = rig
        .client(
            Auth::Token(&token.value),
            &[
                "snapshot",
                "create",
                "--server",
                &server,
                "--if-older-than",
                "soon",
            ],
        )
        .await;

    // Assert
    let problem = crate::helpers::problem(response, 422).await;
    assert_eq!(crate::helpers::error_fields(&problem), ["if_older_than"]);
    assert_eq!(client.code, 2, "{client:?}");
    assert_eq!(rig.sim.count("nova.create_image"), 0);
}
