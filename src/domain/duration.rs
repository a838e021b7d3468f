//! Human durations such as `48h`, `7d` or `1h30m`, as policies write them.
//!
//! Units are `s`, `m` (minutes), `h`, `d` and `w`. Months and years are left
//! out on purpose: their length varies, and a retention window must not.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration with whole-second precision that keeps the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    seconds: u64,
    text: String,
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("must not be empty")]
    Empty,
    #[error("expected a number followed by a unit (s, m, h, d or w), as in \"48h\" or \"1h30m\"")]
    Malformed,
    #[error("unknown unit {0:?}: use s, m, h, d or w")]
    UnknownUnit(String),
    #[error("must be greater than zero")]
    Zero,
    #[error("is too long")]
    Overflow,
}

impl HumanDuration {
    /// Length in whole seconds.
    pub fn as_secs(&self) -> u64 {
        self.seconds
    }

    /// Length as a standard duration.
    pub fn as_std(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }

    /// Length as a chrono duration, for instant arithmetic.
    pub fn as_chrono(&self) -> chrono::TimeDelta {
        // Parsing caps durations far below i64::MAX seconds.
        chrono::TimeDelta::seconds(self.seconds as i64)
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut total: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(DurationError::Malformed);
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::Overflow)?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let scale = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3_600,
                "d" => 86_400,
                "w" => 604_800,
                "" => return Err(DurationError::Malformed),
                other => return Err(DurationError::UnknownUnit(other.to_owned())),
            };
            total = number
                .checked_mul(scale)
                .and_then(|s| total.checked_add(s))
                .filter(|s| *s <= MAX_SECONDS)
                .ok_or(DurationError::Overflow)?;
        }
        if total == 0 {
            return Err(DurationError::Zero);
        }
        Ok(Self {
            seconds: total,
            text: text.to_owned(),
        })
    }
}

/// A hundred years: longer than any retention or timeout anyone means.
const MAX_SECONDS: u64 = 100 * 366 * 86_400;

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Result<u64, DurationError> {
        text.parse::<HumanDuration>().map(|d| d.as_secs())
    }

    #[test]
    fn single_units_parse_to_seconds() {
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("48h"), Ok(172_800));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
    }

    #[test]
    fn compound_durations_add_up() {
        assert_eq!(secs("1h30m"), Ok(5_400));
        assert_eq!(secs("1d12h"), Ok(129_600));
    }

    #[test]
    fn text_is_kept_as_written() {
        let d: HumanDuration = "48h".parse().unwrap();
        assert_eq!(d.to_string(), "48h");
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"48h\"");
    }

    #[test]
    fn malformed_durations_are_refused_with_a_reason() {
        assert_eq!(secs(""), Err(DurationError::Empty));
        assert_eq!(secs("h"), Err(DurationError::Malformed));
        assert_eq!(secs("12"), Err(DurationError::Malformed));
        assert_eq!(secs("3y"), Err(DurationError::UnknownUnit("y".into())));
        assert_eq!(secs("1 h"), Err(DurationError::UnknownUnit(" h".into())));
        assert_eq!(secs("0h"), Err(DurationError::Zero));
        assert_eq!(secs("99999999999999999999d"), Err(DurationError::Overflow));
        assert_eq!(secs("1000000w"), Err(DurationError::Overflow));
    }
}
