//! The HTTP API: requests and answers over a socket, one fresh database per test.

mod auth;
mod cloud;
mod connections;
mod contract;
mod delegation;
mod errors;
mod events;
mod freshness;
mod health;
mod moves;
mod openapi;
mod policies;
mod restore;
mod schedule;
mod tenancy;
mod tls;
mod verify;
mod webhooks;
