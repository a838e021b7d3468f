//! Keystone's token validation and trusts (`OS-TRUST`): who may validate
//! whose token, creating, reading and deleting trusts, tokens scoped to a
//! trust, and the ways a trust stops working.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn;

fn role_names(token: &Value) -> Vec<&str> {
    token["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_member_gets_403_validating_another_users_token_but_may_validate_its_own() {
    // Arrange
    let t = spawn().await;
    let (demo, alt) = (t.demo_token().await, t.alt_token().await);

    // Act
    let (others, refused) = t.validate(&demo, &alt).await;
    let (own, body) = t.validate(&demo, &demo).await;
    let (garbage, unknown) = t.validate(&demo, "gAAAAABnot-a-token").await;
    let (no_caller, _) = t.validate("gAAAAABnot-a-token", &demo).await;

    // Assert
    assert_eq!(others, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&refused),
        "You are not authorized to perform the requested action: identity:validate_token."
    );
    assert_eq!(own, StatusCode::OK);
    assert_eq!(body["token"]["user"]["name"], "demo");
    // The subject is read before the policy: an unknown one is 404 to anyone.
    assert_eq!(garbage, StatusCode::NOT_FOUND);
    assert_eq!(message(&unknown), "Could not recognize Fernet token");
    assert_eq!(no_caller, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_service_user_validates_any_token_and_sees_the_expanded_roles() {
    // Arrange
    let t = spawn().await;
    let reader = t.token_of("demo_reader", "demo", "demo").await;
    let demo = t.demo_token().await;

    // Act
    let (status, as_reader) = t.validate(&t.token, &reader).await;
    let (_, as_demo) = t.validate(&t.token, &demo).await;
    let (_, as_admin) = t.validate(&t.token, &t.token).await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    let token = &as_reader["token"];
    assert_eq!(role_names(token), ["reader"]);
    assert_eq!(token["project"]["id"], t.project("demo"));
    assert_eq!(token["project"]["name"], "demo");
    assert_eq!(token["user"]["id"], t.user_id("demo_reader"));
    assert!(token["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(role_names(&as_demo["token"]), ["member", "reader"]);
    assert_eq!(
        role_names(&as_admin["token"]),
        ["admin", "manager", "member", "reader", "service"]
    );
}

#[tokio::test]
async fn the_trustor_creates_reads_lists_and_deletes_its_trust() {
    // Arrange
    let t = spawn().await;
    let (demo, alt) = (t.demo_token().await, t.alt_token().await);

    // Act
    let (created, body) = t
        .create_trust(&demo, "demo", "admin", "demo", &["member"])
        .await;

    // Assert
    assert_eq!(created, StatusCode::CREATED);
    let trust = &body["trust"];
    let id = trust["id"].as_str().unwrap().to_owned();
    assert_eq!(trust["trustor_user_id"], t.user_id("demo"));
    assert_eq!(trust["trustee_user_id"], t.user_id("admin"));
    assert_eq!(trust["project_id"], t.project("demo"));
    assert_eq!(trust["impersonation"], true);
    assert_eq!(trust["roles"][0]["name"], "member");
    assert_eq!(trust["expires_at"], Value::Null);
    let path = format!("/OS-TRUST/trusts/{id}");
    let (by_trustor, _) = t.keystone(&demo, Method::GET, &path, None).await;
    let (by_trustee, _) = t.keystone(&t.token, Method::GET, &path, None).await;
    let (by_alt, refused) = t.keystone(&alt, Method::GET, &path, None).await;
    assert_eq!(by_trustor, StatusCode::OK);
    assert_eq!(by_trustee, StatusCode::OK);
    assert_eq!(by_alt, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&refused),
        "You are not authorized to perform the requested action: identity:get_trust."
    );
    let mine = format!("/OS-TRUST/trusts?trustor_user_id={}", t.user_id("demo"));
    let (listed, list) = t.keystone(&demo, Method::GET, &mine, None).await;
    assert_eq!(listed, StatusCode::OK);
    assert_eq!(list["trusts"][0]["id"], id.as_str());
    assert!(list["trusts"][0].get("roles").is_none());
    let (all, _) = t
        .keystone(&demo, Method::GET, "/OS-TRUST/trusts", None)
        .await;
    assert_eq!(all, StatusCode::FORBIDDEN);
    let (alt_delete, _) = t.keystone(&alt, Method::DELETE, &path, None).await;
    assert_eq!(alt_delete, StatusCode::FORBIDDEN);
    assert_eq!(t.sim.trusts().len(), 1);
    let (deleted, _) = t.keystone(&demo, Method::DELETE, &path, None).await;
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    let (gone, missing) = t.keystone(&demo, Method::GET, &path, None).await;
    assert_eq!(gone, StatusCode::NOT_FOUND);
    assert_eq!(message(&missing), format!("Could not find trust: {id}."));
    let (again, _) = t.keystone(&demo, Method::DELETE, &path, None).await;
    assert_eq!(again, StatusCode::NOT_FOUND);
    assert!(t.sim.trusts().is_empty());
}

#[tokio::test]
async fn a_trust_for_another_trustor_a_missing_trustee_or_a_role_not_held_is_refused() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let reader = t.token_of("demo_reader", "demo", "demo").await;
    let body = |trustee: &str, roles: Value| {
        json!({"trust": {"trustor_user_id": t.user_id("demo"), "trustee_user_id": trustee,
            "project_id": t.project("demo"), "roles": roles, "impersonation": true}})
    };
    let t = &t;
    let post = |body: Value| {
        let demo = demo.clone();
        async move {
            t.keystone(&demo, Method::POST, "/OS-TRUST/trusts", Some(body))
                .await
        }
    };
    let admin = t.user_id("admin");

    // Act
    let (for_alt, alt_body) = t
        .create_trust(&demo, "alt", "admin", "alt", &["member"])
        .await;
    let (no_trustee, trustee_body) = post(body("nobody", json!([{"name": "member"}]))).await;
    let (unknown_role, role_body) = post(body(&admin, json!([{"name": "nope"}]))).await;
    let (not_held, held_body) = post(body(&admin, json!([{"name": "admin"}]))).await;
    let (no_roles, none_body) = post(body(&admin, json!([]))).await;
    let (reader_member, _) = t
        .create_trust(&reader, "demo_reader", "admin", "demo", &["member"])
        .await;
    let (reader_reader, _) = t
        .create_trust(&reader, "demo_reader", "admin", "demo", &["reader"])
        .await;
    let (invalid, invalid_body) =
        post(json!({"trust": {"trustor_user_id": t.user_id("demo"), "trustee_user_id": admin}}))
            .await;

    // Assert
    assert_eq!(for_alt, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&alt_body),
        "You are not authorized to perform the requested action: identity:create_trust."
    );
    assert_eq!(no_trustee, StatusCode::NOT_FOUND);
    assert_eq!(message(&trustee_body), "Could not find user: nobody.");
    assert_eq!(unknown_role, StatusCode::NOT_FOUND);
    assert_eq!(message(&role_body), "Role nope is not defined");
    // Keystone answers a role the trustor lacks with RoleNotFound, a 404.
    assert_eq!(not_held, StatusCode::NOT_FOUND);
    assert!(message(&held_body).starts_with("Could not find role: "));
    assert_eq!(no_roles, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&none_body),
        "You are not authorized to perform the requested action: At least one role should be specified."
    );
    assert_eq!(reader_member, StatusCode::NOT_FOUND);
    assert_eq!(reader_reader, StatusCode::CREATED);
    assert_eq!(invalid, StatusCode::BAD_REQUEST);
    assert!(
        message(&invalid_body).ends_with("'impersonation' is a required property"),
        "{invalid_body}"
    );
}

#[tokio::test]
async fn a_trust_scoped_token_is_the_trustor_in_the_trustors_project_with_the_trusts_roles() {
    // Arrange
    let t = spawn().await;
    let trust = t.demo_trust().await;

    // Act
    let (status, token, body) = t.trust_token("admin", "secret", &trust).await;
    let (validated, by_service) = t.validate(&t.token, &token).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED);
    let issued = &body["token"];
    assert_eq!(issued["user"]["id"], t.user_id("demo"));
    assert_eq!(issued["user"]["name"], "demo");
    assert_eq!(issued["project"]["id"], t.project("demo"));
    assert_eq!(role_names(issued), ["member", "reader"]);
    assert!(issued["catalog"].as_array().is_some_and(|c| !c.is_empty()));
    assert_eq!(
        issued["OS-TRUST:trust"],
        json!({"id": trust, "trustor_user": {"id": t.user_id("demo")},
            "trustee_user": {"id": t.user_id("admin")}, "impersonation": true})
    );
    assert_eq!(validated, StatusCode::OK);
    assert_eq!(by_service["token"]["OS-TRUST:trust"]["id"], trust.as_str());
    assert_eq!(role_names(&by_service["token"]), ["member", "reader"]);
    // The services see the demo project's resources.
    let demo = t.demo_token().await;
    let server = t.demo_server(&demo, false).await;
    let listed = t
        .call_as(
            &token,
            Method::GET,
            "/compute/v2.1/servers",
            Some("compute 2.96"),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed["servers"][0]["id"], server.as_str());
}

#[tokio::test]
async fn without_impersonation_a_trust_token_is_the_trustees() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let body = json!({"trust": {"trustor_user_id": t.user_id("demo"),
        "trustee_user_id": t.user_id("admin"), "project_id": t.project("demo"),
        "roles": [{"name": "member"}], "impersonation": false}});
    let (_, created) = t
        .keystone(&demo, Method::POST, "/OS-TRUST/trusts", Some(body))
        .await;
    let trust = created["trust"]["id"].as_str().unwrap();

    // Act
    let (status, _, body) = t.trust_token("admin", "secret", trust).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["token"]["user"]["id"], t.user_id("admin"));
    assert_eq!(body["token"]["project"]["id"], t.project("demo"));
    assert_eq!(body["token"]["OS-TRUST:trust"]["impersonation"], false);
}

#[tokio::test]
async fn only_the_trustee_may_use_a_trust_and_deleting_it_revokes_its_tokens() {
    // Arrange
    let t = spawn().await;
    let trust = t.demo_trust().await;
    let (_, token, _) = t.trust_token("admin", "secret", &trust).await;
    let (by_alt, _, alt_body) = t.trust_token("alt", "alt", &trust).await;
    let (unknown, _, _) = t.trust_token("admin", "secret", "0123456789abcdef").await;

    // Act: the service user deletes the trust another user made.
    let (deleted, _) = t
        .keystone(
            &t.token,
            Method::DELETE,
            &format!("/OS-TRUST/trusts/{trust}"),
            None,
        )
        .await;

    // Assert
    assert_eq!(by_alt, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&alt_body),
        "You are not authorized to perform the requested action."
    );
    assert_eq!(unknown, StatusCode::UNAUTHORIZED);
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    let nova = t
        .call_as(&token, Method::GET, "/compute/v2.1/servers", None, None)
        .await;
    assert_eq!(nova.status(), StatusCode::UNAUTHORIZED);
    assert!(nova.headers().contains_key("www-authenticate"));
    let cinder = t
        .call_as(&token, Method::GET, "/volume/v3/volumes", None, None)
        .await;
    assert_eq!(cinder.status(), StatusCode::UNAUTHORIZED);
    let glance = t
        .call_as(&token, Method::GET, "/image/v2/images", None, None)
        .await;
    assert_eq!(glance.status(), StatusCode::UNAUTHORIZED);
    let (validated, _) = t.validate(&t.token, &token).await;
    assert_eq!(validated, StatusCode::NOT_FOUND);
    let (again, _, _) = t.trust_token("admin", "secret", &trust).await;
    assert_eq!(again, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn trust_scoped_and_application_credential_tokens_cannot_create_trusts() {
    // Arrange
    let t = spawn().await;
    let trust = t.demo_trust().await;
    let (_, trust_token, _) = t.trust_token("admin", "secret", &trust).await;
    let ac = &t.sim.config().application_credential;
    let r = t
        .http
        .post(format!("{}/auth/tokens", t.sim.auth_url()))
        .json(
            &json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": ac.id, "secret": ac.secret}}}}),
        )
        .send()
        .await
        .unwrap();
    let app_cred = r.headers()["x-subject-token"].to_str().unwrap().to_owned();

    // Act: each names the user it stands for as the trustor.
    let (redelegated, redelegated_body) = t
        .create_trust(&trust_token, "demo", "alt", "demo", &["member"])
        .await;
    let (by_app_cred, app_cred_body) = t
        .create_trust(&app_cred, "admin", "demo", "admin", &["member"])
        .await;
    let (app_cred_list, _) = t
        .keystone(
            &app_cred,
            Method::GET,
            &format!("/OS-TRUST/trusts?trustor_user_id={}", t.user_id("admin")),
            None,
        )
        .await;

    // Assert
    assert_eq!(redelegated, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&redelegated_body),
        "You are not authorized to perform the requested action."
    );
    assert_eq!(by_app_cred, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&app_cred_body),
        "You are not authorized to perform the requested action: Using method 'application_credential' is not allowed for managing trusts."
    );
    assert_eq!(app_cred_list, StatusCode::FORBIDDEN);
    assert_eq!(t.sim.trusts().len(), 1);
}

#[tokio::test]
async fn an_application_credential_cannot_ask_for_any_scope() {
    let t = spawn().await;
    let ac = &t.sim.config().application_credential;
    let r = t
        .http
        .post(format!("{}/auth/tokens", t.sim.auth_url()))
        .json(&json!({"auth": {
            "identity": {"methods": ["application_credential"],
                "application_credential": {"id": ac.id, "secret": ac.secret}},
            "scope": {"OS-TRUST:trust": {"id": "0123456789abcdef"}},
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        message(&body),
        "Error authenticating with application credential: Application credentials cannot request a scope."
    );
}

#[tokio::test]
async fn a_trust_stops_working_when_its_trustor_loses_the_role_and_works_again_when_it_is_back() {
    // Arrange
    let t = spawn().await;
    let trust = t.demo_trust().await;
    let (_, token, _) = t.trust_token("admin", "secret", &trust).await;
    let roles = format!(
        "{}/_sim/users/demo/projects/demo/roles/member",
        t.sim.base_url()
    );

    // Act
    let removed = t.http.delete(&roles).send().await.unwrap();
    let (new_token, _, refused) = t.trust_token("admin", "secret", &trust).await;
    let (validated, _) = t.validate(&t.token, &token).await;
    let nova = t
        .call_as(&token, Method::GET, "/compute/v2.1/servers", None, None)
        .await;
    let restored = t.http.put(&roles).send().await.unwrap();
    let (after, _, _) = t.trust_token("admin", "secret", &trust).await;

    // Assert
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(new_token, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&refused),
        "You are not authorized to perform the requested action."
    );
    // Keystone refuses the validation with 403, which keystonemiddleware
    // reports to the caller as Keystone being unavailable.
    assert_eq!(validated, StatusCode::FORBIDDEN);
    assert_eq!(nova.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(restored.status(), StatusCode::NO_CONTENT);
    assert_eq!(after, StatusCode::CREATED);
    let unknown = t
        .http
        .delete(format!(
            "{}/_sim/users/nobody/projects/demo/roles/member",
            t.sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
