//! The service's integration tests, in one binary so that the crate is linked once:
//! real PostgreSQL (`#[sqlx::test]`, one fresh database per test) and the
//! in-process simulator as the cloud. Each module is one area; `helpers` starts the
//! service the way `stacksnap serve` does and drives the engine step by step.
//!
//! Run one area with a filter: `cargo test --test integration api::`,
//! `engine::`, `openstack::`, `client::`. The tests against a real OpenStack are ignored
//! unless asked for: `cargo test --test integration acceptance:: -- --include-ignored`.

mod acceptance;
mod api;
mod client;
mod engine;
mod helpers;
mod openstack;
