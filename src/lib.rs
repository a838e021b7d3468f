//! stacksnap: scheduled, retention-managed snapshots of OpenStack servers and volumes.
//!
//! Layers call downwards only: `http` → `store` → `domain`.

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod delegation;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod http;
pub mod openstack;
pub mod redact;
pub mod startup;
pub mod store;
pub mod telemetry;
