//! Microversion discovery: what a service offers, and what we ask for.

use serde::Deserialize;

/// A microversion such as `2.45`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u32, pub u32);

impl Microversion {
    /// Parses `"2.45"`.
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

#[derive(Debug, Deserialize)]
struct VersionEntry {
    id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    min_version: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum VersionDocument {
    One { version: VersionEntry },
    Many { versions: Vec<VersionEntry> },
}

/// The microversion range a service offers for API major version `major`
/// (`v2.1`, `v3`), read from its version document; `None` when it has no microversions.
pub fn offered_range(document: &str, major: &str) -> Option<(Microversion, Microversion)> {
    let entries = match serde_json::from_str::<VersionDocument>(document).ok()? {
        VersionDocument::One { version } => vec![version],
        VersionDocument::Many { versions } => versions,
    };
    let entry = entries
        .into_iter()
        .find(|e| e.id == major || e.id.starts_with(&format!("{major}.")))?;
    Some((
        Microversion::parse(&entry.min_version)?,
        Microversion::parse(&entry.version)?,
    ))
}

/// The highest version we know how to speak that the service offers.
pub fn negotiate(
    offered: Option<(Microversion, Microversion)>,
    wanted: Microversion,
) -> Option<Microversion> {
    let (min, max) = offered?;
    let chosen = wanted.min(max);
    (chosen >= min).then_some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shape of nova doc/api_samples/versions/v21-version-get-resp.json.
    const NOVA: &str = r#"{"version": {"id": "v2.1", "links": [], "media-types": [], "min_version": "2.1",
        "status": "CURRENT", "updated": "2013-07-23T11:33:21Z", "version": "2.100"}}"#;
    // Shape of cinder api-ref/source/v3/samples/versions/versions-response.json.
    const CINDER: &str = r#"{"versions": [{"id": "v3.0", "links": [], "min_version": "3.0", "status": "CURRENT",
        "updated": "2023-08-31T00:00:00Z", "version": "3.71"}]}"#;

    #[test]
    fn ranges_are_read_from_both_document_shapes() {
        assert_eq!(
            offered_range(NOVA, "v2.1"),
            Some((Microversion(2, 1), Microversion(2, 100)))
        );
        assert_eq!(
            offered_range(CINDER, "v3"),
            Some((Microversion(3, 0), Microversion(3, 71)))
        );
        assert_eq!(offered_range(r#"{"versions": []}"#, "v3"), None);
    }

    #[test]
    fn negotiation_takes_the_highest_common_version() {
        let offered = Some((Microversion(2, 1), Microversion(2, 44)));
        assert_eq!(
            negotiate(offered, Microversion(2, 96)),
            Some(Microversion(2, 44))
        );
        let offered = Some((Microversion(2, 1), Microversion(2, 100)));
        assert_eq!(
            negotiate(offered, Microversion(2, 96)),
            Some(Microversion(2, 96))
        );
        assert_eq!(
            negotiate(
                Some((Microversion(3, 50), Microversion(3, 71))),
                Microversion(3, 10)
            ),
            None
        );
        assert_eq!(Microversion::parse("2.45").unwrap().to_string(), "2.45");
        assert!(Microversion(2, 100) > Microversion(2, 45));
    }
}
