//! Names for the artefacts a policy creates, from a template such as
//! `{policy}-{resource_name}-{scheduled_at:%Y%m%dT%H%MZ}`.
//!
//! Placeholders: `{policy}`, `{policy_id}`, `{resource_name}`, `{resource_id}`,
//! `{resource_type}`, `{run_id}`, `{job_id}` and `{scheduled_at}` with an optional strftime
//! format after a colon (UTC; default `%Y%m%dT%H%MZ`). `{{` and `}}` are literal braces.
//!
//! A job's artefact name is unique per job: it carries the job id, where the
//! template puts `{job_id}` or else at the end. Nova names the Cinder snapshots
//! of a volume-backed server's image "snapshot for <image name>", with nothing
//! else of ours on them, so that name is how a job finds them.

use std::{
    fmt::{self, Write as _},
    str::FromStr,
};

use chrono::{DateTime, Utc, format::Item, format::StrftimeItems};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The template policies use when they name none.
pub const DEFAULT_NAME_TEMPLATE: &str = "{policy}-{resource_name}-{scheduled_at:%Y%m%dT%H%MZ}";

/// Glance and Cinder both cap names at 255 characters.
pub const MAX_NAME_CHARS: usize = 255;

const DEFAULT_TIME_FORMAT: &str = "%Y%m%dT%H%MZ";

/// A parsed name template that keeps the text it was written as; it is
/// stored and shown as that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Policy,
    PolicyId,
    ResourceName,
    ResourceId,
    ResourceType,
    RunId,
    JobId,
    ScheduledAt(String),
}

/// The values a template draws on.
#[derive(Debug, Clone)]
pub struct NameContext<'a> {
    pub policy: &'a str,
    pub policy_id: &'a str,
    pub resource_name: &'a str,
    pub resource_id: &'a str,
    pub resource_type: &'a str,
    pub run_id: &'a str,
    pub job_id: &'a str,
    pub scheduled_at: DateTime<Utc>,
}

impl FromStr for NameTemplate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err("unmatched '}': write '}}' for a literal brace".into()),
                '{' => {
                    let mut placeholder = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => placeholder.push(c),
                            None => {
                                return Err("unclosed '{': write '{{' for a literal brace".into());
                            }
                        }
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_placeholder(&placeholder)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }
}

fn parse_placeholder(placeholder: &str) -> Result<Part, String> {
    let (name, format) = match placeholder.split_once(':') {
        Some((name, format)) => (name, Some(format)),
        None => (placeholder, None),
    };
    let part = match name {
        "policy" => Part::Policy,
        "policy_id" => Part::PolicyId,
        "resource_name" => Part::ResourceName,
        "resource_id" => Part::ResourceId,
        "resource_type" => Part::ResourceType,
        "run_id" => Part::RunId,
        "job_id" => Part::JobId,
        "scheduled_at" => {
            let format = format.unwrap_or(DEFAULT_TIME_FORMAT);
            if format.is_empty() || StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
                return Err(format!(
                    "invalid strftime format {format:?} in {{scheduled_at}}"
                ));
            }
            // Some items parse but only reading accepts them (`%#z`): writing them
            // fails. Whether a format writes depends on its items alone, never on
            // the instant, so one trial tells for every instant.
            if format_time(DateTime::UNIX_EPOCH, format).is_err() {
                return Err(format!(
                    "strftime format {format:?} in {{scheduled_at}} cannot be written \
                     (e.g. %#z only reads offsets): use %z or %:z"
                ));
            }
            return Ok(Part::ScheduledAt(format.to_owned()));
        }
        other => {
            return Err(format!(
                "unknown placeholder {{{other}}}: use {{policy}}, {{policy_id}}, {{resource_name}}, \
                 {{resource_id}}, {{resource_type}}, {{run_id}}, {{job_id}} or {{scheduled_at}}"
            ));
        }
    };
    match format {
        Some(_) => Err(format!("{{{name}}} takes no format")),
        None => Ok(part),
    }
}

impl NameTemplate {
    /// A template that renders `name` as it is, braces included.
    pub fn fixed(name: &str) -> Self {
        Self {
            text: name.replace('{', "{{").replace('}', "}}"),
            parts: vec![Part::Literal(name.to_owned())],
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Renders the name, cut to the 255 characters OpenStack accepts.
    pub fn render(&self, ctx: &NameContext<'_>) -> String {
        self.render_whole(ctx)
            .chars()
            .take(MAX_NAME_CHARS)
            .collect()
    }

    /// Renders the name of one job's artefact, at most `max_chars` long and
    /// unique per job: it holds the job id where the template puts `{job_id}`,
    /// else (or when cutting would lose it) `-<job id>` ends it.
    pub fn render_for_job(&self, ctx: &NameContext<'_>, max_chars: usize) -> String {
        let whole = self.render_whole(ctx);
        if whole.chars().count() <= max_chars && whole.contains(ctx.job_id) {
            return whole;
        }
        let suffix = format!("-{}", ctx.job_id);
        let room = max_chars.saturating_sub(suffix.chars().count());
        let mut name: String = whole.chars().take(room).collect();
        name.push_str(&suffix);
        name
    }

    fn render_whole(&self, ctx: &NameContext<'_>) -> String {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => name.push_str(text),
                Part::Policy => name.push_str(ctx.policy),
                Part::PolicyId => name.push_str(ctx.policy_id),
                Part::ResourceName => name.push_str(ctx.resource_name),
                Part::ResourceId => name.push_str(ctx.resource_id),
                Part::ResourceType => name.push_str(ctx.resource_type),
                Part::RunId => name.push_str(ctx.run_id),
                Part::JobId => name.push_str(ctx.job_id),
                Part::ScheduledAt(format) => {
                    // Parsing refused every format that cannot be written; should
                    // chrono refuse one all the same, the default format stands in
                    // rather than a panic ending the worker.
                    let time = format_time(ctx.scheduled_at, format)
                        .or_else(|_| format_time(ctx.scheduled_at, DEFAULT_TIME_FORMAT))
                        .unwrap_or_default();
                    name.push_str(&time);
                }
            }
        }
        name
    }
}

/// Writes `at` in a strftime `format`, or fails where `to_string()` would panic.
fn format_time(at: DateTime<Utc>, format: &str) -> Result<String, fmt::Error> {
    let mut text = String::new();
    write!(text, "{}", at.format(format))?;
    Ok(text)
}

impl Default for NameTemplate {
    fn default() -> Self {
        DEFAULT_NAME_TEMPLATE
            .parse()
            .unwrap_or_else(|_| unreachable!("the default template parses"))
    }
}

impl Serialize for NameTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for NameTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("name template {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(resource_name: &str) -> NameContext<'_> {
        NameContext {
            policy: "nightly-web",
            policy_id: "p1",
            resource_name,
            resource_id: "4f1d",
            resource_type: "server",
            run_id: "r1",
            job_id: "0190a8c2-7d4e-7a3b-9f2c-1a2b3c4d5e6f",
            scheduled_at: "2026-11-26T01:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn default_template_names_policy_resource_and_time() {
        let template: NameTemplate = DEFAULT_NAME_TEMPLATE.parse().unwrap();
        assert_eq!(
            template.render(&context("web-1")),
            "nightly-web-web-1-20261126T0100Z"
        );
    }

    #[test]
    fn every_placeholder_and_escaped_braces_render() {
        let template: NameTemplate =
            "{{{policy_id}}} {resource_type}/{resource_id}/{run_id} {scheduled_at}"
                .parse()
                .unwrap();
        assert_eq!(
            template.render(&context("x")),
            "{p1} server/4f1d/r1 20261126T0100Z"
        );
    }

    #[test]
    fn a_jobs_name_carries_its_job_id_at_the_end_unless_the_template_places_it() {
        let default: NameTemplate = DEFAULT_NAME_TEMPLATE.parse().unwrap();
        let placed: NameTemplate = "{job_id}/{resource_name}".parse().unwrap();
        assert_eq!(
            default.render_for_job(&context("web-1"), 255),
            "nightly-web-web-1-20261126T0100Z-0190a8c2-7d4e-7a3b-9f2c-1a2b3c4d5e6f"
        );
        assert_eq!(
            placed.render_for_job(&context("web-1"), 255),
            "0190a8c2-7d4e-7a3b-9f2c-1a2b3c4d5e6f/web-1"
        );
        assert_eq!(
            NameTemplate::fixed("pre-deploy").render_for_job(&context("x"), 255),
            "pre-deploy-0190a8c2-7d4e-7a3b-9f2c-1a2b3c4d5e6f"
        );
    }

    #[test]
    fn a_long_jobs_name_is_cut_before_its_job_id() {
        let long = "x".repeat(300);
        let template: NameTemplate = "{resource_name}{job_id}".parse().unwrap();
        let name = template.render_for_job(&context(&long), 242);
        assert_eq!(name.chars().count(), 242);
        assert!(
            name.ends_with("-0190a8c2-7d4e-7a3b-9f2c-1a2b3c4d5e6f"),
            "{name}"
        );
    }

    #[test]
    fn rendered_names_are_cut_to_255_characters() {
        let long = "é".repeat(300);
        let template: NameTemplate = "{resource_name}".parse().unwrap();
        assert_eq!(template.render(&context(&long)).chars().count(), 255);
    }

    #[test]
    fn a_fixed_name_renders_as_it_is_and_round_trips_as_text() {
        let template = NameTemplate::fixed("pre-deploy {42}");
        assert_eq!(template.render(&context("x")), "pre-deploy {42}");
        let json = serde_json::to_value(&template).unwrap();
        assert_eq!(json, "pre-deploy {{42}}");
        assert_eq!(
            serde_json::from_value::<NameTemplate>(json).unwrap(),
            template
        );
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        let err = |t: &str| t.parse::<NameTemplate>().unwrap_err();
        assert!(err("{nope}").contains("unknown placeholder {nope}"));
        assert!(err("{policy").contains("unclosed"));
        assert!(err("policy}").contains("unmatched"));
        assert!(err("{policy:%Y}").contains("takes no format"));
        assert!(err("{scheduled_at:%Q}").contains("invalid strftime"));
        assert!(err("").contains("empty"));
    }

    #[test]
    fn formats_chrono_parses_but_cannot_write_are_refused() {
        // `%#z` parses to an item that only reading accepts: writing it fails.
        for format in ["%#z", "%Q", "%", "x%", "%Y%", "%.4f"] {
            let template = format!("{{scheduled_at:{format}}}");
            let err = template.parse::<NameTemplate>().unwrap_err();
            assert!(err.contains(&format!("{format:?}")), "{template}: {err}");
        }
        assert!(
            "{scheduled_at:%Y-%m-%d %H:%M:%S %z %Z %:z %s %j}"
                .parse::<NameTemplate>()
                .is_ok()
        );
    }

    #[test]
    fn rendering_never_panics_even_for_a_format_chrono_cannot_write() {
        // Built around the parser, as a template read by an older build could be.
        let template = NameTemplate {
            text: "web-{scheduled_at:%#z}".into(),
            parts: vec![
                Part::Literal("web-".into()),
                Part::ScheduledAt("%#z".into()),
            ],
        };
        assert_eq!(template.render(&context("x")), "web-20261126T0100Z");
    }
}
