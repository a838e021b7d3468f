//! What the member's project is to others: another project's member finds none
//! of it (404, empty lists, nor the images in Glance) and changes nothing; a
//! reader of the project reads it but may not write (403).

use reqwest::Method;
use serde_json::{Value, json};
use stacksnap::openstack::OpenStack;

use super::tenants::{Api, Tenant};

/// What the member owns after its run.
pub struct Owned {
    pub policy: Value,
    pub run_id: String,
    pub job_id: String,
    /// The run's snapshots, as the API showed them.
    pub snapshots: Vec<Value>,
}

impl Owned {
    fn policy_id(&self) -> &str {
        self.policy["id"].as_str().unwrap()
    }

    fn snapshot_id(&self) -> &str {
        self.snapshots[0]["id"].as_str().unwrap()
    }

    /// The policy, its runs and its snapshots are as the member left them.
    pub async fn is_unchanged(&self, api: &Api, member: &Tenant) {
        let path = format!("/v1/policies/{}", self.policy_id());
        let now = api.expect(member, Method::GET, &path, None, 200).await;
        assert_eq!(now["version"], self.policy["version"]);
        assert_eq!(now["enabled"], true);
        let path = format!("/v1/runs?policy_id={}", self.policy_id());
        let runs = api.expect(member, Method::GET, &path, None, 200).await;
        assert_eq!(runs["items"].as_array().unwrap().len(), 1, "no run added");
        for snapshot in &self.snapshots {
            let path = format!("/v1/snapshots/{}", snapshot["id"].as_str().unwrap());
            let now = api.expect(member, Method::GET, &path, None, 200).await;
            assert_eq!(now["state"], "available", "{now}");
        }
    }
}

/// Another project's member (`other`, and its own `cloud`) reads, changes,
/// runs and deletes each of them: 404 every time, and its lists are empty.
pub async fn another_project_finds_nothing(
    api: &Api,
    other: &Tenant,
    cloud: &OpenStack,
    owned: &Owned,
) {
    let (policy, snapshot) = (owned.policy_id(), owned.snapshot_id());
    let patch = json!({"enabled": false});
    let attempts = [
        (Method::GET, format!("/v1/policies/{policy}"), None),
        (
            Method::PATCH,
            format!("/v1/policies/{policy}"),
            Some(&patch),
        ),
        (Method::POST, format!("/v1/policies/{policy}/run"), None),
        (Method::DELETE, format!("/v1/policies/{policy}"), None),
        (Method::GET, format!("/v1/runs/{}", owned.run_id), None),
        (Method::GET, format!("/v1/jobs/{}", owned.job_id), None),
        (
            Method::POST,
            format!("/v1/jobs/{}/cancel", owned.job_id),
            None,
        ),
        (Method::GET, format!("/v1/snapshots/{snapshot}"), None),
        (Method::DELETE, format!("/v1/snapshots/{snapshot}"), None),
    ];
    for (method, path, body) in attempts {
        let answer = api.expect(other, method, &path, body, 404).await;
        assert_eq!(answer["type"], "urn:stacksnap:problem:not-found");
    }
    for list in ["/v1/policies", "/v1/runs", "/v1/jobs", "/v1/snapshots"] {
        let page = api.expect(other, Method::GET, list, None, 200).await;
        assert_eq!(page["items"], json!([]), "{list} as the other project");
    }
    for snapshot in &owned.snapshots {
        let image = snapshot["image_id"].as_str().unwrap();
        let seen = cloud.glance().get_image(image).await;
        assert!(seen.is_err_and(|e| e.is_not_found()), "image {image}");
    }
}

/// A reader of the member's project reads each of them and every list; runs,
/// changes, cancels and deletes are 403.
pub async fn a_reader_reads_but_may_not_write(api: &Api, reader: &Tenant, owned: &Owned) {
    let (policy, snapshot) = (owned.policy_id(), owned.snapshot_id());
    for path in [
        format!("/v1/policies/{policy}"),
        format!("/v1/runs/{}", owned.run_id),
        format!("/v1/jobs/{}", owned.job_id),
        format!("/v1/snapshots/{snapshot}"),
    ] {
        let item = api.expect(reader, Method::GET, &path, None, 200).await;
        assert_eq!(item["project_id"], reader.project_id.as_str(), "{path}");
    }
    for list in ["/v1/policies", "/v1/runs", "/v1/jobs", "/v1/snapshots"] {
        let page = api.expect(reader, Method::GET, list, None, 200).await;
        assert!(!page["items"].as_array().unwrap().is_empty(), "{list}");
    }
    let patch = json!({"enabled": false});
    let attempts = [
        (Method::POST, format!("/v1/policies/{policy}/run"), None),
        (
            Method::PATCH,
            format!("/v1/policies/{policy}"),
            Some(&patch),
        ),
        (Method::DELETE, format!("/v1/policies/{policy}"), None),
        (
            Method::POST,
            format!("/v1/jobs/{}/cancel", owned.job_id),
            None,
        ),
        (Method::DELETE, format!("/v1/snapshots/{snapshot}"), None),
    ];
    for (method, path, body) in attempts {
        let answer = api.expect(reader, method, &path, body, 403).await;
        assert_eq!(answer["status"], 403);
    }
}
