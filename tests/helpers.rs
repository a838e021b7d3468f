//! What the tests share: starting the service through `startup::start` (the path
//! `stacksnap serve` takes) with typed request helpers, and an engine driven one
//! step at a time against the simulator.

mod engine;
mod events;
mod groups;
mod logs;
mod private_pg;
mod runs;
mod service;

pub use self::{
    engine::*, events::*, groups::*, logs::*, private_pg::PrivateCluster, runs::*, service::*,
};
