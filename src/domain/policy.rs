//! Snapshot policies: what to snapshot, when, how long to keep it, and how.
//!
//! Three forms, each in its own module: [`PolicySpec`] is the policy as a client
//! writes it (`spec`: strings, defaults filled in); [`PolicySpec::validate`]
//! (`validate`) checks every field at once and parses it into a
//! [`ValidPolicy`] (`types`), the only form the rest of the service acts on.
//! A `ValidPolicy` is stored, and shown, in the same JSON shape the client
//! wrote, so reading it back parses it again and never falls back to a default.
//! A stored policy is read back as a [`StoredPolicy`] (`stored`): parsed and
//! validated again against today's rules, so one that no longer passes is
//! `broken`, with the reason, instead of failing whoever reads it.

mod spec;
mod stored;
mod types;
mod validate;

pub use spec::{PolicyOptions, PolicySpec, Retention, ScheduleSpec, VerifySpec};
pub use stored::{PolicyError, PolicyState, StoredPolicy, check_stored};
pub use types::{
    Authors, Consistency, MissedRun, Policy, ResourceType, RetentionRules, Selector,
    SnapshotOptions, Targets, ValidPolicy, VerifyOptions,
};
pub(crate) use validate::check_metadata;
pub use validate::{RESERVED_METADATA_KEYS, RESERVED_METADATA_PREFIXES};

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_TARGET_IDS: usize = 1000;
pub const MAX_SELECTOR_TERMS: usize = 50;
pub const MAX_SCHEDULES: usize = 10;
pub const MAX_KEEP_COUNT: u32 = 10_000;
pub const MAX_METADATA_ITEMS: usize = 50;
/// Nova rejects longer tags, and tags containing `/` or `,`.
pub const MAX_TAG_CHARS: usize = 60;
/// Nova, Glance and Cinder all cap metadata keys and values at 255 characters.
pub const MAX_METADATA_CHARS: usize = 255;
pub const MAX_CONCURRENT: u32 = 1000;
