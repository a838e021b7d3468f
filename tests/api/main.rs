//! Integration tests: real PostgreSQL (one database per test), the app on a random port.

mod cloud;
mod contract;
mod errors;
mod health;
mod helpers;
mod openapi;
mod policies;
mod schedule;
