//! `ETag` and `If-Match` for optimistic concurrency on versioned resources.

use axum::http::{HeaderMap, header};
use utoipa::IntoParams;

use super::ApiError;

/// The strong entity tag of a resource version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The `If-Match` header as the OpenAPI document declares it: `*`, or a
/// comma-separated list of entity tags (RFC 9110), each `"…"` or `W/"…"`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// `*`, or the `ETag` this request is based on (a list of tags matches any of them).
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)[ \t]*$"#,
        example = "\"3\""
    )]
    pub if_match: Option<String>,
}

/// Fails with 412 unless `If-Match` is absent, `*`, or names `version`.
///
/// Weak tags (`W/"3"`) are compared by their opaque part: proxies that compress
/// responses weaken tags, and the version is what matters here.
///
/// # Errors
/// [`ApiError::BadRequest`] when the header is not `*` or a list of entity tags;
/// [`ApiError::PreconditionFailed`] carrying the current tag when none matches.
pub fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let tags = value
        .to_str()
        .ok()
        .and_then(parse_if_match)
        .ok_or_else(|| {
            ApiError::BadRequest("If-Match must be * or a list of entity tags such as \"3\"".into())
        })?;
    let current = etag(version);
    if tags.iter().any(|tag| *tag == "*" || *tag == current) {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed {
            current_etag: current,
        })
    }
}

/// The tags of an `If-Match` value with any weakness stripped, or `None` when
/// the value is not `*` or a list of entity tags.
fn parse_if_match(value: &str) -> Option<Vec<&str>> {
    let value = value.trim_matches([' ', '\t']);
    if value == "*" {
        return Some(vec!["*"]);
    }
    value
        .split(',')
        .map(|tag| {
            let tag = tag.trim_matches([' ', '\t']);
            let opaque = tag.strip_prefix("W/").unwrap_or(tag);
            let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
            let legal = |c: char| c == '!' || ('#'..='~').contains(&c);
            inner.chars().all(legal).then_some(opaque)
        })
        .collect()
}

/// Whether the request made its write conditional.
pub fn has_if_match(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_match: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::IF_MATCH, if_match.parse().unwrap());
        map
    }

    #[test]
    fn if_match_accepts_the_current_version_star_and_lists() {
        assert!(check_if_match(&HeaderMap::new(), 3).is_ok());
        assert!(check_if_match(&headers("\"3\""), 3).is_ok());
        assert!(check_if_match(&headers("W/\"3\""), 3).is_ok());
        assert!(check_if_match(&headers("*"), 3).is_ok());
        assert!(check_if_match(&headers("\"1\", \"3\""), 3).is_ok());
    }

    #[test]
    fn if_match_refuses_a_stale_tag_with_412_and_a_malformed_one_with_400() {
        assert!(matches!(
            check_if_match(&headers("\"2\""), 3),
            Err(ApiError::PreconditionFailed { .. })
        ));
        for malformed in ["3", "null", "\"3", "\"3\",", "W/3", "\"a\"b\"", "**"] {
            assert!(
                matches!(
                    check_if_match(&headers(malformed), 3),
                    Err(ApiError::BadRequest(_))
                ),
                "{malformed}"
            );
        }
    }
}
