//! Pure types and rules: policy validation, durations, schedule maths.
//!
//! Nothing here performs I/O or knows about HTTP, SQL or OpenStack.

pub mod access;
pub mod adhoc;
pub mod deletion;
pub mod duration;
pub mod event;
pub mod firing;
pub mod job;
pub mod moves;
pub mod name_template;
pub mod networks;
pub mod policy;
pub mod restore;
pub mod retention;
pub mod rpo;
pub mod schedule;
pub mod status;
pub mod validation;
pub mod verify;
pub mod webhook;
