//! How secrets are printed: `[redacted]`, in place of the password of a URL
//! and of every credential field in `Debug` output. A leaf module: no imports of
//! the service's own.

use std::fmt;

/// What stands in for a secret wherever the service prints one.
pub const REDACTED: &str = "[redacted]";

/// A `Debug` and `Display` value that prints [`REDACTED`], for the credential
/// fields of hand-written `Debug` impls.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// `text` with every occurrence of each of `secrets` (empty ones skipped)
/// replaced by [`REDACTED`]: for what a remote service says, which may quote a
/// token it was sent.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    secrets
        .into_iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret, REDACTED)
        })
}

/// Query parameters that carry a secret in the URLs we are given (libpq's
/// `password`, and the spellings a hand-written URL may use).
const SECRET_PARAMETERS: &[&str] = &["password", "passwd", "pass", "pwd", "secret", "token"];

/// `url` with its password (`user:password@`) and secret query parameters
/// (`?password=`) replaced by [`REDACTED`]; the rest as given, so the result
/// still says which host, port and database were meant.
pub fn url(url: &str) -> String {
    let (without_fragment, fragment) = match url.split_once('#') {
        Some((head, tail)) => (head, Some(tail)),
        None => (url, None),
    };
    let (base, query) = match without_fragment.split_once('?') {
        Some((head, tail)) => (head, Some(tail)),
        None => (without_fragment, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// `scheme://user:secret@host/...` → `scheme://user:[redacted]@host/...`. The
/// authority ends at the first `/` after `://`; its user information at the last `@`
/// (a password may itself contain a raw `@`).
fn redact_userinfo(base: &str) -> String {
    let (scheme, rest) = match base.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, base),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_parameter(key) => format!("{key}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_PARAMETERS.contains(&key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_replaces_every_secret_and_skips_empty_ones() {
        assert_eq!(
            scrub("token abc then xyz and abc", ["abc", "", "xyz"]),
            "token [redacted] then [redacted] and [redacted]"
        );
    }

    #[test]
    fn a_database_url_keeps_its_user_host_and_database_but_not_its_password() {
        assert_eq!(
            url("postgres://stacksnap:hunter2@db.example:5432/stacksnap"),
            "postgres://stacksnap:[redacted]@db.example:5432/stacksnap"
        );
    }

    #[test]
    fn a_password_with_an_at_sign_or_a_colon_is_redacted_whole() {
        let printed = url("postgres://u:p@ss:w0rd@db/x");
        assert_eq!(printed, "postgres://u:[redacted]@db/x");
    }

    #[test]
    fn a_password_in_the_query_is_redacted_and_other_parameters_kept() {
        let printed = url("postgres://u@db/x?sslmode=require&password=hunter2&Token=t0k#frag");
        assert_eq!(
            printed,
            "postgres://u@db/x?sslmode=require&password=[redacted]&Token=[redacted]#frag"
        );
    }

    #[test]
    fn a_url_without_secrets_is_printed_as_given() {
        for plain in [
            "postgres://postgres@127.0.0.1:5432/stacksnap",
            "postgres:///stacksnap?host=/run/postgresql",
            "https://keystone.example/v3",
            "not a url",
        ] {
            assert_eq!(url(plain), plain);
        }
    }

    #[test]
    fn an_at_sign_in_the_path_is_not_taken_for_user_information() {
        assert_eq!(
            url("https://host/v3/users/a:b@c"),
            "https://host/v3/users/a:b@c"
        );
    }

    #[test]
    fn the_placeholder_prints_redacted_both_ways() {
        assert_eq!(format!("{Redacted:?} {Redacted}"), "[redacted] [redacted]");
    }
}
