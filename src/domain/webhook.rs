//! Webhook rules, free of I/O: what a subscription may name (URL, secret,
//! kinds), how a delivery is signed, how long a failing event is retried, and
//! which addresses a careful operator refuses.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use sha2::Sha256;

use super::{event::KindFilter, validation::FieldError};

/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 8;

/// Checks a subscription's URL: absolute `http` or `https` with a host; with
/// `deny_private`, a literal IP address must be public (a name is checked
/// after resolution, at delivery).
///
/// # Errors
/// The field error for `url`.
pub fn parse_url(text: &str, deny_private: bool) -> Result<Url, FieldError> {
    let url = Url::parse(text)
        .map_err(|e| FieldError::new("url", format!("is not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::new("url", "must be an http or https URL"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(FieldError::new("url", "has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FieldError::new(
            "url",
            "must not carry credentials: the signature authenticates deliveries",
        ));
    }
    let literal = literal_ip(host);
    if deny_private && literal.is_some_and(is_private) {
        return Err(FieldError::new(
            "url",
            "is a loopback, private, link-local or unique-local address, refused by this service",
        ));
    }
    Ok(url)
}

/// The address a URL's host names literally (`10.0.0.1`, `[::1]`), if any.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Checks a secret's length.
///
/// # Errors
/// The field error for `secret` (which never quotes it).
pub fn check_secret(secret: &str) -> Result<(), FieldError> {
    if secret.chars().count() < MIN_SECRET_LEN {
        return Err(FieldError::new(
            "secret",
            format!("must be at least {MIN_SECRET_LEN} characters"),
        ));
    }
    Ok(())
}

/// Parses the kinds and prefixes a subscription wants (at least one).
///
/// # Errors
/// The field errors of `events[i]`.
pub fn parse_kinds(events: &[String]) -> Result<Vec<KindFilter>, Vec<FieldError>> {
    if events.is_empty() {
        return Err(vec![FieldError::new(
            "events",
            "must name at least one kind or prefix",
        )]);
    }
    let mut filters = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in events.iter().enumerate() {
        match KindFilter::parse(&format!("events[{i}]"), text) {
            Ok(f) => filters.push(f),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(filters)
    } else {
        Err(errors)
    }
}

/// The `Stacksnap-Signature` header of `body` sent at `unix_seconds`:
/// `t=<seconds>,v1=<hex HMAC-SHA256 with the secret over "<t>.<body>">`.
pub fn signature(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_seconds},v1={hex}")
}

/// How long to wait before attempt `failures + 1` of an event that failed
/// `failures` times: `base` doubling, at most `max`.
pub fn retry_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(max)
}

/// Whether an address is one a webhook should not reach with
/// `--webhook-deny-private`: unspecified or "this network" (0.0.0.0/8, which
/// Linux connects to this host), loopback, private (RFC 1918), shared (CGNAT),
/// link-local, benchmarking, multicast and reserved, unique-local, or one of
/// these inside IPv6 (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4() {
                return is_private_v4(v4);
            }
            if let Some(v4) = nat64_ipv4(v6) {
                return is_private_v4(v4);
            }
            is_private_v6(v6)
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    // 0.0.0.0/8: "this network"; Linux connects any of it to this host.
    a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        // 100.64.0.0/10, shared address space.
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b & 0xfe) == 18)
        // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved and the broadcast address.
        || a >= 224
}

/// The IPv4 address inside a NAT64 address of the well-known prefix `64:ff9b::/96`.
fn nat64_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d, e, f, hi, lo] = ip.segments();
    ([a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0])
        .then(|| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        // fc00::/7 unique local, fe80::/10 link local, fec0::/10 site local, ff00::/8 multicast.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || (first & 0xff00) == 0xff00
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        assert!(parse_url("https://hooks.example.com/x", false).is_ok());
        assert!(parse_url("http://203.0.113.9:8080/", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
            "https://u:p@example.com/",
        ] {
            assert_eq!(parse_url(bad, false).unwrap_err().field, "url", "{bad}");
        }
    }

    #[test]
    fn deny_private_refuses_literal_internal_addresses_only_when_on() {
        for internal in [
            "http://127.0.0.1:9/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            // The rest of 0.0.0.0/8 reaches this host on Linux as 0.0.0.0 does.
            "http://0.1.2.3/",
            "http://0.255.255.254/",
            "http://0x00000001/",
            // IPv4-compatible and NAT64 forms of inside addresses.
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b::10.0.0.1]/",
        ] {
            assert!(parse_url(internal, false).is_ok(), "{internal}");
            assert!(parse_url(internal, true).is_err(), "{internal}");
        }
        assert!(parse_url("http://8.8.8.8/", true).is_ok());
        assert!(parse_url("http://[2001:db8::1]/", true).is_ok());
        assert!(parse_url("http://[64:ff9b::8.8.8.8]/", true).is_ok());
    }

    #[test]
    fn a_secret_needs_eight_characters_and_is_never_quoted() {
        assert!(check_secret("12345678").is_ok());
        let e = check_secret("short").unwrap_err();
        assert!(!e.message.contains("short"));
    }

    #[test]
    fn kinds_and_prefixes_are_parsed_and_bad_ones_named_by_index() {
        assert_eq!(
            parse_kinds(&["job.".into(), "run.failed".into()])
                .unwrap()
                .len(),
            2
        );
        let errors = parse_kinds(&["job.".into(), "nope".into()]).unwrap_err();
        assert_eq!(errors[0].field, "events[1]");
        assert!(parse_kinds(&[]).is_err());
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let header = signature(b"Jefe", 0, b"what do ya want for nothing?");
        // The signed bytes are "0.what do ya want ...", so check the form and determinism.
        assert!(header.starts_with("t=0,v1="));
        assert_eq!(header.len(), "t=0,v1=".len() + 64);
        assert_eq!(
            header,
            signature(b"Jefe", 0, b"what do ya want for nothing?")
        );
        assert_ne!(
            header,
            signature(b"Jeff", 0, b"what do ya want for nothing?")
        );
        // Known answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        // with the "<t>." prefix split off as t="The quick brown fox jumps over the lazy dog"
        // is not expressible; instead check an RFC 4231 vector through the raw MAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, base, max), base);
        assert_eq!(retry_delay(2, base, max), Duration::from_secs(20));
        assert_eq!(retry_delay(40, base, max), max);
    }
}
