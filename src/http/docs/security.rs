//! What the OpenAPI document says about authentication: the `X-Auth-Token`
//! security scheme on every operation under `/v1/`, and the answers every such
//! operation can give because of it (401, 403, 503 from Keystone), each with an
//! example. Whether an operation needs `reader`, `member` or `admin` comes from
//! [`required_permission`], the rule the service applies.

use serde_json::json;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Type,
    path::{Operation, PathItem},
    response::Response,
    schema::Object,
    security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme},
};

use crate::{
    domain::access::Permission,
    http::{auth::required_permission, error::PROBLEM_JSON},
};

/// The name of the security scheme in the document.
pub const SCHEME: &str = "keystone_token";

/// Declares the scheme and applies it, with its answers, to every protected operation.
pub fn declare(openapi: &mut OpenApi) {
    openapi
        .components
        .as_mut()
        .expect("the document has components")
        .add_security_scheme(
            SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "A Keystone token scoped to a project (`openstack token issue`). The request acts \
                 in the token's project with its roles: `reader` reads, `member` (or `manager`) \
                 also writes, `admin` may act on any project (`all_projects`, `project_id`) and \
                 use the orphan finder. Not needed when the service runs with `--auth none`.",
            ))),
        );
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let Some(needed) = required_permission(&method, path) else {
                continue;
            };
            operation.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
            let responses = &mut operation.responses.responses;
            responses.insert("401".into(), RefOr::T(unauthenticated()));
            responses.insert("403".into(), RefOr::T(forbidden(needed)));
            if let Some(RefOr::T(not_found)) = responses.get_mut("404") {
                explain_not_found(not_found, resource_of(path));
            }
            match responses.get_mut("503") {
                Some(RefOr::T(unavailable)) => {
                    unavailable.description = format!(
                        "{} Also: Keystone could not be asked whether the token is valid.",
                        unavailable.description
                    );
                }
                _ => {
                    responses.insert("503".into(), RefOr::T(identity_unavailable()));
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(axum::http::Method, &mut Operation)> {
    use axum::http::Method;
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::HEAD, item.head.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|o| (method, o)))
    .collect()
}

fn problem(example: serde_json::Value) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .example(Some(example))
        .build()
}

fn unauthenticated() -> Response {
    let mut challenge = Object::with_type(Type::String);
    challenge.example = Some(json!("Keystone uri=\"https://keystone.example.com/v3\""));
    ResponseBuilder::new()
        .description(
            "No `X-Auth-Token`, or a token Keystone does not know (invalid, expired or revoked)",
        )
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(challenge))
                .description(Some("Where to get a token: `Keystone uri=\"<auth url>\"`"))
                .build(),
        )
        .content(
            PROBLEM_JSON,
            problem(json!({
                "type": "urn:stacksnap:problem:unauthenticated", "title": "Unauthorized", "status": 401,
                "detail": "this request needs a Keystone token in the X-Auth-Token header"
            })),
        )
        .build()
}

fn forbidden(needed: Permission) -> Response {
    let description = match needed {
        Permission::Read => {
            "The token's roles include none of reader, member, manager or admin; or \
             `all_projects=true` without the admin role; or a token scoped to no project"
        }
        Permission::Write => {
            "The token's roles include none of member, manager or admin (a reader may only \
             read); or `project_id` names another project without the admin role"
        }
        Permission::Admin => "The token's roles do not include admin",
    };
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            problem(json!({
                "type": "urn:stacksnap:problem:forbidden", "title": "Forbidden", "status": 403,
                "detail": format!("this operation needs one of the roles {} in the token's project", needed.roles())
            })),
        )
        .build()
}

fn identity_unavailable() -> Response {
    ResponseBuilder::new()
        .description("Keystone could not be asked whether the token is valid")
        .content(
            PROBLEM_JSON,
            problem(json!({
                "type": "urn:stacksnap:problem:unavailable", "title": "Service Unavailable", "status": 503,
                "detail": "the token cannot be validated now: OpenStack keystone validate_token: the cloud could not be reached",
                "openstack": {"service": "keystone", "operation": "validate_token", "status": null, "request_id": null}
            })),
        )
        .build()
}

/// What a 404 of `path` is about: `policy`, `run`, `job` or `snapshot`.
fn resource_of(path: &str) -> &'static str {
    let collection = path.trim_start_matches("/v1/").split('/').next();
    match collection {
        Some("policies") => "policy",
        Some("runs") => "run",
        Some("jobs") => "job",
        Some("snapshots") => "snapshot",
        _ => "resource",
    }
}

fn explain_not_found(response: &mut Response, resource: &str) {
    response.description = format!(
        "{}; a {resource} of another project is not found either (never 403), unless the token \
         has the admin role",
        response.description
    );
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        RefOr::T(problem(json!({
            "type": "urn:stacksnap:problem:not-found", "title": "Not Found", "status": 404,
            "detail": format!("{resource} not found")
        }))),
    );
}
