//! The request log: every request the simulator answered, in order, so a
//! test can prove which calls were made (e.g. `createImage` exactly once).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One request as the simulator saw and answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// Position in the log, from 0.
    pub seq: u64,
    /// `keystone`, `nova`, `glance`, `cinder` or `unknown`.
    pub service: String,
    /// Operation name, e.g. `nova.create_image`, `cinder.get_snapshot`.
    pub operation: String,
    pub method: String,
    pub path: String,
    /// The raw query string (empty when none).
    pub query: String,
    /// The microversion header as sent (`OpenStack-API-Version` or
    /// `X-OpenStack-Nova-API-Version`), if any.
    pub microversion: Option<String>,
    /// The status answered.
    pub status: u16,
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// How long the answer took, in milliseconds (injected latency included).
    pub elapsed_ms: u64,
    /// The `x-openstack-request-id` answered.
    pub request_id: String,
    /// Injected faults that fired on this request (`fault: error 429`) and
    /// what the simulator decided (`quiesced`, `not_quiesced`,
    /// `snapshot_failed`, `image_killed`).
    pub notes: Vec<String>,
}
