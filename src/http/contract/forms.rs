//! The string forms the OpenAPI document declares as patterns: names, tags,
//! durations, cron expressions and metadata keys, each as the service reads it.
//!
//! Patterns are ECMA 262 regular expressions, as JSON Schema wants them; they
//! name characters by `\uXXXX` escapes, which Python's `re` reads the same way.

/// Control characters (Unicode `Cc`), for character classes.
pub const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// The white space `str::trim` removes that is not a control character.
pub const SPACE: &str = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Every character `str::trim` removes.
pub const TRIMMED: &str =
    r"\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

use crate::domain::policy::{RESERVED_METADATA_KEYS, RESERVED_METADATA_PREFIXES};

/// Any string without U+0000, which PostgreSQL text cannot hold.
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// Metadata keys a policy may stamp: none of the reserved ones, no U+0000.
pub fn stamped_key_pattern() -> String {
    format!(
        r"^(?!(?:{}))(?!(?:{})$)[^\u0000]*$",
        RESERVED_METADATA_PREFIXES.join("|"),
        RESERVED_METADATA_KEYS.join("|")
    )
}

/// The form of a duration: numbers with units `s`, `m`, `h`, `d` or `w`, e.g.
/// `1h30m`, not all of them zero. A field may bound the sum further.
pub fn duration_pattern() -> String {
    // Zero parts, then the first part that is not zero, then any parts.
    format!("^[{TRIMMED}]*(?:0+[smhdw])*0*[1-9][0-9]*[smhdw](?:[0-9]+[smhdw])*[{TRIMMED}]*$")
}

/// The five-field cron syntax and the shorthands, as the service reads them:
/// numbers in each field's range, `*`, ranges, steps, lists, month and day
/// names in any case, and the extensions `?`, `L`, `W` and `#`.
pub fn cron_pattern() -> String {
    fn any_case(word: &str) -> String {
        word.chars()
            .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
            .collect()
    }
    fn names(words: &[&str]) -> String {
        words
            .iter()
            .map(|w| any_case(w))
            .collect::<Vec<_>>()
            .join("|")
    }
    // A bare `*` stands alone; a step follows `*` or a range, never a single value.
    fn list(value: &str, extra: &str) -> String {
        let step = "/[1-9][0-9]?";
        let item = format!("(?:{extra}\\*{step}|(?:{value})(?:-(?:{value})(?:{step})?)?)");
        format!("(?:\\*|{item}(?:,{item})*)")
    }
    let minute = list("[0-5]?[0-9]", "");
    let hour = list("[01]?[0-9]|2[0-3]", "");
    let dom_value = "0?[1-9]|[12][0-9]|3[01]";
    // `?` stands alone; `L`, `LW` and `15W` may be listed.
    let day = format!(
        "(?:\\?|{})",
        list(dom_value, &format!("[Ll][Ww]|[Ll]|(?:{dom_value})[Ww]|"))
    );
    let months = names(&[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]);
    let month = list(&format!("0?[1-9]|1[0-2]|{months}"), "");
    let dow_value = format!(
        "0?[0-7]|{}",
        names(&["sun", "mon", "tue", "wed", "thu", "fri", "sat"])
    );
    let weekday = format!(
        "(?:\\?|{})",
        list(
            &dow_value,
            &format!("(?:{dow_value})[Ll]|(?:{dow_value})#[1-5]|")
        )
    );
    let shorthand = format!(
        "@(?:{})",
        names(&["hourly", "daily", "weekly", "monthly", "yearly", "annually"])
    );
    format!("^[{TRIMMED}]*(?:{shorthand}|{minute} +{hour} +{day} +{month} +{weekday})[{TRIMMED}]*$")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::domain::{
        policy::check_metadata,
        schedule::{parse_cron, parse_timezone},
        validation::Violations,
    };

    use super::*;

    fn refused(key: &str) -> bool {
        let mut v = Violations::default();
        let map = BTreeMap::from([(key.to_owned(), "x".to_owned())]);
        check_metadata(&mut v, "metadata", &map, true);
        v.finish(()).is_err()
    }

    #[test]
    fn every_key_declared_reserved_is_refused_and_others_are_not() {
        for key in RESERVED_METADATA_KEYS {
            assert!(refused(key), "{key}");
        }
        assert!(refused("stacksnap_job") && refused("os_glance_x"));
        assert!(!refused("team") && !refused("names"));
    }
    #[test]
    fn every_declared_time_zone_is_one_the_service_reads() {
        for tz in chrono_tz::TZ_VARIANTS {
            assert!(parse_timezone(tz.name()).is_ok(), "{}", tz.name());
        }
    }
    #[test]
    fn cron_expressions_of_every_declared_feature_parse() {
        for cron in [
            "0 2 * * *",
            "*/15 0-6/2 1,15 JAN-mar/2 MON-FRI",
            "0 2 L * ?",
            "0 2 15W * *",
            "0 2 ? * 5#3",
            "0 2 * * 5L",
            "@Daily",
        ] {
            assert!(parse_cron(cron).is_ok(), "{cron}");
        }
    }
}
