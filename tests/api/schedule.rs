//! Schedule previews: DST in both directions, steps, names, shorthands, unions.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_fields, policy_body, problem, spawn_app};

async fn preview(app: &TestApp, name: &str, schedules: Value, query: &str) -> Value {
    let mut body = policy_body(name);
    body["schedules"] = schedules;
    let id = app.create_policy(&body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .get(&format!("/v1/policies/{id}/schedule?{query}"))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn pairs(preview: &Value) -> Vec<(String, String)> {
    preview["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["at"].as_str().unwrap().to_owned(),
                i["local_time"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[sqlx::test]
async fn berlin_spring_forward_fires_at_the_end_of_the_gap(pool: PgPool) {
    let app = spawn_app(pool).await;
    let got = preview(
        &app,
        "berlin",
        json!([{"cron": "30 2 * * *", "timezone": "Europe/Berlin"}]),
        "count=3&from=2027-03-26T12:00:00Z",
    )
    .await;
    assert_eq!(got["from"], "2027-03-26T12:00:00Z");
    assert_eq!(
        pairs(&got),
        owned(&[
            ("2027-03-27T01:30:00Z", "2027-03-27T02:30:00+01:00"),
            ("2027-03-28T01:00:00Z", "2027-03-28T03:00:00+02:00"),
            ("2027-03-29T00:30:00Z", "2027-03-29T02:30:00+02:00"),
        ])
    );
    assert_eq!(got["items"][1]["timezone"], "Europe/Berlin");
    assert_eq!(got["items"][1]["schedule_index"], 0);
    assert_eq!(got["items"][1]["cron"], "30 2 * * *");
}

#[sqlx::test]
async fn new_york_fall_back_fires_the_repeated_time_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let got = preview(
        &app,
        "new-york",
        json!([{"cron": "30 1 * * *", "timezone": "America/New_York"}]),
        "count=3&from=2027-11-06T00:00:00Z",
    )
    .await;
    assert_eq!(
        pairs(&got),
        owned(&[
            ("2027-11-06T05:30:00Z", "2027-11-06T01:30:00-04:00"),
            ("2027-11-07T05:30:00Z", "2027-11-07T01:30:00-04:00"),
            ("2027-11-08T06:30:00Z", "2027-11-08T01:30:00-05:00"),
        ])
    );
}

#[sqlx::test]
async fn steps_names_and_shorthands(pool: PgPool) {
    let app = spawn_app(pool).await;
    let instants =
        |preview: &Value| -> Vec<String> { pairs(preview).into_iter().map(|(at, _)| at).collect() };

    let quarter = preview(
        &app,
        "quarter",
        json!([{"cron": "*/15 * * * *"}]),
        "count=3&from=2027-01-01T00:07:00Z",
    )
    .await;
    assert_eq!(
        instants(&quarter),
        [
            "2027-01-01T00:15:00Z",
            "2027-01-01T00:30:00Z",
            "2027-01-01T00:45:00Z"
        ]
    );

    // 2027-01-01 is a Friday.
    let named = preview(
        &app,
        "named",
        json!([{"cron": "0 9 * JAN MON-WED"}]),
        "count=3&from=2027-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(
        instants(&named),
        [
            "2027-01-04T09:00:00Z",
            "2027-01-05T09:00:00Z",
            "2027-01-06T09:00:00Z"
        ]
    );

    let weekly = preview(
        &app,
        "weekly",
        json!([{"cron": "@weekly", "timezone": "Europe/Berlin"}]),
        "count=2&from=2027-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(
        pairs(&weekly),
        owned(&[
            ("2027-01-02T23:00:00Z", "2027-01-03T00:00:00+01:00"),
            ("2027-01-09T23:00:00Z", "2027-01-10T00:00:00+01:00"),
        ])
    );
}

#[sqlx::test]
async fn a_union_of_two_schedules_fires_each_instant_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let got = preview(
        &app,
        "union",
        json!([{"cron": "0 */6 * * *", "timezone": "UTC"}, {"cron": "0 0,3 * * *", "timezone": "UTC"}]),
        "count=5&from=2027-01-01T23:00:00Z",
    )
    .await;
    let items: Vec<(String, u64)> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["at"].as_str().unwrap().to_owned(),
                i["schedule_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("2027-01-02T00:00:00Z".to_owned(), 0),
            ("2027-01-02T03:00:00Z".to_owned(), 1),
            ("2027-01-02T06:00:00Z".to_owned(), 0),
            ("2027-01-02T12:00:00Z".to_owned(), 0),
            ("2027-01-02T18:00:00Z".to_owned(), 0),
        ]
    );
}

#[sqlx::test]
async fn preview_defaults_to_ten_from_now_and_checks_its_parameters(pool: PgPool) {
    let app = spawn_app(pool).await;
    let got = preview(&app, "hourly", json!([{"cron": "@hourly"}]), "").await;
    assert_eq!(got["from"], "2026-11-25T12:00:00Z", "the app's clock");
    assert_eq!(got["items"].as_array().unwrap().len(), 10);
    assert_eq!(got["items"][0]["at"], "2026-11-25T13:00:00Z");

    let id = got["policy_id"].as_str().unwrap();
    for (query, field) in [
        ("count=0", "count"),
        ("count=101", "count"),
        ("from=yesterday", "from"),
    ] {
        let body = problem(
            app.get(&format!("/v1/policies/{id}/schedule?{query}"))
                .await,
            422,
        )
        .await;
        assert_eq!(error_fields(&body), [field], "{query}");
    }
}
