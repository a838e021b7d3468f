//! `ETag` and `If-Match` for optimistic concurrency on versioned resources.

use axum::http::{HeaderMap, header};

use super::ApiError;

/// The strong entity tag of a resource version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Fails with 412 unless `If-Match` is absent, `*`, or names `version`.
///
/// Weak tags (`W/"3"`) are compared by their opaque part: proxies that compress
/// responses weaken tags, and the version is what matters here.
///
/// # Errors
/// [`ApiError::PreconditionFailed`] carrying the current tag.
pub fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let current = etag(version);
    let matches = value.to_str().is_ok_and(|text| {
        text.split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag == current)
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed {
            current_etag: current,
        })
    }
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
    fn if_match_refuses_a_stale_or_malformed_tag() {
        assert!(check_if_match(&headers("\"2\""), 3).is_err());
        assert!(check_if_match(&headers("3"), 3).is_err());
    }
}
