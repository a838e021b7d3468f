//! Fault injection: rules that match an operation name (`nova.create_image`,
//! `cinder.*`, `*`) and add latency, answer an error, lose the answer of a
//! call that was carried out, or spoil the artefact the operation makes. Decisions use the simulator's seeded generator.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;

/// One fault rule. Serialized flat, e.g.
/// `{"operation": "nova.create_image", "fault": "error", "status": 409, "times": 1}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Operation name (`glance.get_image`), a service wildcard (`cinder.*`) or `*`.
    pub operation: String,
    /// What happens.
    #[serde(flatten)]
    pub fault: Fault,
    /// Probability that a matching call is hit, 0.0–1.0 (default 1.0).
    #[serde(default = "one")]
    pub rate: f64,
    /// How many more calls it may hit; `None` is unlimited.
    #[serde(default)]
    pub times: Option<u32>,
}

fn one() -> f64 {
    1.0
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Answer `status` in the service's error body, with `Retry-After` when set.
    Error {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
        #[serde(default)]
        message: Option<String>,
    },
    /// Delay the answer.
    Latency { ms: u64 },
    /// Cinder snapshots made by the call stay `creating` for ever.
    SnapshotStuck,
    /// Cinder snapshots made by the call go to `error`.
    SnapshotError,
    /// A deleted Cinder snapshot goes to `error_deleting` (the backend failed;
    /// Cinder then refuses another delete from a project member).
    SnapshotDeleteError,
    /// A deleted Cinder snapshot goes back to `available`, as Cinder's volume
    /// manager does when the backend raises `SnapshotIsBusy`. With
    /// `dependants_only` it hits only a snapshot that a live volume was made
    /// from (a clone the backend cannot flatten, as with RBD, 3PAR or NetApp).
    SnapshotDeleteBusy {
        #[serde(default)]
        dependants_only: bool,
    },
    /// A deleted group snapshot goes to `error` with its members, as Cinder's
    /// volume manager does when the backend fails `delete_group_snapshot`.
    GroupSnapshotDeleteError,
    /// Volumes made by the call (a Cinder create, a group's `create-from-src`,
    /// or a server's boot volumes) end in `error`; a server whose volume
    /// fails ends `ERROR`, the volume unattached.
    VolumeError,
    /// Volumes made by the call stay `creating` for ever (and a server
    /// booting from them stays `BUILD`).
    VolumeStuck,
    /// A server created by the call ends `ERROR` after its build.
    ServerError,
    /// A server created by the call stays `BUILD` (task_state `spawning`) for ever.
    ServerStuck,
    /// The image of an image-backed createImage ends `killed`.
    ImageKilled,
    /// The image-backed createImage fails in the compute service: Nova
    /// deletes the image (it answers 404) and clears the task_state.
    ImageSnapshotFails,
    /// The guest agent does not answer, so quiescing fails.
    QuiesceUnresponsive,
    /// The call is carried out, then its answer is lost on the way back, as
    /// when a proxy or the network fails after the service committed: the
    /// answer is replaced by `status` (a proxy's 503, say) when set, else held
    /// back `hang_ms` (past the client's timeout) before it is sent.
    LoseReply {
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        hang_ms: Option<u64>,
    },
}

impl FaultRule {
    /// A rule that answers `status` on every matching call.
    pub fn error(operation: &str, status: u16) -> Self {
        Self::new(
            operation,
            Fault::Error {
                status,
                retry_after: None,
                message: None,
            },
        )
    }

    /// A 429 with `Retry-After: seconds`.
    pub fn rate_limited(operation: &str, retry_after_secs: u64) -> Self {
        Self::new(
            operation,
            Fault::Error {
                status: 429,
                retry_after: Some(retry_after_secs),
                message: None,
            },
        )
    }

    /// A 503 from a proxy in front of the service.
    pub fn unavailable(operation: &str) -> Self {
        Self::error(operation, 503)
    }

    /// `operation` is carried out, then its answer is replaced by `status`.
    pub fn reply_lost(operation: &str, status: u16) -> Self {
        Self::new(
            operation,
            Fault::LoseReply {
                status: Some(status),
                hang_ms: None,
            },
        )
    }

    /// `operation` is carried out, then its answer is held back for `hang`.
    pub fn reply_held(operation: &str, hang: Duration) -> Self {
        Self::new(
            operation,
            Fault::LoseReply {
                status: None,
                hang_ms: Some(u64::try_from(hang.as_millis()).unwrap_or(u64::MAX)),
            },
        )
    }

    /// Added latency.
    pub fn latency(operation: &str, delay: Duration) -> Self {
        Self::new(
            operation,
            Fault::Latency {
                ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
        )
    }

    /// Any other fault on `operation`.
    pub fn new(operation: &str, fault: Fault) -> Self {
        Self {
            operation: operation.into(),
            fault,
            rate: 1.0,
            times: None,
        }
    }

    /// Hits only the next `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Hits a matching call with probability `rate`.
    #[must_use]
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    fn matches(&self, operation: &str) -> bool {
        match self.operation.strip_suffix('*') {
            Some(prefix) => operation.starts_with(prefix),
            None => self.operation == operation,
        }
    }
}

/// How the answer of a call that was carried out is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LostReply {
    /// Replaced by this status.
    Status(u16),
    /// Held back this long.
    Hang(Duration),
}

/// What the rules decided for one call.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub latency: Duration,
    pub error: Option<(u16, Option<u64>, Option<String>)>,
    /// The call is served, then its answer is lost.
    pub lost_reply: Option<LostReply>,
    /// Names of the rules that fired, for the request log.
    pub fired: Vec<String>,
}

/// Consumes the rules that hit `operation` and returns latency and error.
pub(crate) fn decide(
    rules: &mut Vec<FaultRule>,
    rng: &mut SplitMix64,
    operation: &str,
) -> Decision {
    let mut d = Decision::default();
    for rule in rules.iter_mut() {
        if !rule.matches(operation) || rule.times == Some(0) {
            continue;
        }
        let hit = match &rule.fault {
            Fault::Latency { .. } => true,
            // One call is either refused or carried out with its answer lost: the first rule decides.
            Fault::Error { .. } if d.error.is_none() && d.lost_reply.is_none() => true,
            Fault::LoseReply { .. } if d.error.is_none() && d.lost_reply.is_none() => true,
            _ => false,
        };
        if !hit || !roll(rng, rule.rate) {
            continue;
        }
        match &rule.fault {
            Fault::Latency { ms } => d.latency += Duration::from_millis(*ms),
            Fault::Error {
                status,
                retry_after,
                message,
            } => d.error = Some((*status, *retry_after, message.clone())),
            Fault::LoseReply { status, hang_ms } => {
                d.lost_reply = Some(match status {
                    Some(status) => LostReply::Status(*status),
                    None => LostReply::Hang(Duration::from_millis(hang_ms.unwrap_or(60_000))),
                });
            }
            _ => {}
        }
        consume(rule);
        d.fired.push(describe(&rule.fault));
    }
    rules.retain(|r| r.times != Some(0));
    d
}

/// Whether an artefact fault (`pred`) hits a call of `operation`; consumes it.
pub(crate) fn take(
    rules: &mut Vec<FaultRule>,
    rng: &mut SplitMix64,
    operation: &str,
    pred: impl Fn(&Fault) -> bool,
) -> bool {
    let mut hit = false;
    for rule in rules.iter_mut() {
        if hit || !rule.matches(operation) || rule.times == Some(0) || !pred(&rule.fault) {
            continue;
        }
        if roll(rng, rule.rate) {
            consume(rule);
            hit = true;
        }
    }
    rules.retain(|r| r.times != Some(0));
    hit
}

fn roll(rng: &mut SplitMix64, rate: f64) -> bool {
    rate >= 1.0 || rng.next_f64() < rate
}

fn consume(rule: &mut FaultRule) {
    if let Some(n) = rule.times.as_mut() {
        *n = n.saturating_sub(1);
    }
}

fn describe(fault: &Fault) -> String {
    match fault {
        Fault::Error { status, .. } => format!("error {status}"),
        Fault::Latency { ms } => format!("latency {ms}ms"),
        Fault::LoseReply {
            status: Some(status),
            ..
        } => format!("reply lost: {status}"),
        Fault::LoseReply { hang_ms, .. } => {
            format!("reply lost: held {}ms", hang_ms.unwrap_or(60_000))
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_limits_how_often_a_rule_fires() {
        // Arrange
        let mut rules = vec![FaultRule::error("nova.create_image", 409).times(1)];
        let mut rng = SplitMix64::new(1);

        // Act
        let first = decide(&mut rules, &mut rng, "nova.create_image");
        let second = decide(&mut rules, &mut rng, "nova.create_image");

        // Assert
        assert_eq!(first.error.map(|e| e.0), Some(409));
        assert!(second.error.is_none());
        assert!(rules.is_empty());
    }

    #[test]
    fn a_lost_reply_is_decided_besides_the_call_not_instead_of_it() {
        let mut rules = vec![
            FaultRule::reply_lost("nova.create_image", 503).times(1),
            FaultRule::reply_held("cinder.create_snapshot", Duration::from_secs(5)),
        ];
        let mut rng = SplitMix64::new(1);

        let nova = decide(&mut rules, &mut rng, "nova.create_image");
        let cinder = decide(&mut rules, &mut rng, "cinder.create_snapshot");
        let again = decide(&mut rules, &mut rng, "nova.create_image");

        assert!(nova.error.is_none(), "the call itself is served");
        assert_eq!(nova.lost_reply, Some(LostReply::Status(503)));
        assert_eq!(
            cinder.lost_reply,
            Some(LostReply::Hang(Duration::from_secs(5)))
        );
        assert!(again.lost_reply.is_none());
        let json = serde_json::to_value(FaultRule::reply_lost("x", 503)).unwrap();
        assert_eq!(json["fault"], "lose_reply");
        assert_eq!(json["status"], 503);
    }

    #[test]
    fn wildcards_match_a_whole_service() {
        let rule = FaultRule::unavailable("cinder.*");
        assert!(rule.matches("cinder.get_snapshot"));
        assert!(!rule.matches("nova.get_server"));
        assert!(FaultRule::unavailable("*").matches("glance.get_image"));
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rule = FaultRule::rate_limited("glance.get_image", 2).times(3);
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["fault"], "error");
        assert_eq!(json["status"], 429);
        let back: FaultRule = serde_json::from_value(json).unwrap();
        assert_eq!(back, rule);
    }
}
